"""The closed error boundary: every failure a user can cause or meet ends in one `error:` line and an exit code
(2 bad input, 1 failed work), never a traceback, and leaves nothing partial behind.

One table, each case run through the real CLI in a fresh process (`python -m modelbake ...`) and, where the
manifest or the lock is at fault, through `python build.py --dry-run` too (those checks come before Docker).
Server misbehaviour comes from the mirror's fault injection, so huggingface_hub's and httpx's own download code
meets it. A full disk is a real one, a tmpfs smaller than the model, and a read-only destination a read-only
bind mount, both mounted in a private user+mount namespace (`unshare`): no privileges needed, and the mounts
vanish with the process.
The bench's missing chart library is tested in tests/test_bench.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, mirror_args, unavailable
from modelbake.digests import sha256_file
from modelbake.lockfile import read_lock

pytestmark = [pytest.mark.unit, pytest.mark.loopback]


# These tests move bytes and check digests; none loads a model. So they fetch stand-ins in the tiny models'
# layout (tests/bytemodels.py), made without torch, transformers or spaCy; the real tiny models are for the
# tests that load them (`ml_models`, `docker`).
@pytest.fixture(scope="session")
def tiny_tree(byte_tree):
    return byte_tree


@pytest.fixture(scope="session")
def mirror(byte_mirror):
    return byte_mirror


@pytest.fixture(scope="session")
def tiny_locked(byte_locked):
    return byte_locked


WHISPER_FILE = "tiny-random.en.pt"
SPACY_WHEEL = "en_tiny_ner-0.1.0-py3-none-any.whl"
# What a failed run must never leave behind anywhere under --dest (temp files, staging dirs, probes).
PARTIAL_MARKERS = (".incomplete", ".tmp", ".modelbake-staging-", ".modelbake-tmp", ".probe-", ".old")


@dataclass
class Ctx:
    """What a case's callables see: a per-test copy of the locked tiny manifest, a --dest path, the mirror."""

    tmp: Path
    manifest: Path
    dest: Path
    mirror: object
    before: dict[Path, bytes] = field(default_factory=dict)  # the manifest's and the lock's bytes before the run

    @property
    def lock(self) -> Path:
        return self.manifest.with_suffix(".lock")

    def url(self, family: str) -> str:
        return self.mirror.mirrors[family]  # type: ignore[attr-defined]

    def whisper_url(self) -> str:
        sha = read_lock(self.lock).models["whisper-tiny"].revision
        return f"{self.url('whisper')}/{sha}/{WHISPER_FILE}"

    def resolve_url(self, model_id: str, path: str) -> str:
        entry = read_lock(self.lock).models[model_id]
        repo = entry.spec["repo"]
        return f"{self.url('huggingface')}/{repo}/resolve/{entry.revision}/{path}"

    def preload(self, *models: str) -> list[str]:
        argv = ["preload", "--manifest", str(self.manifest), "--dest", str(self.dest), *mirror_args(self.mirror)]
        return argv + [arg for m in models for arg in ("--model", m)]

    def lock_cmd(self) -> list[str]:
        return ["lock", "--manifest", str(self.manifest), *mirror_args(self.mirror)]


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    code: int
    names: Callable[[Ctx], list[str]] = lambda ctx: []  # what the `error:` line must name
    hints: Callable[[Ctx], list[str]] = lambda ctx: []  # what the `hint:` line must name
    faults: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mirror fault -> path substrings
    setup: Callable[[Ctx], None] | None = None
    namespace: Callable[[Ctx], str] | None = None  # shell run in a private user+mount namespace first
    build: bool = False  # the same failure through `python build.py --dry-run`
    check: Callable[[Ctx], None] | None = None  # more assertions after the run
    python: tuple[str, ...] = ("-m", "modelbake")  # how the CLI is started


def _write(path_attr: str, data: bytes) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        getattr(ctx, path_attr).write_bytes(data)

    return setup


