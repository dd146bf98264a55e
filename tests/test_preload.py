"""Lock and preload against the local mirror, with huggingface_hub's and pip's real code paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mirror_args
from modelbake.cli import main
from modelbake.digests import sha256_file
from modelbake.lockfile import read_lock

pytestmark = pytest.mark.unit


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


def preload(manifest: Path, dest: Path | None, server, *extra: str) -> int:
    args = ["preload", "--manifest", str(manifest), "--profile", "test", *mirror_args(server), *extra]
    if dest is not None:
        args += ["--dest", str(dest)]
    return main(args)


def tree_state(root: Path) -> dict[str, int]:
    """Every file under root (hidden state excluded) with its size: what 'DEST unchanged' compares."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): p.lstat().st_size
        for p in sorted(root.rglob("*"))
        if not p.is_dir() and ".modelbake" not in p.parts
    }


def test_lock_pins_every_file_and_regenerates_byte_identical(tiny_locked, tiny_tree, mirror):
    lock = read_lock(tiny_locked.with_suffix(".lock"))
    assert set(lock.models) == {"whisper-tiny", "spacy-ner", "bart-map", "led-reduce"}
    whisper = lock.models["whisper-tiny"]
    assert whisper.revision == whisper.files[0].sha256 == sha256_file(tiny_tree.root / "whisper/tiny-random.en.pt")
    bart = lock.models["bart-map"]
    snapshot = next((tiny_tree.root / "huggingface/models--modelbake-tiny--bart/snapshots").iterdir())
    assert bart.revision == snapshot.name
    assert [f.path for f in bart.files] == sorted(p.name for p in snapshot.iterdir())
    for f in bart.files:
        assert f.sha256 == sha256_file(snapshot / f.path) and f.size == (snapshot / f.path).stat().st_size
    before = tiny_locked.with_suffix(".lock").read_bytes()
    assert main(["lock", "--manifest", str(tiny_locked), *mirror_args(mirror)]) == 0
    assert tiny_locked.with_suffix(".lock").read_bytes() == before
    assert json.loads(before)["lock_version"] == 1
    assert main(["lock", "--manifest", str(tiny_locked), "--check"]) == 0


def test_lock_reads_the_spacy_wheel_to_check_the_manifests_sha256(manifest_copy, mirror, tiny_tree):
    """The manifest's spaCy sha256 is the user's own pin, which no server states: the lock proves it against the
    wheel's bytes (read whole, nothing kept), where a HEAD proves nothing. Whisper's URL carries its sha256, so
    its HEAD is the check, and the checkpoint is not downloaded."""
    wheel = tiny_tree.spacy_wheel.name
    mirror.clear_requests()
    assert main(["lock", "--manifest", str(manifest_copy), *mirror_args(mirror)]) == 0
    gets = [r for r in mirror.requests_for(wheel) if r.method == "GET"]
    assert gets and gets[-1].status == 200 and gets[-1].bytes_sent == tiny_tree.spacy_wheel.stat().st_size
    assert [r.method for r in mirror.requests_for("tiny-random.en.pt")] == ["HEAD"]


