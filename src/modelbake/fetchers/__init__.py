"""One fetcher per family. Each offers `inventory` (resolve a spec to a lock entry, for `modelbake lock`)
and `fetch` (publish verified files into a layout; skip with zero network when already present)."""

from __future__ import annotations

from types import ModuleType

from ..manifest import ModelSpec
from .base import FetchContext, FetchResult


def fetcher_for(spec: ModelSpec) -> ModuleType:
    from . import huggingface, spacy, whisper

    return {"whisper": whisper, "spacy": spacy, "huggingface": huggingface}[spec.family]


__all__ = ["FetchContext", "FetchResult", "fetcher_for"]
