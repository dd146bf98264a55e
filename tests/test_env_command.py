"""`modelbake env --models DIR`: the variables that point the libraries at a `--dest` tree, offline, as the app image
points them at /models, so an app runs locally against the models its image will hold."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import mirror_args, run_cli
from modelbake.cli import main as modelbake

# Loads each tiny model the way an app does: by name or repo id, from what the environment says, nothing else.
APP = """
import os, sys, spacy, whisper
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
whisper.load_model(os.path.join(os.environ.get("MODELBAKE_WHISPER_ROOT", "."), sys.argv[1] + ".pt"))
spacy.load(sys.argv[2])
AutoTokenizer.from_pretrained(sys.argv[3]); AutoModelForSeq2SeqLM.from_pretrained(sys.argv[3])
print("loaded")
"""


def preloaded(manifest, server, dest):
    argv = ["preload", "--manifest", str(manifest), "--profile", "test", "--dest", str(dest), *mirror_args(server)]
    assert modelbake(argv) == 0
    return dest


@pytest.fixture(scope="module")
def tree(tiny_locked, mirror, tmp_path_factory):
    return preloaded(tiny_locked, mirror, tmp_path_factory.mktemp("env") / "models")


@pytest.mark.unit
@pytest.mark.loopback
def test_env_prints_the_trees_paths_as_shell_exports(byte_locked, byte_mirror, byte_tree, tmp_path):
    tree = preloaded(byte_locked, byte_mirror, tmp_path / "models")
    proc = run_cli("env", "--manifest", str(byte_locked), "--profile", "test", "--models", str(tree))
    assert proc.returncode == 0, proc.stderr
    shown = subprocess.run(
        ["sh", "-c", f"PYTHONPATH=/elsewhere; {proc.stdout}\nenv"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert env["HF_HUB_CACHE"] == str(tree / "huggingface/hub") and env["HF_HUB_OFFLINE"] == "1"
    assert env["MODELBAKE_WHISPER_ROOT"] == str(tree / "whisper")
    assert env["PYTHONPATH"] == f"{tree / 'spacy' / byte_tree.spacy_name}:/elsewhere"


@pytest.mark.unit
def test_env_without_a_tree_is_one_error_line(byte_locked, tmp_path):
    proc = run_cli("env", "--manifest", str(byte_locked), "--models", str(tmp_path / "nope"))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and errors == [f"error: --models {tmp_path / 'nope'}: not a directory"]


@pytest.mark.ml_models
def test_an_app_loads_every_model_from_the_tree_with_the_printed_environment(tiny_locked, tree, tiny_tree):
    """The control first: without the variables the same app finds neither the pipeline nor the hub cache (and
    any network attempt goes to a closed port); with them it loads all three families."""
    exports = run_cli("env", "--manifest", str(tiny_locked), "--profile", "test", "--models", str(tree)).stdout
    names = [tiny_tree.whisper_name, tiny_tree.spacy_name, tiny_tree.bart_repo]
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_ETAG_TIMEOUT": "1",
        "HF_HUB_DOWNLOAD_TIMEOUT": "1",
    }
    app = [sys.executable, "-c", APP, *names]
    without = subprocess.run(app, capture_output=True, text=True, env=env, timeout=600)
    assert without.returncode != 0 and "loaded" not in without.stdout
    script = f'{exports}\nexec "$@"'
    with_env = subprocess.run(["sh", "-c", script, "sh", *app], capture_output=True, text=True, env=env, timeout=600)
    assert with_env.returncode == 0 and with_env.stdout.strip() == "loaded", with_env.stderr[-2000:]