def _lock_version(version: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        doc = json.loads(ctx.lock.read_text())
        doc["lock_version"] = version
        ctx.lock.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    return setup


def _dest_is_a_file(ctx: Ctx) -> None:
    ctx.dest.write_text("not a directory\n")


def _stale_lock(ctx: Ctx) -> None:
    ctx.manifest.write_text(ctx.manifest.read_text().replace('revision = "main"', 'revision = "v2"', 1))


def _read_only(attr: str) -> Callable[[Ctx], str]:
    def script(ctx: Ctx) -> str:
        path = getattr(ctx, attr) if attr != "manifest_dir" else ctx.manifest.parent
        path.mkdir(parents=True, exist_ok=True)
        return f'mount --bind "{path}" "{path}" && mount -o remount,bind,ro "{path}"'

    return script


def _tmpfs(size: str) -> Callable[[Ctx], str]:
    def script(ctx: Ctx) -> str:
        ctx.dest.mkdir(parents=True, exist_ok=True)
        return f'mount -t tmpfs -o size={size} tmpfs "{ctx.dest}"'

    return script


def _wrong_sha256(model_id: str, *files: str) -> Callable[[Ctx], None]:
    """A typo in the manifest's sha256 of `model_id` (still 64 hex digits), in each of `files` (`manifest`,
    `lock`: a lock that took the wrong pin over, as `modelbake lock` did before it checked spaCy wheels)."""

    def setup(ctx: Ctx) -> None:
        pinned = read_lock(ctx.lock).models[model_id].files[0].sha256
        typo = pinned[:-1] + ("0" if pinned[-1] != "0" else "1")
        for name in files:
            path = getattr(ctx, name)
            if name == "lock" and not path.exists():
                continue
            assert pinned in path.read_text()
            path.write_text(path.read_text().replace(pinned, typo))

    return setup


def _replace(name: str, old: str, new: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        path = getattr(ctx, name)
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    return setup


def _no_lock_and(setup: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def both(ctx: Ctx) -> None:
        setup(ctx)
        ctx.lock.unlink()

    return both


def _loaders_installed(ctx: Ctx) -> None:
    """verify checks its loaders are installed (the `ml` extra) before anything else; it imports none of them."""
    from modelbake.verify import LOADER_MODULES

    missing = [m for modules in LOADER_MODULES.values() for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(f"verify needs {', '.join(missing)} (the `ml` extra) installed")


def _fetched(ctx: Ctx) -> None:
    """Every file in place and matching the lock's sha256, though no response said how long it was."""
    lock = read_lock(ctx.lock)
    assert sha256_file(ctx.dest / "whisper" / WHISPER_FILE) == lock.models["whisper-tiny"].files[0].sha256
    assert (ctx.dest / "spacy/en_tiny_ner/en_tiny_ner/__init__.py").is_file()
    entry = lock.models["bart-map"]
    snapshot = ctx.dest / "huggingface/hub/models--modelbake-tiny--bart/snapshots" / entry.revision
    assert all(sha256_file(snapshot / f.path) == f.sha256 for f in entry.files)


def _lock_unchanged(ctx: Ctx) -> None:
    assert ctx.lock.read_bytes() == ctx.before[ctx.lock], "sizes measured without Content-Length differ"


def _dest_file_untouched(ctx: Ctx) -> None:
    assert ctx.dest.read_text() == "not a directory\n"


BLOCK_TORCH = ("-c", "import sys; sys.modules['torch'] = None; from modelbake.cli import main; sys.exit(main())")

CASES = [
    # -- a server answering without Content-Length (chunked): it works, checked against the lock ----------
    Case(
        "no-content-length-preload",
        lambda c: c.preload("whisper-tiny", "spacy-ner", "bart-map"),
        0,
        faults={"no_content_length": ("/whisper/", "/spacy/", "/resolve/")},
        check=_fetched,
    ),
    Case(
        "no-content-length-lock",
        lambda c: c.lock_cmd(),
        0,
        faults={"no_content_length": ("/whisper/", "/spacy/")},
        check=_lock_unchanged,
    ),
    # -- server misbehaviour ---------------------------------------------------------------------------------
    Case(
        "html-instead-of-hub-json",
        lambda c: c.lock_cmd(),
        1,
        lambda c: ["model bart-map", "HTML page, not JSON", f"{c.url('huggingface')}/api/models/modelbake-tiny/bart/"],
        hints=lambda c: ["proxy"],
        faults={"html": ("/api/",)},
    ),
    Case(
        "html-instead-of-a-hub-file",
        lambda c: c.preload("bart-map"),
        1,
        lambda c: ["model bart-map", "config.json", "X-Repo-Commit", c.resolve_url("bart-map", "config.json")],
        faults={"html": ("/resolve/",)},
    ),
    Case(
        "html-instead-of-a-checkpoint",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "HTML page", c.whisper_url()],
        faults={"html": (WHISPER_FILE,)},
    ),
    Case(
        "redirect-loop-checkpoint",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "redirect loop", c.whisper_url()],
        faults={"redirect_loop": (WHISPER_FILE,)},
    ),
    Case(
        "redirect-loop-lock",
        lambda c: c.lock_cmd(),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "redirect loop", c.whisper_url()],
        faults={"redirect_loop": (WHISPER_FILE,)},
    ),
    Case(
        "redirect-loop-hub",
        lambda c: c.preload("bart-map"),
        1,
        lambda c: ["model bart-map", "config.json", "redirect loop", c.resolve_url("bart-map", "config.json")],
        faults={"redirect_loop": ("/resolve/",)},
    ),
    Case(
        "truncated-checkpoint",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "download failed after 5 tries", c.whisper_url()],
        faults={"truncate": (WHISPER_FILE,)},
    ),
    Case(
        "truncated-chunked-checkpoint",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "incomplete chunked read", c.whisper_url()],
        faults={"truncate": (WHISPER_FILE,), "no_content_length": (WHISPER_FILE,)},
    ),
    Case(
        "truncated-hub-file",
        lambda c: c.preload("bart-map"),
        1,
        lambda c: [
            "model bart-map",
            "model.safetensors",
            "download failed",
            c.resolve_url("bart-map", "model.safetensors"),
        ],
        faults={"truncate": ("model.safetensors",)},
    ),
    # -- a wrong pin in the manifest: the error and the hint name the field to fix ------------------------------
    Case(
        "spacy-sha256-wrong-lock",
        lambda c: c.lock_cmd(),
        1,
        lambda c: ["model spacy-ner", SPACY_WHEEL, "sha256 mismatch", f"{c.manifest}: models.spacy-ner.sha256"],
        hints=lambda c: [f"check {c.manifest}: models.spacy-ner.sha256", "`modelbake lock`", "check the mirror"],
        setup=_wrong_sha256("spacy-ner", "manifest"),
    ),
    Case(
        "spacy-sha256-wrong-preload",
        lambda c: c.preload("spacy-ner"),
        1,
        lambda c: ["model spacy-ner", SPACY_WHEEL, "sha256 mismatch", f"{c.manifest}: models.spacy-ner.sha256"],
        hints=lambda c: [f"check {c.manifest}: models.spacy-ner.sha256", "check the mirror"],
        setup=_wrong_sha256("spacy-ner", "manifest", "lock"),
    ),
    Case(
        "whisper-sha256-wrong-lock",
        lambda c: c.lock_cmd(),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "HTTP 404", f"{c.url('whisper')}/"],
        hints=lambda c: [f"{c.manifest}: models.whisper-tiny.sha256", "404", "sha256 (or the name) is wrong"],
        setup=_wrong_sha256("whisper-tiny", "manifest"),
    ),
    Case(
        "whisper-sha256-wrong-preload-unlocked",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", WHISPER_FILE, "HTTP 404", f"{c.url('whisper')}/"],
        hints=lambda c: [f"{c.manifest}: models.whisper-tiny.sha256", "sha256 (or the name) is wrong"],
        setup=_no_lock_and(_wrong_sha256("whisper-tiny", "manifest")),
    ),
    Case(
        "spacy-version-wrong-lock",
        lambda c: c.lock_cmd(),
        1,
        lambda c: ["model spacy-ner", "en_tiny_ner-0.1.9-py3-none-any.whl", "HTTP 404", f"{c.url('spacy')}/"],
        hints=lambda c: [f"{c.manifest}: models.spacy-ner.name (and `version`)", "404"],
        setup=_replace("manifest", 'version = "0.1.0"', 'version = "0.1.9"'),
    ),
    # -- models that are not there: verify says where it looked and how to fetch them -------------------------
    Case(
        "verify-not-present",
        lambda c: ["verify", "--manifest", str(c.manifest), "--profile", "test"],
        1,
        lambda c: ["not present in the default caches: whisper-tiny, spacy-ner, bart-map, led-reduce"],
        hints=lambda c: [f"`modelbake preload --manifest {c.manifest} --profile test`", "--models DIR"],
        setup=_loaders_installed,
    ),
    Case(
        "verify-not-present-in-models-dir",
        lambda c: ["verify", "--manifest", str(c.manifest), "--model", "bart-map", "--models", str(c.tmp)],
        1,
        lambda c: [f"not present in {c.tmp}: bart-map"],
        hints=lambda c: [f"`modelbake preload --manifest {c.manifest} --model bart-map --dest {c.tmp}`"],
        setup=_loaders_installed,
    ),
    # -- the destination ------------------------------------------------------------------------------------
    Case(
        "dest-is-a-file",
        lambda c: c.preload("whisper-tiny"),
        2,
        lambda c: [f"cannot write {c.dest}: not a directory"],
        setup=_dest_is_a_file,
        check=_dest_file_untouched,
    ),
    Case(
        "dest-read-only",
        lambda c: c.preload("whisper-tiny"),
        2,
        lambda c: [f"cannot write {c.dest}: read-only file system"],
        namespace=_read_only("dest"),
    ),
    Case(
        "disk-full-checkpoint",
        lambda c: c.preload("whisper-tiny"),
        1,
        lambda c: ["model whisper-tiny", f"{c.dest}/whisper/{WHISPER_FILE}", "no space left on device"],
        namespace=_tmpfs("1m"),
    ),
    Case(
        "disk-full-hub",
        lambda c: c.preload("bart-map"),
        1,
        lambda c: ["model bart-map", f"{c.dest}/huggingface/hub", "no space left on device"],
        namespace=_tmpfs("200k"),
    ),
    Case(
        "disk-full-spacy",
        lambda c: c.preload("spacy-ner"),
        1,
        lambda c: ["model spacy-ner", "no space left on device"],
        namespace=_tmpfs("300k"),
    ),
    Case(
        "lock-dir-read-only",
        lambda c: c.lock_cmd(),
        2,
        lambda c: [f"cannot write {c.lock}: read-only file system"],
        namespace=_read_only("manifest_dir"),
    ),
    Case(
        "clean-dest-is-a-file",
        lambda c: ["clean-cache", "--manifest", str(c.manifest), "--dest", str(c.dest)],
        2,
        lambda c: [f"cannot clean {c.dest}: not a directory"],
        setup=_dest_is_a_file,
    ),
    # -- the manifest and the lock --------------------------------------------------------------------------
    Case(
        "manifest-not-toml",
        lambda c: c.preload(),
        2,
        lambda c: [str(c.manifest), "malformed TOML"],
        setup=_write("manifest", b"[models.whisper-tiny\nfamily = 'whisper'\n"),
        build=True,
    ),
    Case(
        "manifest-not-utf8",
        lambda c: c.preload(),
        2,
        lambda c: [str(c.manifest), "not UTF-8", "0xff"],
        setup=_write("manifest", b"# caf\xff\n[models.x]\nfamily = 'whisper'\n"),
        build=True,
    ),
    Case(
        "lock-from-the-future",
        lambda c: c.preload(),
        2,
        lambda c: [str(c.lock), "lock_version 99: written by a newer modelbake", "reads lock_version 1"],
        hints=lambda c: ["upgrade modelbake"],
        setup=_lock_version(99),
        build=True,
    ),
    Case(
        "lock-not-utf8",
        lambda c: ["verify", "--manifest", str(c.manifest)],
        2,
        lambda c: [str(c.lock), "not UTF-8"],
        setup=_write("lock", b"\xff\xfe{}"),
        build=True,
    ),
    Case(
        "lock-stale",
        lambda c: c.preload(),
        2,
        lambda c: [str(c.lock), "out of date", "models.bart-map"],
        setup=_stale_lock,
        build=True,
    ),
    Case(
        "lock-check-stale",
        lambda c: ["lock", "--check", "--manifest", str(c.manifest)],
        1,
        lambda c: [str(c.lock), "models.bart-map"],
        setup=_stale_lock,
    ),
    Case(
        "entry-file-missing",
        lambda c: ["preload", "--entry", str(c.tmp / "nope.json"), "--dest", str(c.dest)],
        2,
        lambda c: [str(c.tmp / "nope.json"), "not found"],
    ),
    # -- command-line values ---------------------------------------------------------------------------------
    Case("jobs-not-a-number", lambda c: [*c.preload(), "--jobs", "x"], 2, lambda c: ["--jobs", "'x'"]),
    Case(
        "hf-token-file-missing",
        lambda c: [*c.preload("bart-map"), "--hf-token-file", str(c.tmp / "token")],
        2,
        lambda c: [f"--hf-token-file {c.tmp / 'token'}"],
    ),
    Case(
        "mirror-port-out-of-range",
        lambda c: ["mirror", "serve", str(c.tmp), "--port", "99999"],
        2,
        lambda c: ["--port", "99999"],
    ),
    Case(
        "mirror-dir-missing",
        lambda c: ["mirror", "serve", str(c.tmp / "nope"), "--port", "0"],
        2,
        lambda c: [str(c.tmp / "nope")],
    ),
    Case(
        "dockerfile-root-is-a-file",
        lambda c: ["dockerfile", "--manifest", str(c.manifest), "--root", str(c.manifest)],
        2,
        lambda c: [f"cannot write {c.manifest}: not a directory"],
    ),
    # -- a missing optional dependency: checked before any model loads -------------------------------------
    Case(
        "verify-without-torch",
        lambda c: ["verify", "--manifest", str(c.manifest), "--model", "bart-map"],
        2,
        lambda c: ["modelbake verify needs torch"],
        hints=lambda c: ["modelbake[ml]"],
        python=BLOCK_TORCH,
    ),
]


