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
from ..errors import FetchError
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
    manifest: Path | None = None  # the manifest the models come from; None for a lone lock entry (a Docker step)

    def manifest_field(self, model_id: str, name: str) -> str:
        """A model's manifest field as errors name it: `models.toml: models.<id>.<name>`."""
        where = f"{self.manifest}: " if self.manifest is not None else "the manifest's "
        return f"{where}models.{model_id}.{name}"

    def download(self, model_id: str, url: str, dest: Path, sha256: str, size: int | None) -> None:
        """One file pinned by the manifest's `sha256` (a Whisper checkpoint, a spaCy wheel) to `dest`, checked
        against it and the lock's size before it appears there, its bytes reported to `progress`."""
        download_verified(
            self.client,
            url,
            dest,
            model_id=model_id,
            expected_sha256=sha256,
            expected_size=size,
            on_bytes=lambda n: self.progress.advance(model_id, n),
            manifest_field=self.manifest_field(model_id, "sha256"),
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


@contextmanager
def explained_404(hint: str) -> Iterator[None]:
    """A FetchError for an HTTP 404 gets `hint` (unless it has one): where the URL is made of manifest fields, a
    404 most likely means one of them is wrong, which the bare status does not say."""
    try:
        yield
    except FetchError as exc:
        if exc.status == 404 and exc.hint is None:
            exc.hint = hint
        raise
