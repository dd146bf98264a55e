"""`python build.py`: manifest + lock -> models image (one layer per model) -> app image, with a report.

One `docker buildx bake` of two targets in one BuildKit graph: the models image (`Dockerfile.models`, target
`models`, tagged with the profile and lock hash) and the app image, whose `models` stage is that target
(`target:models`), so any builder builds, caches and pushes both and nothing is loaded in between. With
`--models-image REF` the app is built on a models image built elsewhere (`docker-image://REF`), with no model
step. Mirrors, the CA bundle, the HF token and the lock enter as BuildKit secrets only, so they never reach a
layer, the history, the config or a cache key.

This module is the steps, each doing its own I/O: plan (`buildplan`, pure), write the plan's files, check the
engine, probe the caches, build, inspect, report. The options are `buildoptions`'.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bake import bake_argv, bake_definition, run_bake
from .buildoptions import BuildOptions, build_parser, options_from
from .buildplan import Plan, bake_targets, make_plan, materialize
from .buildx import print_argv
from .cachebudget import budget_warning, footprint
from .cacheprobe import usable_backends
from .cachespec import CacheBackend
from .dockerfile import LOCK_HASH_LABEL
from .engine import EngineError
from .errors import UsageError, exit_code_of
from .report import (
    ImageLike,
    Report,
    StageSummary,
    cache_traffic,
    find_model_layers,
    format_markdown,
    format_summary,
    image_info,
    layer_history,
    stage_summaries,
)

if TYPE_CHECKING:
    from docker import DockerClient


def run(options: BuildOptions, root: Path, environ: Mapping[str, str] | None = None) -> int:
    """Plan, then the steps in order; raises the project's typed errors (main turns them into a line)."""
    environ = os.environ if environ is None else environ
    with tempfile.TemporaryDirectory(prefix="modelbake-build-") as tmp:
        plan = make_plan(options, root, Path(tmp), environ)
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        if options.dry_run:
            for note in plan.notes:
                print(f"build.py: {note}", file=sys.stderr, flush=True)
            targets = bake_targets(plan)
            print_argv([str(a) for a in bake_argv(targets, Path("BAKE.json"), Path("METADATA.json"))])
            print(json.dumps(bake_definition(targets), indent=2, sort_keys=True))
            return 0
        materialize(plan)
        client = _check_engine(options, plan)
        if plan.models_image:
            _check_models_image(plan)
        report = Report(warnings=list(plan.warnings))
        plan = _probe_caches(options, root, plan, environ, report.warnings)
        _build(options, plan, client, report)
        _inspect(client, plan, report)
        _finish(options, plan, report, first_new_warning=len(plan.warnings), environ=environ)
    return 0


def _check_engine(options: BuildOptions, plan: Plan) -> DockerClient:
    """The engine answers and has what this build needs; the Docker SDK client for the later steps."""
    from .engine import check_engine, docker_client

    client = docker_client()
    check_engine(
        client,
        need_containerd_store=bool(options.caches) and not options.builder,
        gha_version=plan.gha_version if any(b.kind == "gha" for b in plan.caches) else None,
        builder=options.builder,
    )
    return client


def _probe_caches(
    options: BuildOptions, root: Path, plan: Plan, environ: Mapping[str, str], warnings: list[str]
) -> Plan:
    """Ask each remote cache once (network); the plan again without the ones that do not answer."""
    if not plan.caches:
        return plan
    alive = usable_backends(list(plan.caches), options.cache_timeout, plan.models_scope, warnings.append, environ)
    if len(alive) == len(plan.caches):
        return plan
    return make_plan(options, root, plan.work, environ, alive)  # the same files: only the cache specs change


