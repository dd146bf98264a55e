"""Offline verify with the real loaders on tiny real models, and the network guard it relies on."""

from __future__ import annotations

import shutil
import socket

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
def test_verify_of_a_missing_repo_fails_offline_without_touching_the_network(baked, tmp_path):
    """Offline flags set before the loaders import: a missing repo fails at once, with no connection tried."""
    manifest, dest = baked
    broken = tmp_path / "nohub"
    shutil.copytree(dest, broken, symlinks=True)
    shutil.rmtree(broken / "huggingface/hub/models--modelbake-tiny--bart")
    proc = run_cli("verify", "--manifest", str(manifest), "--model", "bart-map", "--models", str(broken))
    assert proc.returncode == 1
    assert "model bart-map:" in proc.stderr
    assert "tried the network" not in proc.stderr
