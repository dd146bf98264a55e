"""The Docker fetch step's entry point and what its stage copies: a model step's cache key is (base image, the
fetch code, that model's lock entry), and an edit to the CLI, its progress bars or any module outside the fetch
path is none of those (issue 12, item 2; the Docker side is in tests/test_docker_paths.py)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, mirror_args
from modelbake.image.dockerfile import FETCH_PACKAGES, FETCH_SOURCES
from modelbake.lockfile import entry_json, read_lock
from modelbake.manifest import load_manifest
from modelbake.paths import Layout


def fetch_stage_copy(root: Path) -> Path:
    """Only what the fetch stage copies (FETCH_SOURCES, FETCH_PACKAGES), laid out as in the stage; its `src`."""
    for rel in FETCH_SOURCES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)
    for package in FETCH_PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root / "src"


@pytest.mark.unit
def test_fetch_sources_are_closed_and_leave_out_the_cli(tmp_path):
    """The entry point and every fetcher import with the stage's files alone, and import neither the CLI nor its
    progress bars: an edit to those is no input of a model step. (rich itself may come in through httpx, which
    imports it when installed; the fetch stage does not install it, and no fetch module imports it.)"""
    src = fetch_stage_copy(tmp_path)
    assert not (src / "modelbake/cli.py").exists() and not (src / "modelbake/progress.py").exists()
    code = (
        "import modelbake, modelbake.fetch_entry\n"
        "from modelbake.fetchers import huggingface, spacy, whisper\n"
        "leaked = sorted(m for m in sys.modules if m in ('modelbake.cli', 'modelbake.progress'))\n"
        "assert not leaked, leaked\n"
        "print(modelbake.__file__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(src)!r})\n{code}"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(tmp_path))
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] == "rich"], path


@pytest.mark.ml_models  # tiny_locked generates real tiny models (torch): not a unit test's business
def test_the_fetch_entry_point_fetches_with_the_fetch_sources_alone(tmp_path, tiny_locked, mirror):
    """What each model step runs, in a process that sees only the fetch stage's files: every family fetched
    (spaCy's pip and huggingface_hub's lazy imports included), one plain line per model."""
    src = fetch_stage_copy(tmp_path / "stage")
    dest = tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": str(src)}
    for entry in read_lock(tiny_locked.with_suffix(".lock")).models.values():
        cmd = [sys.executable, "-m", "modelbake.fetch_entry", "--entry", "-", "--dest", str(dest), *mirror_args(mirror)]
        proc = subprocess.run(
            cmd, input=entry_json(entry), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        assert f"fetched {entry.id} (" in proc.stderr and "\x1b[" not in proc.stderr  # plain lines, no rich
        assert proc.stdout.startswith(f"preload: 1 models in {dest}: 1 fetched")
    layout = Layout.dest(dest)
    specs = load_manifest(tiny_locked).models.values()
    assert all(path.exists() for spec in specs for path in layout.model_paths(spec))


@pytest.mark.ml_models
def test_an_unlocked_model_and_bad_arguments(tmp_path, tiny_locked, mirror, capsys):
    """The step of a model without a lock entry reads its manifest entry; a bad argument is one error line."""
    from modelbake.fetch_entry import main

    dest = tmp_path / "models"
    args = ["--manifest", str(tiny_locked), "--model", "whisper-tiny", "--dest", str(dest), *mirror_args(mirror)]
    assert main(args) == 0
    assert (dest / "whisper").is_dir()
    assert main(["--entry", "-"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-2].startswith("error: python -m modelbake.fetch_entry: the following arguments are required: --dest")