def _namespace_works(tmp: Path) -> str | None:
    """None when an unprivileged user+mount namespace with a tmpfs can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = tmp / "ns-probe"
    probe.mkdir()
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{probe}"']
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return None if proc.returncode == 0 else f"cannot mount in a user namespace: {proc.stderr.strip()}"


def _run(case: Case, ctx: Ctx, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """Run the CLI (inside a namespace when the case wants one); returns the process and what is under --dest
    as (type, path) pairs, `f` for files, listed before the namespace and its mounts are gone."""
    command = [sys.executable, *case.python, *argv]
    listing = ctx.tmp / "dest-listing.txt"
    if case.namespace is not None:
        reason = _namespace_works(ctx.tmp)
        if reason:
            unavailable(reason)
        script = (
            f'{case.namespace(ctx)} || exit 97; "$@"; rc=$?; '
            f'if [ -d "{ctx.dest}" ]; then find "{ctx.dest}" -mindepth 1 -printf "%y %P\\n" > "{listing}"; fi; exit $rc'
        )
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 97, f"namespace set-up failed: {proc.stderr}"
    if listing.exists():
        entries = [tuple(line.split(" ", 1)) for line in listing.read_text().splitlines()]
    elif ctx.dest.is_dir():
        entries = [("d" if p.is_dir() else "f", str(p.relative_to(ctx.dest))) for p in ctx.dest.rglob("*")]
    else:
        entries = []
    return proc, entries  # type: ignore[return-value]


def _assert_one_line(case: Case, ctx: Ctx, proc: subprocess.CompletedProcess[str], what: str) -> None:
    out = f"{what}: exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == case.code, out
    assert "Traceback" not in proc.stdout + proc.stderr, out
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if case.code == 0:
        assert errors == [], out
        return
    assert len(errors) == 1, out
    for name in case.names(ctx):
        assert name in errors[0], f"{name!r} not named in {errors[0]!r}"
    wanted = case.hints(ctx)
    if wanted:
        hints = [line for line in proc.stderr.splitlines() if line.startswith("hint:")]
        assert len(hints) == 1, out
        for name in wanted:
            assert name in hints[0], f"{name!r} not named in {hints[0]!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_failure_is_one_error_line_and_leaves_nothing_partial(case: Case, manifest_copy, mirror, tmp_path):
    ctx = Ctx(tmp=tmp_path, manifest=manifest_copy, dest=tmp_path / "dest", mirror=mirror)
    if case.setup:
        case.setup(ctx)
    for fault, keys in case.faults.items():
        getattr(mirror.faults, fault).update(keys)
    ctx.before = {p: p.read_bytes() for p in (ctx.manifest, ctx.lock) if p.exists()}

    proc, entries = _run(case, ctx, case.argv(ctx))

    _assert_one_line(case, ctx, proc, "modelbake")
    partial = [path for _, path in entries if any(marker in Path(path).name for marker in PARTIAL_MARKERS)]
    assert partial == [], f"left behind under --dest: {partial}"
    if case.code != 0:
        # Nothing of the failed model: no file outside modelbake's own state (.modelbake: locks, markers).
        files = [path for kind, path in entries if kind == "f" and not path.startswith(".modelbake/")]
        assert files == [], f"a failed run left files under --dest: {files}"
        assert {p: p.read_bytes() for p in ctx.before} == ctx.before, "a failed run changed the manifest or lock"
    if case.check:
        case.check(ctx)
    if case.build:
        build = subprocess.run(
            [sys.executable, str(REPO / "build.py"), "--manifest", str(ctx.manifest), "--dry-run"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        _assert_one_line(case, ctx, build, "build.py --dry-run")


# --- build.py: what it refuses before a build that may take minutes ---------------------------------------------
# Each case runs the real build.py (no --dry-run) with no engine at all (DOCKER_HOST names a socket nothing serves):
# the line it prints is about the input, so it was said before the engine was asked anything.


@dataclass
class BuildCase:
    id: str
    argv: Callable[[Path], list[str]]
    code: int
    line: Callable[[Path], str]  # the whole `error:` line, without the prefix
    env: Callable[[Path], dict[str, str]] = lambda tmp: {}


def _dir_with_a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("")
    return tmp / "a-file"


BUILD_CASES = [
    BuildCase(
        "context-without-dockerfile",
        lambda tmp: ["--context", str(tmp)],
        2,
        lambda tmp: f"--context {tmp}: no Dockerfile there",
    ),
    BuildCase(
        "json-is-a-directory",
        lambda tmp: ["--json", str(tmp)],
        2,
        lambda tmp: f"--json {tmp}: is a directory",
    ),
    BuildCase(
        "json-in-a-missing-directory",
        lambda tmp: ["--json", str(tmp / "no" / "report.json")],
        2,
        lambda tmp: f"cannot write {tmp / 'no' / 'report.json'}: its directory does not exist",
    ),
    BuildCase(
        "json-under-a-file",
        lambda tmp: ["--json", str(_dir_with_a_file(tmp) / "report.json")],
        2,
        lambda tmp: f"cannot write {tmp / 'a-file'}: not a directory",
    ),
    BuildCase(
        "step-summary-unopenable",
        lambda tmp: [],
        2,
        lambda tmp: f"GITHUB_STEP_SUMMARY: cannot write {tmp}: is a directory",
        env=lambda tmp: {"GITHUB_STEP_SUMMARY": str(tmp)},
    ),
    BuildCase(  # the control: with good input, the engine is what fails (exit 1), so the cases above came first
        "no-engine",
        lambda tmp: ["--json", str(tmp / "report.json")],
        1,
        lambda tmp: "no Docker daemon answers",
    ),
]


@pytest.mark.parametrize("case", BUILD_CASES, ids=[c.id for c in BUILD_CASES])
def test_build_py_refuses_bad_input_before_asking_the_engine(case: BuildCase, manifest_copy, tmp_path):
    tmp = tmp_path / "t"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    argv = [sys.executable, str(REPO / "build.py"), "--manifest", str(manifest_copy), *case.argv(tmp)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**env, **case.env(tmp)})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == case.code and len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    if case.id == "no-engine":
        assert errors[0].startswith(f"error: {case.line(tmp)}"), errors
    else:
        assert errors[0] == f"error: {case.line(tmp)}", errors
    assert not (tmp / "report.json").exists()
