"""The locks of the Python dependencies (requirements/) and what installs them: Dockerfile's deps stage, `make setup`,
Dockerfile.models' fetch stage.

The image and the dev venv install requirements/app.txt with `pip install --require-hashes --no-deps`: nothing is
resolved at build time, so the lock alone decides every version, and it must pin everything, with hashes, torch
CPU once and no triton (openai-whisper's metadata asks for it; ~1 GB of CUDA kernels). The fetch stage, which every
model step runs on, installs requirements/fetch.txt the same way: the fetch code's dependencies at app.txt's pins.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelbake.image.dockerfile import FETCH_LOCK_MOUNT
from reqlock import APP_LOCK, DEV_LOCK, FETCH_LOCK, read_lock

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
TORCH_VERSION = "2.13.0+cpu"
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_WHEEL_SHA256 = "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"
WHEELHOUSE = Path("/opt/wheels")
# The image's platform, for evaluating dependency markers: CPython 3.11 on x86_64 Linux.
IMAGE_ENV = {
    **default_environment(),
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
}
NEVER = re.compile(r"^(triton|nvidia-.*|cuda-.*)$")  # GPU-only packages: never in a CPU image


def deps_stage(dockerfile: str) -> str:
    """The text of Dockerfile's `deps` stage: from its FROM to the next FROM."""
    start = dockerfile.index("\nFROM base AS deps\n")
    end = dockerfile.index("\nFROM ", start + 1)
    return dockerfile[start:end]


def instructions(text: str) -> list[str]:
    """Dockerfile instructions with their continuation lines joined (comments dropped)."""
    out: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        out.append(re.sub(r"\s+", " ", current).strip())
        current = ""
    return out


@pytest.mark.parametrize("lock", [APP_LOCK, DEV_LOCK, FETCH_LOCK], ids=["app", "dev", "fetch"])
def test_every_requirement_is_pinned_with_hashes(lock):
    entries = read_lock(lock)
    assert len(entries) > 10
    for e in entries:
        assert e.version is not None, f"{e.name}: {e.requirement} is not one `==` pin"
        assert e.hashes, f"{e.name}: no --hash"
        assert not e.requirement.marker and not e.requirement.extras and not e.requirement.url, e.requirement
        assert not e.options, f"{e.name}: unexpected options {e.options}"
    duplicates = [name for name, n in Counter(e.name for e in entries).items() if n > 1]
    assert duplicates == []
    assert [e.name for e in entries if NEVER.match(e.name)] == []


def test_app_lock_has_torch_cpu_once_with_the_cpu_index_wheel_hash():
    torch = [e for e in read_lock(APP_LOCK) if e.name == "torch"]
    assert len(torch) == 1
    assert torch[0].version == TORCH_VERSION
    # The CPU index's cp311 x86_64 wheel (the wheelhouse holds that same file). A lock made from the index itself
    # may list its other 2.13.0+cpu wheels too; made from the wheelhouse, it lists this one alone.
    assert TORCH_WHEEL_SHA256 in torch[0].hashes
    assert "torch" not in {e.name for e in read_lock(DEV_LOCK)}  # the dev tools need no torch


