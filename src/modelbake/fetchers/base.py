"""What every fetcher is, gets and returns: the `Fetcher` protocol, its context and its result."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import httpx
from filelock import FileLock

from ..download import download_verified
from ..lineprogress import NullProgress, Progress
from ..lockfile import LockedModel
from ..paths import Layout

SpecT = TypeVar("SpecT")
SpecT_contra = TypeVar("SpecT_contra", contravariant=True)


@dataclass
class FetchContext:
    layout: Layout
    mirrors: dict[str, str]
    client: httpx.Client
    progress: Progress = field(default_factory=NullProgress)
    hf_token: str | None = None
    jobs: int = 4

    def download(self, model_id: str, url: str, dest: Path, sha256: str, size: int | None) -> None:
        """One pinned file (a Whisper checkpoint, a spaCy wheel) to `dest`, checked against its sha256 and the
        lock's size before it appears there, its bytes reported to `progress`."""
        download_verified(
            self.client,
            url,
            dest,
            model_id=model_id,
            expected_sha256=sha256,
            expected_size=size,
            on_bytes=lambda n: self.progress.advance(model_id, n),
        )


@dataclass(frozen=True)
class FetchResult:
    model_id: str
    status: str  # "fetched" or "present"
    bytes_fetched: int
    files: tuple[Path, ...]


class Fetcher(Protocol[SpecT_contra]):
    """What each family's module (`whisper`, `spacy`, `huggingface`) is, for its own spec type.

    Shaped after its two callers in preload.py: `modelbake lock` (`lock_models`) asks `inventory` for a lock
    entry (network), `preload` and the Docker fetch step (`fetch_entry`, through `preload`) ask `fetch` to
    publish the verified files into `ctx.layout`, skipping with zero network what is already there; `entry` is
    the model's lock entry, None when there is no lock.
    """

    def inventory(self, spec: SpecT_contra, ctx: FetchContext) -> LockedModel: ...

    def fetch(self, spec: SpecT_contra, entry: LockedModel | None, ctx: FetchContext) -> FetchResult: ...


@dataclass(frozen=True)
class SpecFetcher(Generic[SpecT]):
    """A spec with its family's fetcher, as the dispatcher (`fetcher_for`) pairs them: callers need not know
    the family, and the type checker sees each fetcher get only its own spec type."""

    fetcher: Fetcher[SpecT]
    spec: SpecT

    def inventory(self, ctx: FetchContext) -> LockedModel:
        return self.fetcher.inventory(self.spec, ctx)

    def fetch(self, entry: LockedModel | None, ctx: FetchContext) -> FetchResult:
        return self.fetcher.fetch(self.spec, entry, ctx)


@contextmanager
def model_lock(layout: Layout, model_id: str) -> Iterator[None]:
    """Serialise work on one model in one layout, so two preloads into one DEST at once are safe."""
    path = layout.lock_path(model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


@contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A temp dir on the same filesystem as the target (so publishing is a rename), always removed."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
