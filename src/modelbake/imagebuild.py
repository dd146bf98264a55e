"""`python build.py`: manifest + lock -> models image (one layer per model) -> app image, with a report.

Two `docker buildx build` runs: the models image (`Dockerfile.models`, target `models`, tagged with the
profile and lock hash) and the app image on it (`--build-arg MODELS_IMAGE=<that tag>`), exactly what a person
runs with plain Docker. Mirrors, the CA bundle and the HF token enter as BuildKit secrets only, so they never
reach a layer, the history, the config or a cache key.

This module is the steps, each doing its own I/O: plan (`buildplan`, pure), write the plan's files, check the
engine, probe the caches, build, inspect, report. The options are `buildoptions`'.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .buildoptions import BuildOptions, build_parser, options_from
from .buildplan import Plan, make_plan, materialize
from .buildx import BuildResult, build_argv, print_argv, run_build
from .cachebudget import budget_warning, footprint
from .cacheprobe import usable_backends
from .cachespec import CacheBackend
from .errors import exit_code_of
from .report import (
    Report,
    StageSummary,
    cache_traffic,
    find_model_layers,
    format_markdown,
    format_summary,
    image_info,
    stage_summaries,
)


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
            for spec in (plan.models, plan.app):
                if spec is not None:
                    print_argv([str(a) for a in build_argv(spec, Path("METADATA.json"))])
            return 0
        materialize(plan)
        client = _check_engine(options, plan)
        report = Report(warnings=list(plan.warnings))
        plan = _probe_caches(options, root, plan, environ, report.warnings)
        _build(options, plan, client, report)
        _inspect(client, plan, report)
        _finish(options, plan, report, first_new_warning=len(plan.warnings), environ=environ)
    return 0


def _check_engine(options: BuildOptions, plan: Plan):
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


def _build(options: BuildOptions, plan: Plan, client, report: Report) -> None:
    """The models build (unless the image is up to date with the lock), then the app build."""
    started = time.perf_counter()
    results: list[tuple[str, BuildResult]] = []
    _say(options, f"building models image {plan.models_tag} ({len(plan.manifest.select(plan.profile))} models)")
    local_growth: dict[str, int] = {}
    if plan.models_reusable and _is_current(client, plan.models_tag, options.source_date_epoch):
        _say(options, f"models image {plan.models_tag} is up to date with the lock: not rebuilt (--refresh-models does)")
        report.durations["models build"] = 0.0
    else:
        for note in plan.notes:
            print(f"build.py: {note}", file=sys.stderr, flush=True)
        local_before = _local_cache_bytes(plan.caches)
        result = run_build(plan.models)
        local_growth["models"] = _local_cache_bytes(plan.caches) - local_before
        results.append(("models", result))
        report.durations["models build"] = round(result.seconds, 1)
    if plan.app is not None:
        _say(options, f"building app image {plan.app_tag}")
        local_before = _local_cache_bytes(plan.caches)
        result = run_build(plan.app)
        local_growth["app"] = _local_cache_bytes(plan.caches) - local_before
        results.append(("app", result))
        report.durations["app build"] = round(result.seconds, 1)
    report.durations["total"] = round(time.perf_counter() - started, 1)
    for label, result in results:
        report.stages += stage_summaries(label, result)
        traffic = cache_traffic(label, result)
        for entry in traffic:
            # BuildKit reports no sizes for a local cache export: the directory's growth is the bytes written.
            if entry.direction == "export" and not entry.bytes and "client directory" in entry.step:
                entry.bytes = local_growth.get(label, 0)
        report.caches += traffic


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


def _is_current(client, tag: str, epoch: int) -> bool:
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


def _inspect(client, plan: Plan, report: Report) -> None:
    """Image sizes and each model's layer, from the engine's image store.

    Pushed images are there too with the `docker` driver and the containerd image store; with another builder
    a pushed image may exist only in the registry, and the report then has no image part.
    """
    from docker.errors import ImageNotFound

    specs = plan.manifest.select(plan.profile)
    files_bytes = {s.id: plan.lock.models[s.id].total_bytes for s in specs if plan.lock and s.id in plan.lock.models}
    try:
        models_image = client.images.get(plan.models_tag)
        final = client.images.get(plan.app_tag) if plan.app is not None else models_image
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


def _say(options: BuildOptions, text: str) -> None:
    if not options.quiet:
        print(f"build.py: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Entry point of build.py; the one place errors become a line and an exit code."""
    namespace = build_parser().parse_args(argv)  # argparse's own errors: usage and exit 2
    root = root or Path.cwd()
    return exit_code_of(lambda: run(options_from(namespace), root))


__all__ = ["StageSummary", "build_parser", "main", "make_plan", "run"]
