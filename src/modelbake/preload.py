"""Fetch the models of a profile into a layout, in parallel, skipping what is already verified there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .constants import HF_TOKEN_FILE_ENV, env
from .download import make_client
from .errors import FetchError, LockError
from .fetchers import FetchContext, FetchResult, fetcher_for
from .layout import Layout
from .lockfile import Lock, LockedModel, check_drift
from .manifest import Manifest, ModelSpec
from .progress import NullProgress, Progress


@dataclass(frozen=True)
class Plan:
    """What to fetch: specs with their lock entries (None when there is no lock)."""

    items: list[tuple[ModelSpec, LockedModel | None]]


def plan_from_manifest(manifest: Manifest, lock: Lock | None, specs: list[ModelSpec]) -> Plan:
    """Pair specs with lock entries; a lock that no longer matches the manifest is an error, not a guess."""
    if lock is not None:
        drift = check_drift(manifest, lock, [s.id for s in specs])
        if drift:
            raise LockError(f"{manifest.lock_path}: out of date: {drift[0]}", hint="run `modelbake lock`")
    return Plan(items=[(s, lock.get(s.id) if lock else None) for s in specs])


def plan_from_entries(entries: list[LockedModel]) -> Plan:
    return Plan(items=[(e.to_spec(), e) for e in entries])


def read_hf_token(token_file: Path | None = None) -> str | None:
    """The HF token from --hf-token-file, MODELBAKE_HF_TOKEN_FILE, or HF_TOKEN (never logged)."""
    path = token_file or (Path(env(HF_TOKEN_FILE_ENV)) if env(HF_TOKEN_FILE_ENV) else None)
    if path is not None and path.is_file():
        token = path.read_text().strip()
        return token or None
    return env("HF_TOKEN")


def preload(
    plan: Plan,
    layout: Layout,
    mirrors: dict[str, str],
    *,
    jobs: int = 4,
    progress: Progress | None = None,
    hf_token: str | None = None,
) -> list[FetchResult]:
    """Fetch every planned model; models run in parallel. Raises the first FetchError after all finish."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # our own progress display covers the Hub downloads
    progress = progress or NullProgress()
    with make_client() as client:
        ctx = FetchContext(
            layout=layout, mirrors=mirrors, client=client, progress=progress, hf_token=hf_token, jobs=jobs
        )

        def run(item: tuple[ModelSpec, LockedModel | None]) -> FetchResult | FetchError:
            spec, entry = item
            try:
                result = fetcher_for(spec).fetch(spec, entry, ctx)
            except FetchError as exc:
                progress.finish(spec.id, "failed")
                return exc
            if result.status == "fetched":
                progress.finish(spec.id, "fetched")
            return result

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(run, plan.items))
    errors = [o for o in outcomes if isinstance(o, FetchError)]
    if errors:
        if len(errors) > 1:
            others = ", ".join(e.model_id for e in errors[1:])
            errors[0].message += f" (also failed: {others})"
        raise errors[0]
    return [o for o in outcomes if isinstance(o, FetchResult)]


def lock_models(manifest: Manifest, mirrors: dict[str, str], hf_token: str | None, state_dir: Path) -> Lock:
    """Resolve every model of the manifest to a lock entry (network)."""
    layout = Layout(
        whisper_root=state_dir / "unused",
        hf_hub_cache=state_dir / "unused",
        spacy_target=None,
        state_dir=state_dir,
        is_dest=False,
    )
    with make_client() as client:
        ctx = FetchContext(layout=layout, mirrors=mirrors, client=client, hf_token=hf_token)
        entries = {spec.id: fetcher_for(spec).inventory(spec, ctx) for spec in manifest.models.values()}
    return Lock(models=entries)