def test_preload_without_a_lock_warns_once_that_models_are_unpinned(manifest_copy, mirror, tmp_path, capsys):
    """The same sentence build.py prints, from its one owner (lockfile.unpinned_warning); a lock silences it."""
    lock = manifest_copy.with_suffix(".lock")
    saved = lock.read_bytes()
    lock.unlink()
    assert preload(manifest_copy, tmp_path / "d1", mirror, "--model", "whisper-tiny") == 0
    err = capsys.readouterr().err.splitlines()
    warnings = [line for line in err if line.startswith("warning:")]
    assert warnings == [f"warning: {lock} missing: models are fetched unpinned; run `modelbake lock`"], err
    lock.write_bytes(saved)
    assert preload(manifest_copy, tmp_path / "d2", mirror, "--model", "whisper-tiny") == 0
    assert [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")] == []


def test_preload_dest_layout_and_second_run_makes_zero_requests(manifest_copy, mirror, tmp_path, tiny_tree):
    dest = tmp_path / "dest"
    assert preload(manifest_copy, dest, mirror) == 0
    lock = read_lock(manifest_copy.with_suffix(".lock"))
    assert sha256_file(dest / "whisper/tiny-random.en.pt") == lock.models["whisper-tiny"].revision
    hub = dest / "huggingface/hub"
    for model_id, folder in (
        ("bart-map", "models--modelbake-tiny--bart"),
        ("led-reduce", "models--modelbake-tiny--led"),
    ):
        entry = lock.models[model_id]
        assert (hub / folder / "refs/main").read_text() == entry.revision
        for f in entry.files:
            assert sha256_file(hub / folder / "snapshots" / entry.revision / f.path) == f.sha256
    assert (dest / "spacy/en_tiny_ner/en_tiny_ner/__init__.py").is_file()  # a --target dir per pipeline
    assert not list((dest / "spacy").glob("*/*.dist-info/direct_url.json"))
    assert not list(dest.rglob("*.incomplete")) and not list(hub.glob(".modelbake-staging-*"))

    mirror.clear_requests()
    assert preload(manifest_copy, dest, mirror) == 0
    assert mirror.requests == []


def test_preload_into_default_caches(manifest_copy, mirror, tmp_path):
    """Without --dest: the Whisper cache and the Hugging Face hub cache the libraries use by default."""
    cache = Path(os.environ["XDG_CACHE_HOME"])
    assert preload(manifest_copy, None, mirror, "--model", "whisper-tiny", "--model", "bart-map") == 0
    assert (cache / "whisper/tiny-random.en.pt").is_file()
    assert (cache / "huggingface/hub/models--modelbake-tiny--bart/refs/main").is_file()
    mirror.clear_requests()
    assert preload(manifest_copy, None, mirror, "--model", "whisper-tiny", "--model", "bart-map") == 0
    assert mirror.requests == []
    assert main(["clean-cache", "--manifest", str(manifest_copy), "--profile", "test"]) == 0
    assert not (cache / "whisper/tiny-random.en.pt").exists()
    assert not (cache / "huggingface/hub/models--modelbake-tiny--bart").exists()


@pytest.mark.parametrize(
    ("fault", "model_id", "file"),
    [
        ("corrupt", "whisper-tiny", "tiny-random.en.pt"),
        ("corrupt", "bart-map", "model.safetensors"),
        ("corrupt", "spacy-ner", "en_tiny_ner-0.1.0-py3-none-any.whl"),
        ("not_found", "led-reduce", "config.json"),
    ],
)
def test_bad_bytes_or_missing_file_fail_naming_model_file_url_and_leave_dest_unchanged(
    manifest_copy, mirror, tmp_path, capsys, fault, model_id, file
):
    dest = tmp_path / "dest"
    path_key = (
        file
        if fault == "corrupt"
        else f"modelbake-tiny/led/resolve/{read_lock(manifest_copy.with_suffix('.lock')).models['led-reduce'].revision}/{file}"
    )
    getattr(mirror.faults, fault).add(path_key)
    assert preload(manifest_copy, dest, mirror, "--model", model_id) == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("error:"))
    assert f"model {model_id}: {file}" in line and mirror.url in line
    if fault == "corrupt":
        assert "sha256 mismatch" in line
        hint = next(ln for ln in err.splitlines() if ln.startswith("hint:"))
        # Whisper and spaCy are pinned by the manifest's sha256, which may be the fault: both lines name it. A
        # Hugging Face file's digest is the Hub's, in the lock: the mirror sent other bytes than it listed.
        field = f"{manifest_copy}: models.{model_id}.sha256"
        if model_id == "bart-map":
            assert field not in line and "models.toml" not in hint and "re-run `modelbake lock`" in hint
        else:
            assert field in line and f"check {field}" in hint and "check the mirror" in hint
    assert tree_state(dest) == {}