@pytest.mark.skipif(not (WHEELHOUSE / TORCH_WHEEL).is_file(), reason=f"no {TORCH_WHEEL} in {WHEELHOUSE}")
def test_the_wheelhouse_torch_is_the_locked_file():
    digest = hashlib.sha256()
    with open(WHEELHOUSE / TORCH_WHEEL, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    assert digest.hexdigest() == TORCH_WHEEL_SHA256


def test_app_lock_pins_the_libraries_that_work_today():
    """The versions the project's venv was tested with when the lock was made (pip freeze of that venv)."""
    locked = {e.name: e.version for e in read_lock(APP_LOCK)}
    expected = {
        "openai-whisper": "20250625",
        "spacy": "3.8.18",
        "transformers": "5.24.0",
        "tokenizers": "0.23.3",
        "safetensors": "0.8.0",
        "numpy": "2.4.6",
        "numba": "0.68.1",
        "tiktoken": "0.14.0",
        "huggingface-hub": "2.4.0",
        "httpx": "0.28.1",
        "filelock": "4.3.1",
        "rich": "15.0.0",
    }
    assert {name: locked.get(name) for name in expected} == expected


def test_app_lock_satisfies_pyprojects_declared_ranges():
    """pyproject.toml keeps the library's ranges; the lock is one choice inside them (dependencies + [ml])."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = {e.name: e.version for e in read_lock(APP_LOCK)}
    for text in project["dependencies"] + project["optional-dependencies"]["ml"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{name} (pyproject.toml) is not in {APP_LOCK.name}"
        assert req.specifier.contains(locked[name], prereleases=True), f"{name}=={locked[name]} not in {req}"


def test_dev_lock_agrees_with_the_app_lock_and_covers_the_dev_extra():
    app = {e.name: e for e in read_lock(APP_LOCK)}
    dev = {e.name: e for e in read_lock(DEV_LOCK)}
    for name in app.keys() & dev.keys():  # installed together by `make setup`: the same pin and hashes
        assert (dev[name].version, set(dev[name].hashes)) == (app[name].version, set(app[name].hashes)), name
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in dev and req.specifier.contains(dev[name].version, prereleases=True), text


def test_app_lock_is_closed_under_the_image_platforms_dependencies():
    """Installed with --no-deps, the lock must already hold every dependency of every package in it (triton
    excepted). Read from the metadata of the running venv, which `make setup` installs from this lock; a package
    installed there at another version than the lock's cannot tell, and is skipped."""
    locked = {e.name: e.version for e in read_lock(APP_LOCK)}
    checked, missing = 0, []
    for name, version in locked.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**IMAGE_ENV, "extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in locked and not NEVER.match(dep):
                missing.append(f"{name} requires {req}")
            elif dep in locked and not req.specifier.contains(locked[dep], prereleases=True):
                missing.append(f"{name} requires {req}, locked {dep}=={locked[dep]}")
    if checked < len(locked) // 2:
        pytest.skip(f"this venv has only {checked} of the {len(locked)} locked versions installed (not `make setup`)")
    assert missing == []


def test_lock_headers_give_the_regenerate_command():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^lock-deps:", makefile, re.M)
    for lock, inputs in ((APP_LOCK, "pyproject.toml --extra ml requirements/app.in"),
                         (DEV_LOCK, "pyproject.toml --extra dev -c requirements/app.txt"),
                         (FETCH_LOCK, "--excludes requirements/fetch-exclude.txt pyproject.toml -c requirements/app.txt")):  # fmt: skip
        header = "\n".join(line for line in lock.read_text().splitlines()[:8] if line.startswith("#"))
        assert "make lock-deps" in header
        command = re.search(r"^#\s+(uv pip compile .*)$", header, re.M)
        assert command, header
        assert "--generate-hashes" in command[1] and "--excludes requirements/exclude.txt" in command[1]
        assert f"{inputs} -o requirements/{lock.name}" in command[1]
    assert "triton" in (REPO / "requirements" / "exclude.txt").read_text().split()


def test_dockerfile_deps_stage_installs_the_lock_once_with_hash_checking():
    dockerfile = (REPO / "Dockerfile").read_text()
    stage = deps_stage(dockerfile)
    runs = [i for i in instructions(stage) if i.startswith("RUN ")]
    assert len(runs) == 1
    run = runs[0]
    assert "--mount=type=bind,source=requirements/app.txt,target=/tmp/requirements/app.txt" in run
    # one pip install, of the lock only, hash-checked and without resolving
    installs = re.findall(r"pip install ([^;]*)", run)
    assert len(installs) == 1, installs
    args = installs[0].split()
    assert "--require-hashes" in args and "--no-deps" in args
    assert args[args.index("-r") + 1] == "/tmp/requirements/app.txt"
    assert [a for a in args if "==" in a or a.startswith(("torch", "openai-whisper"))] == []
    # torch from the wheelhouse when it has the wheel, else the PyTorch CPU index: both only add a source
    assert "if ls /wheels/torch-*.whl" in run
    assert "set -- --find-links /wheels;" in run and 'set -- --extra-index-url "$TORCH_INDEX_URL";' in run
    assert '"$@"' in args
    # secrets as BuildKit secrets only, the pip cache as a cache mount, the wheelhouse as a named context
    assert "--mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt" in run
    assert "--mount=type=cache,id=modelbake-pip,target=/root/.cache/pip" in run
    assert "--mount=type=bind,from=wheels,target=/wheels" in run
    # no other pip install anywhere in the app's Dockerfile, and nothing read from pyproject.toml any more
    assert len(re.findall(r"\bpip install\b", "\n".join(instructions(dockerfile)))) == 1
    assert "pyproject.toml" not in stage
    # the lock is in the build context (.dockerignore is an allow-list)
    assert "!requirements/app.txt" in (REPO / ".dockerignore").read_text().splitlines()


def closure(roots: list[str]) -> set[str]:
    """Every distribution `roots` need on the image's platform, from the running venv's metadata (which `make setup`
    installs from requirements/app.txt)."""
    found: set[str] = set()
    todo = [canonicalize_name(Requirement(r).name) for r in roots]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**IMAGE_ENV, "extra": ""}):
                todo.append(canonicalize_name(req.name))
    return found


