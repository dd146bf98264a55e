"""What every fetcher gets and returns."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from filelock import FileLock

from ..lineprogress import NullProgress, Progress
from ..paths import Layout


@dataclass
class FetchContext:
    layout: Layout
    mirrors: dict[str, str]
    client: httpx.Client
    progress: Progress = field(default_factory=NullProgress)
    hf_token: str | None = None
    jobs: int = 4


@dataclass(frozen=True)
class FetchResult:
    model_id: str
    status: str  # "fetched" or "present"
    bytes_fetched: int
    files: tuple[Path, ...]


@contextmanager
def model_lock(layout: Layout, model_id: str):
    """Serialise work on one model in one layout, so two preloads into one DEST at once are safe."""
    path = layout.lock_path(model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


@contextmanager
def staging_dir(parent: Path, prefix: str):
    """A temp dir on the same filesystem as the target (so publishing is a rename), always removed."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