def _build(options: BuildOptions, plan: Plan, client: DockerClient, report: Report) -> None:
    """One bake: the models target (unless the image is up to date with the lock, or given) and the app on it."""
    started = time.perf_counter()
    present = plan.models_reusable and _is_current(client, plan.models_tag, options.source_date_epoch)
    if present:
        _say(
            options, f"models image {plan.models_tag} is up to date with the lock: not rebuilt (--refresh-models does)"
        )
        report.durations["models build"] = 0.0
    targets = bake_targets(plan, models_present=present)
    if "models" in targets:
        _say(options, f"building models image {plan.models_tag} ({len(plan.manifest.select(plan.profile))} models)")
        for note in plan.notes:
            print(f"build.py: {note}", file=sys.stderr, flush=True)
    if "app" in targets:
        _say(
            options,
            f"building app image {plan.app_tag}" + (f" on {plan.models_tag}" if "models" not in targets else ""),
        )
    if not targets:  # --models-only, and the models image is already what the lock says
        report.durations["total"] = round(time.perf_counter() - started, 1)
        return
    local_before = _local_cache_bytes(plan.caches)
    results = run_bake(targets)
    growth = _local_cache_bytes(plan.caches) - local_before
    for label, result in results.items():
        report.durations[f"{label} build"] = round(result.seconds, 1)
    report.durations["total"] = round(time.perf_counter() - started, 1)
    models_stages = _models_stages(plan)
    for label, result in results.items():
        summaries = stage_summaries(label, result)
        if label == "app":  # the app's graph holds the models target's stages too: they are reported there
            summaries = [s for s in summaries if s.stage not in models_stages]
        report.stages += summaries
        for entry in cache_traffic(label, result):
            # BuildKit reports no sizes for a local cache export: the directory's growth is the bytes written.
            if entry.direction == "export" and not entry.bytes and "client directory" in entry.step:
                entry.bytes, growth = growth, 0
            report.caches.append(entry)


def _models_stages(plan: Plan) -> set[str]:
    return {layer.stage for layer in plan.layers} | {"fetch", "models"}


def _check_models_image(plan: Plan) -> None:
    """--models-image: its layers must be this lock's (the label build.py gave it), or the app's copies, made
    from the lock's layer plan, would cut the wrong trees out of it."""
    found = _image_config(plan.models_tag).get("config", {}).get("Labels") or {}
    label = found.get(LOCK_HASH_LABEL, "")
    if label != plan.lock_hash:
        raise UsageError(
            f"--models-image {plan.models_tag}: built from lock {label or '(unknown)'}, not this lock "
            f"({plan.lock_hash})",
            hint="build the models image from this models.lock (build.py --models-only --push), or check out the "
            "lock it was built from",
        )