def test_mismatch_against_hub_digests_without_a_lock(manifest_copy, mirror, tmp_path, capsys):
    """No lock: a non-LFS file is checked against the Hub's git blob id, an LFS one against its sha256."""
    manifest_copy.with_suffix(".lock").unlink()
    dest = tmp_path / "dest"
    mirror.faults.corrupt.add("tokenizer_config.json")
    assert preload(manifest_copy, dest, mirror, "--model", "bart-map") == 1
    assert "git blob" in capsys.readouterr().err
    assert tree_state(dest) == {}
    mirror.faults.clear()
    assert preload(manifest_copy, dest, mirror, "--model", "bart-map") == 0
    mirror.clear_requests()
    assert preload(manifest_copy, dest, mirror, "--model", "bart-map") == 0
    assert mirror.requests == []  # the ref written last time resolves "main" without asking


def test_transient_errors_are_retried(manifest_copy, mirror, tmp_path):
    dest = tmp_path / "dest"
    mirror.faults.fail["tiny-random.en.pt"] = 2
    mirror.faults.reset["model.safetensors"] = 1
    assert preload(manifest_copy, dest, mirror, "--model", "whisper-tiny", "--model", "led-reduce") == 0
    assert len(mirror.requests_for("tiny-random.en.pt")) >= 3
    assert (dest / "whisper/tiny-random.en.pt").is_file()


def test_unreachable_mirror_fails_naming_the_model(manifest_copy, tmp_path, capsys):
    dest = tmp_path / "dest"
    args = ["--mirror", "whisper=http://127.0.0.1:9/whisper"]
    rc = main(["preload", "--manifest", str(manifest_copy), "--model", "whisper-tiny", "--dest", str(dest), *args])
    assert rc == 1
    err = capsys.readouterr().err
    assert "model whisper-tiny: tiny-random.en.pt: unreachable" in err and "http://127.0.0.1:9/whisper/" in err
    assert tree_state(dest) == {}


def test_stale_lock_is_an_error(manifest_copy, mirror, tmp_path, capsys):
    text = manifest_copy.read_text().replace('revision = "main"', 'revision = "v2"', 1)
    manifest_copy.write_text(text)
    assert preload(manifest_copy, tmp_path / "d", mirror) == 2
    assert "out of date: models.bart-map: manifest entry changed" in capsys.readouterr().err
    assert main(["lock", "--manifest", str(manifest_copy), "--check"]) == 1


def test_two_preloads_into_one_dest_at_once(manifest_copy, mirror, tmp_path):
    dest = tmp_path / "dest"
    cmd = [sys.executable, "-m", "modelbake", "preload", "--manifest", str(manifest_copy), "--dest", str(dest)]
    cmd += mirror_args(mirror)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lock = read_lock(manifest_copy.with_suffix(".lock"))
    assert sha256_file(dest / "whisper/tiny-random.en.pt") == lock.models["whisper-tiny"].revision
    # Each model was fetched by exactly one of the two; the other found it present.
    assert sum(int(o[0].split(": ")[2].split()[0]) for o in outs) == 4


def test_preload_single_entry_from_stdin(manifest_copy, mirror, tmp_path):
    """What each Dockerfile.models step runs: one lock entry, no manifest."""
    from modelbake.lockfile import entry_json

    entry = read_lock(manifest_copy.with_suffix(".lock")).models["led-reduce"]
    dest = tmp_path / "dest"
    proc = subprocess.run(
        [sys.executable, "-m", "modelbake", "preload", "--entry", "-", "--dest", str(dest), *mirror_args(mirror)],
        input=entry_json(entry),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / "huggingface/hub").iterdir()) == ["models--modelbake-tiny--led"]
    assert not (dest / "whisper").exists()