def test_fetch_lock_is_pyprojects_dependencies_but_rich_and_their_closure_at_the_app_locks_pins():
    """The fetch stage installs requirements/fetch.txt with --no-deps: it must hold exactly what the fetch code's
    dependencies need (pyproject.toml's but the CLI's rich, whose dependencies would come along otherwise) and
    nothing else, each within pyproject's range, at the same pin and hashes as the app image's lock."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    roots = [d for d in declared if canonicalize_name(Requirement(d).name) != "rich"]
    assert len(roots) == len(declared) - 1
    excluded = (REPO / "requirements/fetch-exclude.txt").read_text().splitlines()
    assert [line for line in excluded if line and not line.startswith("#")] == ["rich"]
    fetch = {e.name: e for e in read_lock(FETCH_LOCK)}
    app = {e.name: e for e in read_lock(APP_LOCK)}
    for name, entry in fetch.items():
        if metadata.version(name) != entry.version:
            pytest.skip(f"this venv has {name} {metadata.version(name)}, not the locked {entry.version} (`make setup`)")
    assert set(fetch) == closure(roots)
    assert "rich" not in fetch
    for text in roots:
        req = Requirement(text)
        assert req.specifier.contains(fetch[canonicalize_name(req.name)].version, prereleases=True), text
    for name, entry in fetch.items():
        assert (entry.version, set(entry.hashes)) == (app[name].version, set(app[name].hashes)), name


def fetch_stage(dockerfile: str) -> str:
    """Dockerfile.models' `fetch` stage: from its FROM to the first model stage."""
    start = dockerfile.index(" AS fetch\n")
    return dockerfile[start : dockerfile.index("\nFROM fetch AS ", start)]


def test_dockerfile_models_fetch_stage_installs_the_fetch_lock_from_a_bind_mount():
    """One pip install in the fetch stage, of requirements/fetch.txt only, hash-checked and without resolving,
    bind-mounted (never COPYed into a layer): the step's key is that file, and the file is no layer of the image.
    pyproject.toml, the other locks and the CLI are not in the stage."""
    text = (REPO / "Dockerfile.models").read_text()
    stage = fetch_stage(text)
    runs = [i for i in instructions(stage) if i.startswith("RUN ")]
    assert len(runs) == 1
    assert FETCH_LOCK_MOUNT == "--mount=type=bind,source=requirements/fetch.txt,target=/tmp/requirements/fetch.txt"
    assert FETCH_LOCK_MOUNT in runs[0]
    installs = re.findall(r"pip install ([^&;]*)", runs[0])
    assert len(installs) == 1, installs
    args = installs[0].split()
    assert args == ["--require-hashes", "--no-deps", "-r", "/tmp/requirements/fetch.txt"]
    assert len(re.findall(r"\bpip install\b", "\n".join(instructions(text)))) == 1
    copies = [i for i in instructions(stage) if i.startswith("COPY ")]
    assert copies and not [c for c in copies if "requirements" in c or "pyproject.toml" in c]
    assert "pyproject.toml" not in stage and "app.txt" not in stage and "dev.txt" not in stage
    assert "modelbake/cli.py" not in stage and "modelbake/progress.py" not in stage
    assert "python -m modelbake.fetch_entry " in text
    assert "!requirements/fetch.txt" in (REPO / ".dockerignore").read_text().splitlines()


def test_make_setup_installs_the_same_lock():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^\$\(BIN\)/modelbake:(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "requirements/app.txt" in recipe[1]
    installs = [line for line in recipe[2].splitlines() if "pip install" in line and "--upgrade pip" not in line]
    lock_install, editable = installs
    for option in ("--require-hashes", "--no-deps", "-r requirements/app.txt", "-r requirements/dev.txt"):
        assert option in lock_install
    assert "--no-deps -e ." in editable  # modelbake itself adds nothing the locks do not pin
