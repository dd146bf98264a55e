"""Fetch the models of a profile into a layout, in parallel, skipping what is already verified there."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from .constants import HF_TOKEN_ENV, HF_TOKEN_FILE_ENV, env
from .download import make_client
from .errors import ModelbakeError, UsageError, write_error
from .fetchers import FetchContext, FetchResult, fetcher_for
from .lineprogress import NullProgress, Progress
from .lockfile import Lock, LockedModel, read_entry, read_lock, require_current
from .manifest import Manifest, ModelSpec, load_manifest
from .paths import Layout
from .state import prepare

T = TypeVar("T")


@dataclass(frozen=True)
class FetchPlan:
    """What to fetch: specs with their lock entries (None when there is no lock); the manifest they come from
    (None for lone lock entries), and the lock path when the manifest has no lock (models fetched unpinned)."""

    items: list[tuple[ModelSpec, LockedModel | None]]
    manifest: Path | None = None
    missing_lock: Path | None = None


def plan_from_manifest(manifest: Manifest, lock: Lock | None, specs: list[ModelSpec]) -> FetchPlan:
    """Pair specs with lock entries; a lock that no longer matches the manifest is an error, not a guess."""
    require_current(manifest, lock, [s.id for s in specs])
    return FetchPlan(
        items=[(s, lock.get(s.id) if lock else None) for s in specs],
        manifest=manifest.path,
        missing_lock=manifest.lock_path if lock is None else None,
    )


def plan_from_entries(entries: list[LockedModel]) -> FetchPlan:
    return FetchPlan(items=[(e.to_spec(), e) for e in entries])


def plan_for(
    entry: str | None, manifest_path: Path, profile: str | None, model_ids: list[str] | None
) -> tuple[FetchPlan, dict[str, str]]:
    """What `preload` fetches, and the manifest's `[mirrors]`: the single lock entry in the file `entry` ('-' for
    stdin; what a Dockerfile.models step gives), else the manifest's models of `profile` or `model_ids`."""
    if entry:
        data = sys.stdin.buffer.read() if entry == "-" else None
        return plan_from_entries([read_entry(entry if entry != "-" else "<stdin>", data)]), {}
    manifest = load_manifest(manifest_path)
    lock = read_lock(manifest.lock_path)
    return plan_from_manifest(manifest, lock, manifest.select(profile, model_ids)), manifest.mirrors


def summary_line(results: list[FetchResult], where: str, seconds: float) -> str:
    """The line `preload` ends with: how many models were fetched, and how many were already there."""
    fetched = [r for r in results if r.status == "fetched"]
    moved = sum(r.bytes_fetched for r in results)
    return (
        f"preload: {len(results)} models in {where}: {len(fetched)} fetched ({moved / 1e6:.1f} MB), "
        f"{len(results) - len(fetched)} already present, {seconds:.1f}s"
    )


def read_hf_token(token_file: Path | None = None) -> str | None:
    """The HF token from --hf-token-file, MODELBAKE_HF_TOKEN_FILE, or HF_TOKEN (never logged).

    `--hf-token-file` must be readable; MODELBAKE_HF_TOKEN_FILE may be absent (Dockerfile.models points it at
    a secret that is only mounted when a token was given).
    """
    named = env(HF_TOKEN_FILE_ENV)
    path = token_file or (Path(named) if named else None)
    if path is None or (token_file is None and not path.is_file()):
        return env(HF_TOKEN_ENV)
    try:
        token = path.read_bytes().decode("utf-8").strip()
    except OSError as exc:
        raise UsageError(f"--hf-token-file {path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"--hf-token-file {path}: not a token (not UTF-8 text)") from exc
    return token or None


def preload(
    plan: FetchPlan,
    layout: Layout,
    mirrors: dict[str, str],
    *,
    jobs: int = 4,
    progress: Progress | None = None,
    hf_token: str | None = None,
) -> list[FetchResult]:
    """Fetch every planned model; models run in parallel. Raises the first error after all finish."""
    _quiet_hub()
    prepare(layout)
    progress = progress or NullProgress()
    with make_client() as client:
        ctx = FetchContext(
            layout=layout,
            mirrors=mirrors,
            client=client,
            progress=progress,
            hf_token=hf_token,
            jobs=jobs,
            manifest=plan.manifest,
        )

        def run(item: tuple[ModelSpec, LockedModel | None]) -> FetchResult | tuple[str, ModelbakeError]:
            spec, entry = item
            try:
                result = _writing(spec.id, lambda: fetcher_for(spec).fetch(entry, ctx))
            except ModelbakeError as exc:
                progress.finish(spec.id, "failed")
                return spec.id, exc
            if result.status == "fetched":
                progress.finish(spec.id, "fetched")
            return result

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(run, plan.items))
    errors = [o for o in outcomes if isinstance(o, tuple)]
    if errors:
        first = errors[0][1]
        if len(errors) > 1:
            first.message += f" (also failed: {', '.join(model_id for model_id, _ in errors[1:])})"
        raise first
    return [o for o in outcomes if isinstance(o, FetchResult)]


def _writing(model_id: str, work: Callable[[], T]) -> T:
    """Run a fetcher's work; an OSError out of it is the layout's (full, read-only, a file in the way).

    The fetchers turn every network failure into a FetchError, so what reaches here as an OSError came from
    writing under the layout: it becomes one line naming the model and the path (the fetchers have already
    removed their temp files and staging directories).
    """
    try:
        return work()
    except OSError as exc:
        raise write_error(exc, model_id=model_id) from exc


def _quiet_hub() -> None:
    """huggingface_hub's own progress bars and retry warnings ("Trying to resume download...") are replaced by
    modelbake's progress and its one-line errors."""
    from huggingface_hub.utils import disable_progress_bars, logging

    disable_progress_bars()
    logging.set_verbosity_error()
    # Its free-space warning precedes the ENOSPC that modelbake reports as one line naming the model.
    warnings.filterwarnings("ignore", message="Not enough free disk space", module="huggingface_hub")


def lock_models(
    manifest: Manifest,
    mirrors: dict[str, str],
    hf_token: str | None,
    state_dir: Path,
    specs: list[ModelSpec] | None = None,
) -> Lock:
    """Resolve `specs` (default: every model of the manifest) to lock entries (network)."""
    layout = Layout.state_only(state_dir)
    _quiet_hub()
    prepare(layout)
    with make_client() as client:
        ctx = FetchContext(layout=layout, mirrors=mirrors, client=client, hf_token=hf_token, manifest=manifest.path)
        entries = {
            spec.id: _writing(spec.id, partial(fetcher_for(spec).inventory, ctx))
            for spec in (manifest.models.values() if specs is None else specs)
        }
    return Lock(models=entries)