def test_a_lone_entry_names_the_manifests_field_without_a_path(manifest_copy, mirror, tmp_path):
    """What a Dockerfile.models step runs has no manifest file, only the entry: a bad checkpoint still names the
    field to fix, as the manifest's, and there is no lock to warn about."""
    from modelbake.lockfile import entry_json

    entry = read_lock(manifest_copy.with_suffix(".lock")).models["whisper-tiny"]
    mirror.faults.corrupt.add("tiny-random.en.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelbake",
            "preload",
            "--entry",
            "-",
            "--dest",
            str(tmp_path / "d"),
            *mirror_args(mirror),
        ],
        input=entry_json(entry),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error:", "hint:", "warning:"))]
    assert len(errors) == 2, proc.stderr
    assert "sha256 mismatch: the manifest's models.whisper-tiny.sha256 is " in errors[0]
    assert errors[1].startswith("hint: check the manifest's models.whisper-tiny.sha256 against")


def test_spacy_into_the_active_environment(manifest_copy, mirror, tmp_path):
    """Without --dest, spaCy pipelines are pip-installed into the running environment (a throwaway venv here)."""
    import site
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin/python"
    pth = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # The throwaway env sees this env's packages (modelbake, pip, spaCy) behind its own site-packages.
    (pth / "parent.pth").write_text("\n".join([*site.getsitepackages(), str(Path(__file__).parents[1] / "src")]) + "\n")
    cmd = [python, "-m", "modelbake", "preload", "--manifest", str(manifest_copy), "--model", "spacy-ner"]
    proc = subprocess.run([*cmd, *mirror_args(mirror)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (pth / "en_tiny_ner").is_dir()
    # Installed where that interpreter finds it, as pip's own distribution (spaCy loading it: tests/test_verify.py).
    check = subprocess.run(
        [
            python,
            "-c",
            "import en_tiny_ner, importlib.metadata as m; print(en_tiny_ner.__file__, m.version('en_tiny_ner'))",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.split() == [str(pth / "en_tiny_ner/__init__.py"), "0.1.0"], check.stderr
    mirror.clear_requests()
    proc = subprocess.run([*cmd, *mirror_args(mirror)], capture_output=True, text=True)
    assert proc.returncode == 0 and mirror.requests == []


def test_fetcher_for_pairs_each_family_with_its_module():
    from modelbake.fetchers import fetcher_for, huggingface, spacy, whisper
    from modelbake.manifest import HuggingFaceSpec, SpacySpec, WhisperSpec

    specs = [
        (WhisperSpec(id="w", name="tiny", sha256="0" * 64), whisper),
        (SpacySpec(id="s", name="en_x", version="1.0", sha256="0" * 64), spacy),
        (HuggingFaceSpec(id="h", repo="org/name", revision="main"), huggingface),
    ]
    for spec, module in specs:
        paired = fetcher_for(spec)
        assert paired.fetcher is module and paired.spec is spec


def test_lock_of_one_profile_pins_its_models_and_keeps_the_others_entries(manifest_copy, mirror, capsys):
    """A new project that keeps a model no mirror serves yet: `lock` of every model fails on it, `lock --profile`
    pins the profile's models alone and leaves the rest of the lock as it was."""
    locked = read_lock(manifest_copy.with_suffix(".lock"))
    assert locked is not None
    text = manifest_copy.read_text()
    text += '\n[models.unreachable]\nfamily = "whisper"\nname = "nowhere.en"\nsha256 = "' + "e" * 64 + '"\n'
    manifest_copy.write_text(text)
    before = manifest_copy.with_suffix(".lock").read_bytes()
    assert main(["lock", "--manifest", str(manifest_copy), *mirror_args(mirror)]) != 0  # the control
    assert manifest_copy.with_suffix(".lock").read_bytes() == before  # a failed lock writes nothing
    capsys.readouterr()
    assert main(["lock", "--manifest", str(manifest_copy), "--profile", "test", *mirror_args(mirror)]) == 0
    after = read_lock(manifest_copy.with_suffix(".lock"))
    assert after is not None and after.models == locked.models  # the test profile re-pinned to the same entries
    assert "unreachable" not in after.models
    assert main(["lock", "--manifest", str(manifest_copy), "--profile", "test", "--check"]) == 0
    assert main(["lock", "--manifest", str(manifest_copy), "--check"]) == 1  # the whole manifest is not pinned
