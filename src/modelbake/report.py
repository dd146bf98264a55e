"""The build summary: stages built or cached, each model's layers, image size, durations; as text and JSON.

A layer of the models image is found by the history entry that created it (`COPY <its layer root>/ /`), never
by position: BuildKit caches COPY by content, so positions shift while digests stay put. The app image copies
each of those layers byte for byte (dockerfile.app_copy_line), so there it is found by the same diff id; one
that is missing there says the app's copy differs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .buildx import BuildResult, Step
from .layers import Layer
from .manifest import ModelSpec
from .paths import image_paths


class ImageLike(Protocol):
    """What the report reads of an image: a Docker SDK `Image`, or `imagebuild.ConfigImage` (a registry's
    image config, for a `--models-image` only BuildKit pulled)."""

    attrs: dict[str, Any]

    @property
    def id(self) -> str | None: ...

    @property
    def tags(self) -> list[str]: ...

    def history(self) -> list[Any]: ...


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
    # The same layer in the models image: the app copies it byte for byte, so the two are equal.
    models_image_layer: str | None = None
    step: str = "?"  # fetched / cached / (not built here)
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
    # What the gha exports store (cachebudget.footprint), when this build exported to gha.
    gha_cache_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def model_bytes(self) -> int:
        return sum(m.bytes for m in self.models)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        return doc

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def image_info(image: ImageLike) -> ImageInfo:
    """From a docker SDK Image."""
    attrs = image.attrs
    return ImageInfo(
        tag=(image.tags or [""])[0],
        id=image.id or "",
        size=int(attrs.get("Size") or 0),
        layers=list(attrs.get("RootFS", {}).get("Layers", [])),
    )


def layer_history(image: ImageLike) -> list[tuple[str, str, int]]:
    """(diff id, created_by, size) for every layer, oldest first.

    History entries of metadata-only instructions (ENV, USER, ...) have no layer; BuildKit drops empty diffs
    and marks their entries empty, which the engine reports as size 0. So the entries with a size, oldest
    first, pair up with RootFS.Layers.
    """
    layers = image.attrs.get("RootFS", {}).get("Layers", [])
    entries = [e for e in reversed(image.history() or []) if int(e.get("Size") or 0) > 0]
    if len(entries) != len(layers):
        raise ValueError(f"{image.id}: {len(entries)} history entries with a layer for {len(layers)} layers")
    return [(diff, str(e.get("CreatedBy", "")), int(e["Size"])) for diff, e in zip(layers, entries, strict=True)]


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


def stage_summaries(label: str, result: BuildResult) -> list[StageSummary]:
    """Per stage: built when any of its steps ran, cached when all came from the cache."""
    by_stage: dict[str, list[Step]] = {}
    for step in result.steps:
        # `FROM` steps resolve an image (never "cached"): they say nothing about work done.
        if step.stage and step.completed and "] FROM " not in step.name:
            by_stage.setdefault(step.stage, []).append(step)
    return [
        StageSummary(
            build=label,
            stage=stage,
            status="cached" if all(s.cached for s in steps) else "built",
            seconds=round(sum(s.seconds for s in steps if not s.cached), 2),
        )
        for stage, steps in by_stage.items()
    ]


def cache_traffic(label: str, result: BuildResult) -> list[CacheTraffic]:
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
        found.append(CacheTraffic(label, step.name, direction, sum(step.transferred.values()), round(step.seconds, 2)))
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
