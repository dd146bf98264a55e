"""Offline verify with the real loaders on tiny real models, and the network guard it relies on."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from conftest import mirror_args, run_cli
from modelbake.cli import main
from modelbake.lockfile import read_lock
from modelbake.netguard import NetworkBlocked, NetworkGuard


@pytest.fixture(scope="module")
def baked(tiny_locked, mirror, tmp_path_factory):
    dest = tmp_path_factory.mktemp("baked")
    cmd = ["preload", "--manifest", str(tiny_locked), "--profile", "test", "--dest", str(dest), *mirror_args(mirror)]
    assert main(cmd) == 0
    return tiny_locked, dest


@pytest.mark.ml_models
def test_verify_loads_and_runs_every_model_offline(baked):
    manifest, dest = baked
    proc = run_cli("verify", "--manifest", str(manifest), "--profile", "test", "--models", str(dest))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for model_id in ("whisper-tiny", "spacy-ner", "bart-map", "led-reduce"):
        row = next(line for line in proc.stdout.splitlines() if model_id in line)
        assert " ok " in row, row
    assert "transcribed 1 s" in proc.stdout and "generated" in proc.stdout and "entities" in proc.stdout
    assert "verify: 4 models load and run offline" in proc.stdout


@pytest.mark.ml_models
def test_dest_hub_cache_loads_by_repo_id_alone_and_by_revision(baked):
    manifest, dest = baked
    commit = read_lock(manifest.with_suffix(".lock")).models["bart-map"].revision
    code = (
        "from transformers import AutoTokenizer, AutoModelForSeq2SeqLM\n"
        "AutoTokenizer.from_pretrained('modelbake-tiny/bart'); AutoModelForSeq2SeqLM.from_pretrained('modelbake-tiny/bart')\n"
        f"AutoModelForSeq2SeqLM.from_pretrained('modelbake-tiny/bart', revision='{commit}')\n"
        "import spacy; print(spacy.load('en_tiny_ner').meta['name'])\n"
    )
    import subprocess
    import sys

    env = {
        "HF_HUB_CACHE": str(dest / "huggingface/hub"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(dest / "spacy/en_tiny_ner"),  # the pipeline's own directory
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "tiny_ner"


@pytest.mark.ml_models
def test_verify_names_every_failing_model(baked, tmp_path):
    manifest, dest = baked
    broken = tmp_path / "broken"
    shutil.copytree(dest, broken, symlinks=True)
    (broken / "whisper/tiny-random.en.pt").write_bytes(b"not a checkpoint")
    commit = read_lock(manifest.with_suffix(".lock")).models["led-reduce"].revision
    (broken / f"huggingface/hub/models--modelbake-tiny--led/snapshots/{commit}/model.safetensors").unlink()
    proc = run_cli("verify", "--manifest", str(manifest), "--profile", "test", "--models", str(broken))
    assert proc.returncode == 1
    assert "error: verify failed for whisper-tiny, led-reduce" in proc.stderr
    assert "model whisper-tiny: ValueError" in proc.stderr and "sha256" in proc.stderr


@pytest.mark.ml_models
def test_spacy_loads_a_pipeline_preloaded_into_the_active_environment(manifest_copy, mirror, tmp_path):
    """Without --dest, preload pip-installs a spaCy pipeline where the running interpreter finds it, and spaCy
    loads it by name (the byte-moving side of this is tests/test_preload.py's, on stand-in files)."""
    import site
    import subprocess
    import venv
    from pathlib import Path

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin/python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.check_output([python, "-c", code], text=True).strip())
    src = Path(__file__).resolve().parents[1] / "src"
    (purelib / "parent.pth").write_text("\n".join([*site.getsitepackages(), str(src)]) + "\n")
    cmd = [python, "-m", "modelbake", "preload", "--manifest", str(manifest_copy), "--model", "spacy-ner"]
    proc = subprocess.run([*cmd, *mirror_args(mirror)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    load = "import spacy; nlp = spacy.load('en_tiny_ner'); print(nlp.meta['version'], nlp.pipe_names)"
    check = subprocess.run([python, "-c", load], capture_output=True, text=True)
    assert check.stdout.strip() == "0.1.0 ['ner']", check.stderr


@pytest.mark.unit
def test_network_guard_blocks_and_records():
    guard = NetworkGuard()
    guard.label = "m1"
    with guard.active():
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(NetworkBlocked):
            socket.getaddrinfo("huggingface.co", 443)
    assert guard.attempts_for("m1") and "huggingface.co" in guard.attempts_for("m1")[-1]
    # Restored afterwards.
    assert socket.getaddrinfo is not None and socket.socket.connect.__name__ == "connect"


@pytest.mark.ml_models
def test_verify_of_a_file_missing_from_a_snapshot_fails_offline_without_touching_the_network(baked, tmp_path):
    """Offline flags set before the loaders import: a snapshot without its config.json is there, so its loader
    runs, and fails at once, with no connection tried."""
    manifest, dest = baked
    broken = tmp_path / "noconfig"
    shutil.copytree(dest, broken, symlinks=True)
    commit = read_lock(manifest.with_suffix(".lock")).models["bart-map"].revision
    (broken / f"huggingface/hub/models--modelbake-tiny--bart/snapshots/{commit}/config.json").unlink()
    proc = run_cli("verify", "--manifest", str(manifest), "--model", "bart-map", "--models", str(broken))
    assert proc.returncode == 1
    assert "error: verify failed for bart-map" in proc.stderr
    assert "model bart-map:" in proc.stderr and "not present" not in proc.stderr
    assert "tried the network" not in proc.stderr


@pytest.mark.unit
@pytest.mark.loopback
def test_verify_says_where_it_looked_for_models_that_are_not_there(byte_locked, tmp_path):
    """Nothing preloaded in the default caches: one line per model saying where verify looked, one error line,
    and a hint with the command that fetches them; no loader runs, so none of their errors (spaCy's E050,
    transformers' "couldn't connect to huggingface.co") stands in for that."""
    manifest = tmp_path / "models.toml"
    shutil.copy(byte_locked, manifest)
    shutil.copy(byte_locked.with_suffix(".lock"), manifest.with_suffix(".lock"))
    lock = read_lock(manifest.with_suffix(".lock"))
    cache, hub = Path(os.environ["XDG_CACHE_HOME"]), Path(os.environ["HF_HOME"]) / "hub"
    proc = run_cli("verify", "--manifest", str(manifest), "--profile", "test")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    snapshot = "{}/snapshots/{}".format
    assert lines == [
        f"  model whisper-tiny: not present: no {cache}/whisper/tiny-random.en.pt",
        f"  model spacy-ner: not present: no pipeline en_tiny_ner in this Python environment ({sys.prefix})",
        f"  model bart-map: not present: no {snapshot(hub / 'models--modelbake-tiny--bart', lock.models['bart-map'].revision)}",
        f"  model led-reduce: not present: no {snapshot(hub / 'models--modelbake-tiny--led', lock.models['led-reduce'].revision)}",
        "error: verify: not present in the default caches: whisper-tiny, spacy-ner, bart-map, led-reduce",
        f"hint: run `modelbake preload --manifest {manifest} --profile test` to fetch them, or pass --models DIR "
        "(a tree written by `modelbake preload --dest DIR`)",
    ], proc.stderr
    assert "E050" not in proc.stdout + proc.stderr and "huggingface.co" not in proc.stdout + proc.stderr


@pytest.mark.ml_models
def test_verify_loads_the_models_that_are_there_and_names_the_one_that_is_not(baked, tmp_path):
    """A tree missing one checkpoint: every other model still loads and runs with its real loader."""
    manifest, dest = baked
    partial = tmp_path / "partial"
    shutil.copytree(dest, partial, symlinks=True)
    (partial / "whisper/tiny-random.en.pt").unlink()
    proc = run_cli("verify", "--manifest", str(manifest), "--profile", "test", "--models", str(partial))
    assert proc.returncode == 1
    rows = {m: next(line for line in proc.stdout.splitlines() if m in line) for m in ("spacy-ner", "bart-map")}
    assert all(" ok " in row for row in rows.values()), rows
    assert "entities" in rows["spacy-ner"] and "generated" in rows["bart-map"]
    assert f"model whisper-tiny: not present: no {partial}/whisper/tiny-random.en.pt" in proc.stderr
    assert f"error: verify: not present in {partial}: whisper-tiny" in proc.stderr
    expected = f"hint: run `modelbake preload --manifest {manifest} --profile test --dest {partial}` to fetch them"
    assert expected in proc.stderr
