"""The build report: stages built or cached, each model's layers, the images, cache traffic, durations; as text,
Markdown (`$GITHUB_STEP_SUMMARY`) and JSON (`--json`). `build_report` assembles it from the plan, the bake's
results and the engine's images (inspection.py).

The app image starts FROM the models image: its bottom layers are the models image's, in the same order, which
`models_at_bottom` says; a model whose layer is missing from the app says its stack is not the models image's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_text
from ..errors import write_error
from ..manifest import ModelSpec
from ..paths import image_paths
from .bake import BuildResult
from .inspection import ConfigImage, ImageLike, image_config, layer_history, local_image
from .layers import Layer
from .plan import MODELS_GIVEN, BuildPlan
from .rawjson import Step

if TYPE_CHECKING:
    from docker import DockerClient


@dataclass
class FileLayer:
    """A big file of a model, a layer of its own (layers.py)."""

    path: str
    sha256: str
    layer: str | None
    bytes: int


@dataclass
class ModelLayer:
    id: str
    family: str
    path: str
    layer: str | None  # the diff id of the model's layer (all of it but its big files) in the built image
    bytes: int  # the model's layers' sizes as the engine reports them, its file layers included
    files_bytes: int | None = None  # the model files' bytes according to the lock
    # The same layer in the models image (the app's bottom layers are the models image's).
    models_image_layer: str | None = None
    step: str = "?"  # fetched / cached / not built here (a models image reused or given)
    files: list[FileLayer] = field(default_factory=list)


@dataclass
class ImageInfo:
    tag: str
    id: str
    size: int
    layers: list[str] = field(default_factory=list)


@dataclass
class StageSummary:
    build: str
    stage: str
    status: str  # built / cached
    seconds: float


@dataclass
class CacheTraffic:
    """One cache import or export of one build, as BuildKit reported it."""

    build: str
    step: str  # BuildKit's name for it, e.g. "exporting to GitHub Actions Cache"
    direction: str  # import / export
    # Bytes moved: BuildKit 0.13 reports sizes for none of its cache steps, so this is the directory's growth
    # for a local cache and 0 (unknown) for gha and registry caches, whose servers see the real traffic.
    bytes: int
    seconds: float


@dataclass
class Report:
    image: ImageInfo | None = None
    models_image: ImageInfo | None = None
    models: list[ModelLayer] = field(default_factory=list)
    stages: list[StageSummary] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)
    caches: list[CacheTraffic] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What the gha exports store (cache.budget.footprint), when this build exported to gha.
    gha_cache_bytes: dict[str, int] = field(default_factory=dict)
    # Whether the app image's bottom layers are the models image's layers, in order (None: no app image here).
    models_at_bottom: bool | None = None

    @property
    def model_bytes(self) -> int:
        return sum(m.bytes for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        """Temp file + rename: a report is there whole or not at all."""
        try:
            atomic_write_text(path, json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise write_error(exc, path) from exc


def build_report(
    plan: BuildPlan,
    results: Mapping[str, BuildResult],
    client: DockerClient,
    *,
    total_seconds: float,
    local_cache_growth: int = 0,
) -> Report:
    """The report of one bake: what each target did (a stage both graphs hold is the models build's), the cache
    steps, and the images as the engine holds them."""
    report = Report(warnings=list(plan.warnings))
    if "models" not in results:
        report.durations["models build"] = 0.0
    for name, result in results.items():
        report.durations[f"{name} build"] = round(result.seconds, 1)
        summaries = stage_summaries(name, result)
        if name == "app":
            summaries = [s for s in summaries if s.stage not in plan.models_stages]
        report.stages += summaries
        for entry in cache_traffic(name, result):
            # BuildKit reports no sizes for a local cache export: the directory's growth is the bytes written.
            if entry.direction == "export" and not entry.bytes and "client directory" in entry.step:
                entry.bytes, local_cache_growth = local_cache_growth, 0
            report.caches.append(entry)
    report.durations["total"] = round(total_seconds, 1)
    _inspect(plan, client, report)
    return report


def _inspect(plan: BuildPlan, client: DockerClient, report: Report) -> None:
    """Image sizes and each model's layers, from the engine's image store.

    Pushed images are there too with the `docker` driver and the containerd image store; with another builder
    a pushed image may exist only in the registry, and the report then has no image part.
    """
    final = local_image(client, plan.app_tag or plan.models_tag)
    if final is None:
        report.warnings.append("the built images are not in the engine (pushed only): no layer report")
        return
    models_image: ImageLike | None = final if plan.app_tag is None else local_image(client, plan.models_tag)
    if models_image is None and plan.models_from == MODELS_GIVEN:
        models_image = ConfigImage(plan.models_tag, image_config(plan.models_tag), final)
    if models_image is None:
        report.warnings.append(f"the models image {plan.models_tag} is not in the engine: no model layer report")
        return
    report.models_image = image_info(models_image, plan.models_tag)
    report.image = image_info(final, plan.app_tag or plan.models_tag)
    files_bytes = {
        s.id: plan.lock.models[s.id].total_bytes for s in plan.specs if plan.lock and s.id in plan.lock.models
    }
    report.models = find_model_layers(models_image, list(plan.specs), list(plan.layers), files_bytes, final=final)
    if plan.app_tag is not None:
        bottom = report.models_image.layers
        report.models_at_bottom = report.image.layers[: len(bottom)] == bottom
        if not report.models_at_bottom:
            report.warnings.append(f"the app image's bottom layers are not the models image's ({plan.models_tag})")
    status = {s.stage: s.status for s in report.stages if s.build == "models"}
    for model in report.models:
        steps = [status.get(layer.stage) for layer in plan.layers if layer.model_id == model.id]
        model.step = "fetched" if "built" in steps else "cached" if steps and None not in steps else "not built here"


def image_info(image: ImageLike, tag: str) -> ImageInfo:
    attrs = image.attrs
    return ImageInfo(
        tag=tag,
        id=image.id or "",
        size=int(attrs.get("Size") or 0),
        layers=list(attrs.get("RootFS", {}).get("Layers") or []),
    )


def find_model_layers(
    models_image: ImageLike,
    specs: list[ModelSpec],
    layers: list[Layer],
    files_bytes: dict[str, int] | None = None,
    final: ImageLike | None = None,
) -> list[ModelLayer]:
    """Each model's layers in `final` (default: the models image), by the models image's own history entries.

    `layer`/`files[].layer` are None where `final` lacks the models image's layer (a copy that differs).
    """
    history = layer_history(models_image)
    in_final = set((final or models_image).attrs.get("RootFS", {}).get("Layers", []))
    by_root = {}
    for layer in layers:
        want = f"{layer.root}/"
        by_root[layer.root] = next(
            ((diff, size) for diff, created_by, size in history if "COPY" in created_by and want in created_by.split()),
            (None, 0),
        )
    found = []
    for spec in specs:
        mine = [layer for layer in layers if layer.model_id == spec.id]
        rest = next((layer for layer in mine if layer.file is None), None)
        diff, size = by_root.get(rest.root, (None, 0)) if rest else (None, 0)
        files = []
        for layer in mine:
            if layer.file is not None:
                file_diff, file_size = by_root[layer.root]
                files.append(
                    FileLayer(
                        layer.file.path, layer.file.sha256, file_diff if file_diff in in_final else None, file_size
                    )
                )
        found.append(
            ModelLayer(
                id=spec.id,
                family=spec.family,
                path=image_paths(spec)[0],
                layer=diff if diff in in_final else None,
                bytes=size + sum(f.bytes for f in files),
                files_bytes=(files_bytes or {}).get(spec.id),
                models_image_layer=diff,
                files=files,
            )
        )
    return found


def stage_summaries(build: str, result: BuildResult) -> list[StageSummary]:
    """Per stage: built when any of its steps ran, cached when all came from the cache."""
    by_stage: dict[str, list[Step]] = {}
    for step in result.steps:
        # `FROM` steps resolve an image (never "cached"): they say nothing about work done.
        if step.stage and step.completed and "] FROM " not in step.name:
            by_stage.setdefault(step.stage, []).append(step)
    return [
        StageSummary(
            build=build,
            stage=stage,
            status="cached" if all(s.cached for s in steps) else "built",
            seconds=round(sum(s.seconds for s in steps if not s.cached), 2),
        )
        for stage, steps in by_stage.items()
    ]


def cache_traffic(build: str, result: BuildResult) -> list[CacheTraffic]:
    """The cache import/export steps of a build (names are BuildKit's progress names)."""
    found = []
    for step in result.steps:
        name = step.name.lower()
        if name.startswith(("exporting cache", "exporting to github actions cache")):
            direction = "export"
        elif name.startswith("importing cache"):
            direction = "import"
        else:
            continue
        found.append(CacheTraffic(build, step.name, direction, sum(step.transferred.values()), round(step.seconds, 2)))
    return found


def format_markdown(report: Report) -> str:
    """The summary as Markdown tables, for `$GITHUB_STEP_SUMMARY` (shown on each workflow run's page)."""
    out = ["### modelbake build", ""]
    if report.stages:
        built = sum(1 for s in report.stages if s.status == "built")
        out += [f"{len(report.stages) - built} of {len(report.stages)} stages from the cache.", ""]
        out += ["| build | stage | status | seconds |", "|---|---|---|---:|"]
        out += [f"| {s.build} | `{s.stage}` | {s.status} | {s.seconds:.1f} |" for s in report.stages]
        out.append("")
    if report.models:
        out += ["| model | family | layer | bytes | step |", "|---|---|---|---:|---|"]
        out += [
            f"| {m.id} | {m.family} | `{(m.layer or 'missing')[:19]}`"
            + (f" + {len(m.files)} file layers" if m.files else "")
            + f" | {_mb(m.bytes)} | {m.step} |"
            for m in report.models
        ]
        out += ["", f"Model layers: {_mb(report.model_bytes)} (the cache footprint of the models image).", ""]
    if report.caches:
        out += ["| build | cache step | direction | bytes | seconds |", "|---|---|---|---:|---:|"]
        out += [f"| {c.build} | {c.step} | {c.direction} | {_mb(c.bytes)} | {c.seconds:.1f} |" for c in report.caches]
        out.append("")
    for image in (report.models_image, report.image):
        if image is not None:
            out.append(f"- image `{image.tag}`: {_mb(image.size)}, {len(image.layers)} layers")
    if report.durations:
        out.append("- durations: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.durations.items()))
    out += [f"- :warning: {w}" for w in report.warnings]
    return "\n".join(out) + "\n"


def format_summary(report: Report) -> str:
    lines = []
    if report.stages:
        lines.append("stages:")
        width = max(len(s.stage) for s in report.stages)
        for s in report.stages:
            took = f"{s.seconds:6.1f}s" if s.status == "built" else ""
            lines.append(f"  {s.build:<6} {s.stage:<{width}}  {s.status:<6} {took}")
    if report.models:
        lines.append("model layers:")
        width = max(len(m.id) for m in report.models)
        for m in report.models:
            layer = m.layer[:19] if m.layer else "MISSING"
            files = f" (+{len(m.files)} file layers)" if m.files else ""
            lines.append(f"  {m.id:<{width}}  {m.family:<11} {layer}  {_mb(m.bytes):>10}  {m.step}{files}")
    for name, image in (("models image", report.models_image), ("image", report.image)):
        if image is not None and not (name == "image" and report.models_image and image.id == report.models_image.id):
            lines.append(f"{name}: {image.tag} {image.id[:19]} {_mb(image.size)}, {len(image.layers)} layers")
    for c in report.caches:
        lines.append(f"cache: {c.build} {c.direction} ({c.step}) {_mb(c.bytes)} in {c.seconds:.1f}s")
    if report.durations:
        lines.append("durations: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.durations.items()))
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
