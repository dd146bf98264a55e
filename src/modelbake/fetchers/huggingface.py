"""Hugging Face Hub repos, downloaded with huggingface_hub into a staging hub cache, verified, then merged.

huggingface_hub writes straight into its cache and does not check sha256s, so files are first downloaded
into a staging cache beside the target (same filesystem), every file is checked against the lock (or the
Hub's LFS sha256 / git blob id), and only then are blobs, snapshot links and refs renamed into place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from ..atomic import atomic_symlink, atomic_write_text
from ..digests import git_blob_sha1, sha256_file
from ..errors import FetchError, IntegrityError
from ..lockfile import LockedFile, LockedModel, spec_fields
from ..manifest import HuggingFaceSpec
from ..paths import Layout
from ..state import marker_valid, write_marker
from .base import FetchContext, FetchResult, model_lock, staging_dir
from .hub_errors import with_retries

if TYPE_CHECKING:
    from huggingface_hub import HfApi

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
T = TypeVar("T")


@dataclass(frozen=True)
class Expected:
    path: str
    size: int
    sha256: str | None  # LFS files (and every file once locked)
    git_sha1: str | None  # non-LFS files before a lock exists


def resolve_url(spec: HuggingFaceSpec, ctx: FetchContext, commit: str, path: str) -> str:
    return f"{ctx.mirrors['huggingface']}/{spec.repo}/resolve/{commit}/{path}"


def _api(ctx: FetchContext) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=ctx.mirrors["huggingface"], token=ctx.hf_token or False)


def api_url(spec: HuggingFaceSpec, ctx: FetchContext, what: str, revision: str) -> str:
    """The Hub API URL huggingface_hub asks for `model_info` (`revision`) or `list_repo_tree` (`tree`)."""
    query = "?recursive=true" if what == "tree" else ""
    return f"{ctx.mirrors['huggingface']}/api/models/{spec.repo}/{what}/{quote(revision, safe='')}{query}"


def _with_retries(
    spec: HuggingFaceSpec,
    ctx: FetchContext,
    func: Callable[[], T],
    path: str = "",
    commit: str = "",
    url: str = "",
    transport_retried: bool = False,
) -> T:
    """`hub_errors.with_retries` for this model: a failure names `path` (or the repo) and `url` (or the file's)."""
    if not url:
        base = f"{ctx.mirrors['huggingface']}/{spec.repo}"
        url = resolve_url(spec, ctx, commit or spec.revision, path) if path else base
    return with_retries(
        func,
        model_id=spec.id,
        path=path or spec.repo,
        url=url,
        repo=spec.repo,
        revision=spec.revision,
        write_dir=ctx.layout.hf_hub_cache,
        transport_retried=transport_retried,
    )


def list_expected(spec: HuggingFaceSpec, ctx: FetchContext) -> tuple[str, list[Expected]]:
    """Resolve the revision to a commit and list the files the manifest selects, with the Hub's digests."""
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = _api(ctx)
    commit = spec.revision
    if not COMMIT_RE.match(commit):
        info = _with_retries(
            spec,
            ctx,
            lambda: api.model_info(spec.repo, revision=spec.revision),
            url=api_url(spec, ctx, "revision", spec.revision),
        )
        if info.sha is None:  # a Hub always names the commit; a server that does not is no Hub
            url = api_url(spec, ctx, "revision", spec.revision)
            raise FetchError(spec.id, spec.repo, url, f"the Hub API named no commit for revision {spec.revision!r}")
        commit = info.sha
    entries = _with_retries(
        spec,
        ctx,
        lambda: list(api.list_repo_tree(spec.repo, revision=commit, recursive=True)),
        commit=commit,
        url=api_url(spec, ctx, "tree", commit),
    )
    files = [e for e in entries if isinstance(e, RepoFile)]
    selected = filter_repo_objects(
        files,
        allow_patterns=list(spec.include) or None,
        ignore_patterns=list(spec.exclude) or None,
        key=lambda f: f.path,
    )
    expected = [
        Expected(
            path=f.path,
            size=f.size,
            sha256=f.lfs.sha256 if f.lfs else None,
            git_sha1=None if f.lfs else f.blob_id,
        )
        for f in selected
    ]
    if not expected:
        raise FetchError(
            spec.id, spec.repo, f"{ctx.mirrors['huggingface']}/{spec.repo}", "include/exclude select no files"
        )
    return commit, sorted(expected, key=lambda e: e.path)


def inventory(spec: HuggingFaceSpec, ctx: FetchContext) -> LockedModel:
    """Lock entry: the commit and every selected file's sha256 (small non-LFS files are downloaded to hash)."""
    commit, expected = list_expected(spec, ctx)
    with staging_dir(ctx.layout.state_dir / "tmp", f"lock-{spec.id}.") as staging:
        paths = _download_all(spec, ctx, commit, expected, staging, only=[e for e in expected if e.sha256 is None])
        files = []
        for e in expected:
            digest = e.sha256 or sha256_file(paths[e.path])
            files.append(LockedFile(path=e.path, size=e.size, sha256=digest))
    return LockedModel(id=spec.id, family="huggingface", spec=spec_fields(spec), revision=commit, files=tuple(files))


def _download_all(
    spec: HuggingFaceSpec,
    ctx: FetchContext,
    commit: str,
    expected: list[Expected],
    staging: Path,
    only: list[Expected] | None = None,
) -> dict[str, Path]:
    """Download into a staging hub cache with huggingface_hub and check each file; returns snapshot paths."""
    from huggingface_hub import hf_hub_download

    todo = expected if only is None else only

    def one(e: Expected) -> tuple[str, Path]:
        url = resolve_url(spec, ctx, commit, e.path)

        def call() -> str:
            return hf_hub_download(
                spec.repo,
                e.path,
                revision=commit,
                cache_dir=staging,
                endpoint=ctx.mirrors["huggingface"],
                token=ctx.hf_token or False,
            )

        path = Path(_with_retries(spec, ctx, call, e.path, commit, transport_retried=True))
        _check(spec, e, path, url)
        ctx.progress.advance(spec.id, e.size)
        return e.path, path

    if not todo:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(ctx.jobs, len(todo)))) as pool:
        return dict(pool.map(one, todo))


