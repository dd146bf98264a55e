"""What the GitHub Actions cache exports of one build store, against the repository's cache budget.

GitHub includes 10 GB of Actions cache per repository (owners can buy more); past the limit it evicts the
least recently used entries, so a build whose exports do not fit evicts its own model layers and the next
run fetches every model again. The estimate counts what BuildKit really uploads:

- the models scope: every model layer, and with `--models-cache-mode max` every fetch step's layer as well,
  which holds the same files again: about twice the model bytes;
- the app scope (`mode=min`): every layer of the app image, the base and the deps layer included. Its model
  layers are the models image's blobs (the same digests, stored once in the cache), so they count once.

Sizes are the engine's uncompressed ones, and the gha exporter uploads each layer's own blob (uncompressed
by default), so this is what lands in the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..image.report import Report


@dataclass(frozen=True)
class CacheFootprint:
    """Bytes one build's gha exports store, per scope (`app` is 0 for `--models-only`)."""

    model_layers: int
    models_mode: str  # max / min
    app: int

    @property
    def models(self) -> int:
        return self.model_layers * (2 if self.models_mode == "max" else 1)

    @property
    def total(self) -> int:
        return self.models + self.app


def footprint(report: Report, models_mode: str) -> CacheFootprint:
    """The estimate for this build, from its report (model layers and the app image's size)."""
    app = 0
    if report.image is not None and (report.models_image is None or report.image.id != report.models_image.id):
        app = max(0, report.image.size - report.model_bytes)  # its model layers are the models image's blobs
    return CacheFootprint(model_layers=report.model_bytes, models_mode=models_mode, app=app)


def budget_warning(found: CacheFootprint, budget_bytes: float) -> str | None:
    """One line when the exports outgrow the budget, saying what they hold and which knob to turn."""
    if found.total <= budget_bytes:
        return None
    parts = [
        f"models scope {_gb(found.models)}"
        + (f" (2 x {_gb(found.model_layers)} with --models-cache-mode max)" if found.models_mode == "max" else "")
    ]
    if found.app:
        parts.append(f"app scope up to {_gb(found.app)} per branch")
    knobs = []
    if found.models_mode == "max":
        knobs.append(f"--models-cache-mode min (saves {_gb(found.model_layers)})")
    knobs += ["a registry cache for the biggest scope (--cache registry:REF)", "--cache-budget GB if you pay for more"]
    return (
        f"the gha cache exports store about {_gb(found.total)} ({'; '.join(parts)}), over the cache budget of "
        f"{_gb(int(budget_bytes))} (GitHub includes 10 GB per repository and evicts the least recently used "
        f"entries past the limit): use {', or '.join(knobs)}"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"
