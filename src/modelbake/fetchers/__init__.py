"""One fetcher per family, each a module satisfying `base.Fetcher` for its spec type: `inventory` (resolve a spec
to a lock entry, for `modelbake lock`) and `fetch` (publish verified files into a layout; skip with zero network
when already present). `fetcher_for` pairs a spec with its family's fetcher."""

from __future__ import annotations

from ..manifest import HuggingFaceSpec, ModelSpec, SpacySpec, WhisperSpec
from .base import FetchContext, Fetcher, FetchResult, SpecFetcher


def fetcher_for(
    spec: ModelSpec,
) -> SpecFetcher[WhisperSpec] | SpecFetcher[SpacySpec] | SpecFetcher[HuggingFaceSpec]:
    """`spec` with its family's fetcher: `fetcher_for(spec).fetch(entry, ctx)`, `fetcher_for(spec).inventory(ctx)`."""
    from . import huggingface, spacy, whisper

    if isinstance(spec, WhisperSpec):
        return SpecFetcher[WhisperSpec](whisper, spec)
    if isinstance(spec, SpacySpec):
        return SpecFetcher[SpacySpec](spacy, spec)
    return SpecFetcher[HuggingFaceSpec](huggingface, spec)


__all__ = ["FetchContext", "FetchResult", "Fetcher", "SpecFetcher", "fetcher_for"]
