"""build.py runs of the models image and the app, timed from the outside, with BuildKit's step profile of each.

Why apart: bench.layers and bench.filelayers build through build.py exactly as a user runs it
(bench/buildtrace.py's `run_build_py`, whose `--rawjson` trace gives the steps); this keeps their per-variant
record. bench/cache_builds.py is the counterpart for models-only builds against a remote cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.buildtrace import Timed
from bench.buildtrace import run_build_py as run_traced


@dataclass
class Variant:
    """One image configuration whose app-code rebuild is timed."""

    name: str
    profile: str
    note: str = ""

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")


@dataclass
class BuildRun:
    variant: str
    kind: str  # first / rebuild
    wall: float
    ok: bool
    report: dict = field(default_factory=dict)
    models_steps: list[Timed] = field(default_factory=list)
    app_steps: list[Timed] = field(default_factory=list)
    error: str = ""

    def duration(self, key: str) -> float:
        """ "models build" / "app build": build.py's --json, this bake's own steps of that target."""
        return float(self.report.get("durations", {}).get(key, 0.0))


def run_build_py(repo: Path, args: list[str], trace: Path, variant: str, kind: str) -> BuildRun:
    """One build.py process, timed from the outside."""
    run = run_traced(repo, args, trace, f"{variant} {kind}")
    return BuildRun(
        variant,
        kind,
        run.wall,
        run.ok,
        run.report,
        run.target_steps("models"),
        run.target_steps("app"),
        run.error,
    )
