"""The fetch side of file layers (layers.py): a model without its big files, and one big file on its own.

- `without_big_files`: a model step fetches every file but those over the threshold, and writes the hub
  cache's snapshot links for them anyway (`snapshots/<commit>/<path>` -> `../../blobs/<sha256>`), dangling in
  that step, and the refs: the big files' own layers put the blobs under them in the image. A model whose
  files are all big fetches nothing in its own step, and its layer is the links and refs alone.
- `one_file`: a big file's own step knows only the file (model, repo, path, sha256, size: its cache key); the
  lock, mounted as a secret, says which revision to fetch it from. The file is fetched as a one-file entry of
  its model through the usual fetcher, so it is checked against its sha256 like every other file;
  `place_blob` then puts it at `blobs/<sha256>`, where the links point (huggingface_hub names a blob by the
  Hub's ETag, which is the git blob id for a file the Hub keeps outside LFS, e.g. a big `tokenizer.json`).

In the fetch path (FETCH_SOURCES): the standard library and modelbake's fetch modules only.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .atomic import atomic_symlink
from .errors import LockError
from .fetchers.huggingface import write_refs
from .lockfile import FileRef, LockedFile, LockedModel, read_lock
from .manifest import HuggingFaceSpec
from .paths import Layout

LOCK_HINT = (
    "pass the models.lock this Dockerfile was generated from as a build secret: --secret id=lock,src=models.lock"
)


def without_big_files(entry: LockedModel, file_layers_over: int) -> tuple[LockedModel, list[LockedFile]]:
    """The entry less its files over `file_layers_over`, and those files (for Hugging Face entries only)."""
    if entry.family != "huggingface":
        return entry, []
    big = [f for f in entry.files if f.size > file_layers_over]
    small = tuple(f for f in entry.files if f.size <= file_layers_over)
    return replace(entry, files=small), big


def _hf_spec(entry: LockedModel) -> HuggingFaceSpec:
    spec = entry.to_spec()
    if not isinstance(spec, HuggingFaceSpec):
        raise TypeError(f"{entry.id}: a {entry.family} entry has no hub cache")
    return spec


def link_big_files(layout: Layout, entry: LockedModel, files: list[LockedFile]) -> None:
    """Snapshot links to the blobs of files fetched by their own steps (relative, as huggingface_hub writes),
    and the refs, which the fetcher writes only when it fetched something (a model of big files alone)."""
    spec = _hf_spec(entry)
    for f in files:
        link = layout.hf_snapshot_dir(spec, entry.revision) / f.path
        blob = layout.hf_blob_file(spec, f.sha256)
        link.parent.mkdir(parents=True, exist_ok=True)
        atomic_symlink(os.path.relpath(blob, link.parent), link)
    write_refs(layout, spec, entry.revision)


def one_file(ref: FileRef, lock_path: Path) -> LockedModel:
    """A one-file entry of `ref`'s model at the locked revision; LockError when the lock does not hold it."""
    where = f"model {ref.model_id}: {ref.path} (sha256 {ref.sha256[:12]})"
    if not lock_path.is_file():
        raise LockError(f"{where}: no lock at {lock_path} to find its revision: {LOCK_HINT}")
    lock = read_lock(lock_path)
    entry = lock.get(ref.model_id) if lock is not None else None
    match = [f for f in (entry.files if entry else ()) if f.path == ref.path and f.sha256 == ref.sha256]
    if entry is None or entry.family != "huggingface" or not match:
        raise LockError(
            f"{where}: not in the lock at {lock_path}: {LOCK_HINT}, or regenerate the Dockerfile from this lock "
            "(`make dockerfile`)"
        )
    return replace(entry, files=(match[0],))


def place_blob(layout: Layout, entry: LockedModel) -> Path:
    """Put the one file of `entry` (fetched) at `blobs/<sha256>` and point its snapshot link there; its path."""
    spec = _hf_spec(entry)
    (f,) = entry.files
    blob = layout.hf_blob_file(spec, f.sha256)
    link = layout.hf_snapshot_dir(spec, entry.revision) / f.path
    if blob.is_file() and link.resolve() == blob.resolve():
        return blob
    real = link.resolve(strict=True)
    os.replace(real, blob)
    atomic_symlink(os.path.relpath(blob, link.parent), link)
    return blob