def _image_config(ref: str) -> dict[str, Any]:
    """An image's config (labels, history, diff ids) from its registry or the engine, without pulling layers."""
    argv = ["docker", "buildx", "imagetools", "inspect", ref, "--format", "{{json .Image}}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"`{' '.join(argv[:5])}` failed: {exc}") from exc
    if proc.returncode != 0:
        raise UsageError(f"--models-image {ref}: cannot read it: {proc.stderr.strip().splitlines()[-1:] or ['?']}")
    doc = json.loads(proc.stdout)
    if "config" not in doc and isinstance(doc, dict) and doc:  # a multi-platform index: one entry per platform
        doc = next(iter(doc.values()))
    return dict(doc)


def _finish(
    options: BuildOptions, plan: Plan, report: Report, first_new_warning: int, environ: Mapping[str, str]
) -> None:
    """The cache budget, the warnings not yet printed, `--json`, the step summary and the table."""
    if any(b.kind == "gha" for b in plan.caches) and not options.cache_read_only:
        found = footprint(report, options.models_cache_mode)
        report.gha_cache_bytes = {"models": found.models, "app": found.app, "total": found.total}
        budget = budget_warning(found, options.cache_budget * 1e9)
        if budget:
            report.warnings.append(budget)
    for warning in report.warnings[first_new_warning:]:  # the plan's were printed before the build
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if options.json:
        report.write_json(options.json)
    _write_step_summary(report, environ)
    if not options.quiet:
        print(format_summary(report))


def _is_current(client: DockerClient, tag: str, epoch: int) -> bool:
    """The image exists and was built with this SOURCE_DATE_EPOCH (its created time)."""
    from datetime import datetime

    from docker.errors import ImageNotFound

    try:
        created = client.images.get(tag).attrs.get("Created") or ""
    except ImageNotFound:
        return False
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() == epoch
    except ValueError:
        return False


def _local_cache_bytes(caches: Sequence[CacheBackend]) -> int:
    total = 0
    for backend in caches:
        if backend.kind == "local" and Path(backend.value).is_dir():
            total += sum(f.stat().st_size for f in Path(backend.value).rglob("*") if f.is_file())
    return total


def _write_step_summary(report: Report, environ: Mapping[str, str]) -> None:
    """Append the Markdown summary to `$GITHUB_STEP_SUMMARY` when GitHub Actions provides one."""
    target = environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as stream:
            stream.write(format_markdown(report))


def _inspect(client: DockerClient, plan: Plan, report: Report) -> None:
    """Image sizes and each model's layer, from the engine's image store.

    Pushed images are there too with the `docker` driver and the containerd image store; with another builder
    a pushed image may exist only in the registry, and the report then has no image part.
    """
    from docker.errors import ImageNotFound

    specs = plan.manifest.select(plan.profile)
    files_bytes = {s.id: plan.lock.models[s.id].total_bytes for s in specs if plan.lock and s.id in plan.lock.models}
    try:
        final = client.images.get(plan.app_tag if plan.app is not None else plan.models_tag)
        models_image = final if plan.app is None else _models_image(client, plan, final)
    except ImageNotFound:
        report.warnings.append("the built images are not in the engine (pushed only): no layer report")
        return
    report.models_image = image_info(models_image)
    report.image = image_info(final)
    report.image.tag = plan.app_tag if plan.app is not None else plan.models_tag
    report.models_image.tag = plan.models_tag
    layers = list(plan.layers)
    report.models = find_model_layers(models_image, specs, layers, files_bytes, final=final)
    missing = [m.id for m in report.models if m.layer is None or any(f.layer is None for f in m.files)]
    if missing and plan.app is not None:
        report.warnings.append(
            f"the app image's copy of {', '.join(missing)} is not the models image's layer byte for byte"
        )
    status = {s.stage: s.status for s in report.stages if s.build == "models"}
    for model in report.models:
        steps = [status.get(layer.stage) for layer in layers if layer.model_id == model.id]
        model.step = "fetched" if "built" in steps else "cached"


def _models_image(client: DockerClient, plan: Plan, final: ImageLike) -> ImageLike:
    """The models image as the engine has it, or (a `--models-image` only BuildKit pulled) as its registry
    describes it: its config's history and diff ids, the sizes from the app's copies of its layers."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(plan.models_tag)
    except ImageNotFound:
        if not plan.models_image:
            raise
    return ConfigImage(plan.models_tag, _image_config(plan.models_tag), final)


class ConfigImage:
    """What report.py reads of a Docker SDK Image (`attrs`, `history()`, `id`, `tags`), from an image config."""

    def __init__(self, ref: str, config: dict[str, Any], sizes_from: ImageLike) -> None:
        self.tags = [ref]
        self.id = ref.rpartition("@")[2] if "@" in ref else ref
        diffs = list(config.get("rootfs", {}).get("diff_ids") or [])
        known = dict(zip(sizes_from.attrs["RootFS"]["Layers"], (h[2] for h in layer_history(sizes_from)), strict=False))
        self.attrs: dict[str, Any] = {"RootFS": {"Layers": diffs}, "Size": sum(known.get(d, 0) for d in diffs)}
        entries = [h for h in config.get("history") or [] if not h.get("empty_layer")]
        self._history = [
            {"CreatedBy": h.get("created_by", ""), "Size": known.get(diff, 1)}
            for h, diff in zip(entries, diffs, strict=False)
        ]

    def history(self) -> list[Any]:
        return list(reversed(self._history))  # newest first, as the engine reports it


def _say(options: BuildOptions, text: str) -> None:
    if not options.quiet:
        print(f"build.py: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Entry point of build.py; the one place errors become a line and an exit code."""
    namespace = build_parser().parse_args(argv)  # argparse's own errors: usage and exit 2
    root = root or Path.cwd()
    return exit_code_of(lambda: run(options_from(namespace), root))


__all__ = ["StageSummary", "build_parser", "main", "make_plan", "run"]
