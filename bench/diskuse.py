"""What the image store holds on disk: bytes of files under containerd's overlayfs snapshots, model files apart.

Why on disk: `docker images` sizes say what an image would take alone, not what the engine unpacked for it. The
image store keeps one snapshot per chain (a layer and every layer below it), in
`.../io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/fs`, where a layer's snapshot holds that layer's
files only. So the bytes added by a build or a pull are the files of the snapshot directories that were not
there before; the model bytes are those under `fs/models/` that belong to the benchmark's models (a model
root such as `models/whisper/tiny.en.pt`: other people's tests build tiny models on the same engine). A file
is counted once per inode (BuildKit may hard-link a file into several snapshots) and only if its inode is new.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

SNAPSHOTS = Path("/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots")


@dataclass(frozen=True)
class DiskState:
    """The snapshot directories and the benchmark's model files ((device, inode) -> size), at one moment."""

    snapshots: frozenset[str]
    models: Mapping[tuple[int, int], int]

    @property
    def model_bytes(self) -> int:
        return sum(self.models.values())

    def model_bytes_not_in(self, earlier: DiskState) -> int:
        """Bytes of the model files whose inodes `earlier` did not have."""
        return sum(size for inode, size in self.models.items() if inode not in earlier.models)


@dataclass(frozen=True)
class Added:
    """What appeared on disk between two states."""

    snapshots: int
    bytes: int  # every file of the new snapshots (apparent sizes, each inode once)
    model_bytes: int  # of the benchmark's model files, new inodes only


def is_model_path(rel: str, roots: Iterable[str]) -> bool:
    """`rel` (under a snapshot's fs/, e.g. `models/whisper/tiny.en.pt`) is one of `roots` or inside one."""
    return any(rel == root or rel.startswith(root + "/") for root in roots)


def _files(top: Path) -> Iterable[tuple[str, os.stat_result]]:
    """(path relative to `top`, lstat) of each regular file under `top`; what vanishes meanwhile is skipped."""
    for dirpath, _, names in os.walk(top, onerror=lambda exc: None):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if (st.st_mode & 0o170000) == 0o100000:
                yield os.path.relpath(path, top), st


def _snapshot_ids(root: Path) -> frozenset[str]:
    try:
        return frozenset(p.name for p in root.iterdir())
    except FileNotFoundError:
        return frozenset()


def model_files(snapshot_fs: Path, roots: tuple[str, ...]) -> dict[tuple[int, int], int]:
    """(device, inode) -> size of the benchmark's model files in one snapshot's fs/."""
    found: dict[tuple[int, int], int] = {}
    models = snapshot_fs / "models"
    if models.is_dir():
        for rel, st in _files(models):
            if is_model_path("models/" + rel, roots):
                found[(st.st_dev, st.st_ino)] = st.st_size
    return found


def disk_state(roots: tuple[str, ...], root: Path = SNAPSHOTS) -> DiskState:
    ids = _snapshot_ids(root)
    inodes: dict[tuple[int, int], int] = {}
    for sid in ids:
        inodes.update(model_files(root / sid / "fs", roots))
    return DiskState(ids, MappingProxyType(inodes))


def added_since(before: DiskState, roots: tuple[str, ...], root: Path = SNAPSHOTS) -> Added:
    """Files of the snapshot directories created since `before` (and model files with new inodes anywhere)."""
    new = _snapshot_ids(root) - before.snapshots
    total: dict[tuple[int, int], int] = {}
    models: dict[tuple[int, int], int] = {}
    for sid in new:
        fs = root / sid / "fs"
        for _, st in _files(fs):
            total[(st.st_dev, st.st_ino)] = st.st_size
        models.update(model_files(fs, roots))
    fresh = sum(size for inode, size in models.items() if inode not in before.models)
    return Added(len(new), sum(total.values()), fresh)


def wait_until(done: Callable[[], bool], timeout: float, interval: float = 2.0) -> bool:
    """Poll `done` until it holds or `timeout` seconds pass: containerd collects garbage on its own schedule
    after an image or a build record goes."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