def _check(spec: HuggingFaceSpec, e: Expected, path: Path, url: str) -> None:
    size = path.stat().st_size
    if size != e.size:
        raise FetchError(spec.id, e.path, url, f"size mismatch: expected {e.size} bytes, got {size}; discarded")
    if e.sha256 is not None:
        actual = sha256_file(path)
        if actual != e.sha256:
            raise IntegrityError(spec.id, e.path, url, e.sha256, actual)
    elif e.git_sha1 is not None:
        actual = git_blob_sha1(path)
        if actual != e.git_sha1:
            raise IntegrityError(spec.id, e.path, url, f"git blob {e.git_sha1}", f"git blob {actual}")


def _read_ref(spec: HuggingFaceSpec, ctx: FetchContext, ref: str) -> str | None:
    try:
        value = ctx.layout.hf_ref_file(spec, ref).read_text().strip()
    except OSError:
        return None
    return value if COMMIT_RE.match(value) else None


def fetch(spec: HuggingFaceSpec, entry: LockedModel | None, ctx: FetchContext) -> FetchResult:
    with model_lock(ctx.layout, spec.id):
        if entry is not None:
            commit = entry.revision
            expected = [Expected(f.path, f.size, f.sha256, None) for f in entry.files]
        else:
            # No lock: trust a commit already verified into this cache (zero network), else ask the Hub.
            known = spec.revision if COMMIT_RE.match(spec.revision) else _read_ref(spec, ctx, spec.revision)
            if known and marker_valid(ctx.layout, spec.id, known):
                return FetchResult(spec.id, "present", 0, ())
            commit, expected = list_expected(spec, ctx)
        snap = ctx.layout.hf_snapshot_dir(spec, commit)
        targets = [snap / e.path for e in expected]
        if marker_valid(ctx.layout, spec.id, commit, targets):
            _write_refs(spec, ctx, commit)
            return FetchResult(spec.id, "present", 0, tuple(targets))
        if all(t.is_file() for t in targets) and _all_match(spec, expected, targets):
            write_marker(ctx.layout, spec.id, commit, targets)
            _write_refs(spec, ctx, commit)
            return FetchResult(spec.id, "present", 0, tuple(targets))
        ctx.progress.start(spec.id, sum(e.size for e in expected))
        ctx.layout.hf_hub_cache.mkdir(parents=True, exist_ok=True)
        with staging_dir(ctx.layout.hf_hub_cache, ".modelbake-staging-") as staging:
            _download_all(spec, ctx, commit, expected, staging)
            staged = replace(ctx.layout, hf_hub_cache=staging)  # huggingface_hub made it a hub cache
            _merge_repo(staged.hf_repo_dir(spec), ctx.layout.hf_repo_dir(spec), commit)
        _write_refs(spec, ctx, commit)
        write_marker(ctx.layout, spec.id, commit, targets)
        return FetchResult(spec.id, "fetched", sum(e.size for e in expected), tuple(targets))


