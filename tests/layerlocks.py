"""Locks of made-up models for the layer plan's tests (no bytes): files of any size, named by their sha256, and
the tree each planned layer holds, as the fetch steps lay it out."""

from __future__ import annotations

import hashlib

from modelbake.image.layers import Layer
from modelbake.lockfile import Lock, LockedFile, LockedModel, spec_fields
from modelbake.manifest import Manifest

MiB = 1024 * 1024
SPLIT = 64 * MiB  # the default --file-layers-over
COMMIT = "c" * 40

Files = dict[str, list[tuple[str, int, str]]]  # model id -> (path, size, sha256)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def lock_of(manifest: Manifest, files: Files, commits: dict[str, str] | None = None) -> Lock:
    """A lock of every model of `manifest`, with `files[id]` as its files (Hugging Face repos at `COMMIT`)."""
    models = {}
    for spec in manifest.models.values():
        commit = (commits or {}).get(spec.id, COMMIT)
        revision = {"whisper": "a" * 64, "spacy": "0.1.0", "huggingface": commit}[spec.family]
        locked = tuple(LockedFile(path=p, size=n, sha256=h) for p, n, h in files[spec.id])
        models[spec.id] = LockedModel(spec.id, spec.family, spec_fields(spec), revision, locked)
    return Lock(models=models)


def layer_tree(layer: Layer, lock: Lock) -> set[str]:
    """The files (and links) a layer of the models image holds, from the lock as the fetch steps lay them out."""
    if layer.file is not None:
        return set(layer.owns)
    entry = lock.models[layer.model_id]
    (own,) = layer.owns
    if entry.family != "huggingface":
        return {own if own.endswith(".pt") else f"{own}/{layer.model_id}/__init__.py"}
    out = {f"{own}/refs/main"}
    for f in entry.files:
        out.add(f"{own}/snapshots/{entry.revision}/{f.path}")
        blob = f"{own}/blobs/{f.sha256}"
        if blob not in layer.holes:
            out.add(blob)
    return out
