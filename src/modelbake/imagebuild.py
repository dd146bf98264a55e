"""`python build.py`: manifest + lock -> models image (one layer per model) -> app image FROM it, with a report.

One straight path: read every input once (image.inputs.gather), plan once (image.plan.make_plan, pure), one
`docker buildx bake` (bake.run_bake), the report (report.build_report). The models image (`Dockerfile.models`,
target `models`) and the app image on it (`Dockerfile`, whose `models` stage is that target) are one BuildKit
graph, so any builder builds, caches and pushes both and nothing is loaded in between. Mirrors, the CA bundle,
the HF token and the lock enter as BuildKit secrets only: never a layer, the history, the config or a cache key.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .cache.budget import budget_warning, footprint
from .cache.spec import CacheBackend
from .errors import exit_code_of, write_error
from .image.bake import bake_argv, bake_definition, run_bake
from .image.inputs import STEP_SUMMARY_ENV, gather
from .image.options import BuildOptions, build_parser, options_from
from .image.plan import MODELS_BUILT, MODELS_REUSED, BuildPlan, make_plan, materialize
from .image.report import Report, build_report, format_markdown, format_summary


def run(options: BuildOptions, root: Path, environ: Mapping[str, str] | None = None) -> int:
    """Gather, plan, bake, report; raises the project's typed errors (main turns them into a line)."""
    environ = os.environ if environ is None else environ
    with tempfile.TemporaryDirectory(prefix="modelbake-build-") as work:
        if options.dry_run:
            plan = make_plan(gather(options, root, environ, Path(work)), options)
            _tell(options, plan)
            print(shlex.join(map(str, bake_argv(plan.targets, Path("BAKE.json"), Path("METADATA.json")))))
            print(json.dumps(bake_definition(plan.targets), indent=2, sort_keys=True))
            return 0
        from .image.engine import docker_client

        inputs = gather(options, root, environ, Path(work), connect=docker_client)
        plan = make_plan(inputs, options)
        _tell(options, plan)
        materialize(plan)
        started, cache_before = time.perf_counter(), _local_cache_bytes(plan.caches)
        results = run_bake(plan.targets, trace=options.rawjson) if plan.targets else {}
        assert inputs.client is not None  # gathered with an engine
        report = build_report(
            plan,
            results,
            inputs.client,
            total_seconds=time.perf_counter() - started,
            local_cache_growth=_local_cache_bytes(plan.caches) - cache_before,
        )
    _finish(options, plan, report, environ)
    return 0


def _tell(options: BuildOptions, plan: BuildPlan) -> None:
    """The plan's warnings (always), then its notes and what the bake builds (unless --quiet)."""
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    lines = list(plan.notes)
    if plan.models_from == MODELS_REUSED:
        lines.append(f"models image {plan.models_tag} is up to date with the lock: not rebuilt (--refresh-models does)")
    if plan.models_from == MODELS_BUILT:
        lines.append(f"building models image {plan.models_tag} ({len(plan.specs)} models)")
    if plan.app_tag is not None:
        on = f" on {plan.models_tag}" if plan.models_from != MODELS_BUILT else ""
        lines.append(f"building app image {plan.app_tag}{on}")
    if not options.quiet:
        for line in lines:
            print(f"build.py: {line}", file=sys.stderr, flush=True)


def _finish(options: BuildOptions, plan: BuildPlan, report: Report, environ: Mapping[str, str]) -> None:
    """The cache budget, the warnings the build added, `--json`, the step summary and the table."""
    if any(b.kind == "gha" for b in plan.caches) and not options.cache_read_only:
        found = footprint(report, options.models_cache_mode)
        report.gha_cache_bytes = {"models": found.models, "app": found.app, "total": found.total}
        if budget := budget_warning(found, options.cache_budget * 1e9):
            report.warnings.append(budget)
    for warning in report.warnings[len(plan.warnings) :]:  # the plan's were said before the bake
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if options.json:
        report.write_json(options.json)
    if summary := environ.get(STEP_SUMMARY_ENV):
        try:
            with open(summary, "a", encoding="utf-8") as stream:
                stream.write(format_markdown(report))
        except OSError as exc:
            raise write_error(exc, Path(summary)) from exc
    if not options.quiet:
        print(format_summary(report))


def _local_cache_bytes(caches: Sequence[CacheBackend]) -> int:
    """The bytes in the `local:` cache directories: BuildKit reports no sizes for a local export."""
    total = 0
    for backend in caches:
        if backend.kind == "local" and Path(backend.value).is_dir():
            total += sum(f.stat().st_size for f in Path(backend.value).rglob("*") if f.is_file())
    return total


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Entry point of build.py; the one place errors become a line and an exit code."""
    return exit_code_of(lambda: run(options_from(build_parser().parse_args(argv)), root or Path.cwd()))


__all__ = ["main", "run"]
