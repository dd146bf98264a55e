"""Loaders see the same tree with file layers (issue 13, item 1), without an engine: every step of Dockerfile.models
run as its RUN line runs it (`python -m modelbake.fetch_entry` into a tree of its own), each layer's paths laid
over one another as the image stacks them, then `modelbake verify --models` on the result (the real loaders)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, mirror_args, run_cli
from modelbake.image.layers import plan_layers
from modelbake.lockfile import entry_json, read_lock
from modelbake.manifest import load_manifest

pytestmark = pytest.mark.ml_models


def run_step(layer, lock, manifest_path: Path, dest: Path, split: int, mirror) -> str:
    """What the layer's RUN line runs (dockerfile._model_stage / _file_stage), into `dest`."""
    cmd = [sys.executable, "-m", "modelbake.fetch_entry", "--dest", str(dest), *mirror_args(mirror)]
    if layer.file is not None:
        ref = {k: getattr(layer.file, a) for k, a in (("model", "model_id"), ("repo", "repo"), ("path", "path"))}
        ref |= {"sha256": layer.file.sha256, "size": layer.file.size}
        cmd += ["--file", "-", "--lock", str(manifest_path.with_suffix(".lock"))]
        given = json.dumps(ref, sort_keys=True)
    else:
        cmd += ["--entry", "-", "--file-layers-over-bytes", str(split)]
        given = entry_json(lock.get(layer.model_id))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, input=given, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def stack(layers, steps: Path, image: Path) -> None:
    """Each layer's own paths (what its step moves under /out/<stage>) laid over the image, bottom to top."""
    for layer in layers:
        for own in layer.owns:
            source = steps / layer.stage / own.removeprefix("models/")
            target = image / own.removeprefix("models/")
            assert source.exists() or source.is_symlink(), (layer.name, own)
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target, follow_symlinks=False)


def snapshot_files(tree: Path) -> dict[str, bytes]:
    """Every snapshot entry of every repo, resolved: what a loader reads."""
    hub = tree / "huggingface" / "hub"
    return {
        p.relative_to(hub).as_posix(): p.read_bytes() for p in sorted(hub.glob("*/snapshots/*/**/*")) if p.is_file()
    }


@pytest.mark.parametrize("split", [10 * 1024, 100], ids=["weights-and-tokenizer-split", "every-file-split"])
def test_the_stacked_layers_are_a_hub_cache_the_loaders_read(split, tiny_locked, mirror, tmp_path):
    manifest = load_manifest(tiny_locked)
    lock = read_lock(manifest.lock_path)
    layers = plan_layers(manifest.select("test"), lock, split)
    big = [layer for layer in layers if layer.file is not None]
    assert {layer.file.path for layer in big if layer.file} >= {"model.safetensors", "tokenizer.json"}
    if split == 100:  # every file of both repos is big: their own steps fetch nothing, and write links and refs
        assert all(f.size > split for m in ("bart-map", "led-reduce") for f in lock.get(m).files)
    steps, image = tmp_path / "steps", tmp_path / "image"
    for layer in layers:
        run_step(layer, lock, tiny_locked, steps / layer.stage, split, mirror)
    stack(layers, steps, image)

    plain = tmp_path / "plain"
    proc = run_cli(
        "preload", "--manifest", str(tiny_locked), "--profile", "test", "--dest", str(plain), *mirror_args(mirror)
    )
    assert proc.returncode == 0, proc.stderr
    assert snapshot_files(image) == snapshot_files(plain)  # the same files under the same snapshot paths
    for repo in ("models--modelbake-tiny--bart", "models--modelbake-tiny--led"):
        ref = image / "huggingface/hub" / repo / "refs/main"
        assert ref.read_text() == (plain / "huggingface/hub" / repo / "refs/main").read_text()
        links = list((image / "huggingface/hub" / repo / "snapshots").rglob("*.safetensors"))
        assert links and all(p.is_symlink() and os.readlink(p).startswith("../../blobs/") for p in links)

    proc = run_cli("verify", "--manifest", str(tiny_locked), "--profile", "test", "--models", str(image))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify: 4 models load and run offline" in proc.stdout