def _all_match(spec: HuggingFaceSpec, expected: list[Expected], targets: list[Path]) -> bool:
    """A cache that already holds the files (e.g. a laptop's): trust it after a local digest check."""
    for e, t in zip(expected, targets, strict=True):
        try:
            _check(spec, e, t, "")
        except FetchError:
            return False
    return True


def _merge_repo(staged: Path, final: Path, commit: str) -> None:
    """Rename verified blobs, then snapshot links, into the real cache. Blobs are content-addressed, so a
    blob already there is the same bytes; links are replaced atomically."""
    (final / "blobs").mkdir(parents=True, exist_ok=True)
    for blob in (staged / "blobs").iterdir() if (staged / "blobs").is_dir() else []:
        if blob.name.endswith(".incomplete"):
            continue
        os.chmod(blob, 0o644)
        target = final / "blobs" / blob.name
        if not target.exists():
            os.replace(blob, target)
    staged_snap = staged / "snapshots" / commit
    for item in sorted(staged_snap.rglob("*")):
        if item.is_dir() and not item.is_symlink():
            continue
        dest = final / "snapshots" / commit / item.relative_to(staged_snap)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if item.is_symlink():
            atomic_symlink(os.readlink(item), dest)
        else:  # filesystems without symlinks: huggingface_hub copies the file instead
            os.chmod(item, 0o644)
            os.replace(item, dest)
    # huggingface_hub 2.x keeps a listing cache readable by its writer only; an image's non-root user needs it.
    for tree in (staged / "trees").glob("*") if (staged / "trees").is_dir() else []:
        (final / "trees").mkdir(parents=True, exist_ok=True)
        os.chmod(tree, 0o644)
        os.replace(tree, final / "trees" / tree.name)
    for d in [final, *[p for p in final.rglob("*") if p.is_dir() and not p.is_symlink()]]:
        os.chmod(d, 0o755)


def _write_refs(spec: HuggingFaceSpec, ctx: FetchContext, commit: str) -> None:
    write_refs(ctx.layout, spec, commit)


def write_refs(layout: Layout, spec: HuggingFaceSpec, commit: str) -> None:
    """Refs let `from_pretrained(repo)` resolve offline: the manifest's branch, and in a --dest tree `main`
    (there, `main` means what was baked, so the app can load by repo id alone)."""
    names = [] if COMMIT_RE.match(spec.revision) else [spec.revision]
    if layout.is_dest and "main" not in names:
        names.append("main")
    for name in names:
        path = layout.hf_ref_file(spec, name)
        try:
            if path.read_text().strip() == commit:
                continue
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, commit)
