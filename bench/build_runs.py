"""build.py runs of the models image and the app, timed from the outside, with BuildKit's step profile of each.

Why apart: bench.layers, bench.scenarios and bench.filelayers all build through build.py exactly as a user
runs it (bench/buildtrace.py only keeps BuildKit's progress stream). bench/cache_builds.py is the counterpart
for models-only builds against a remote cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.buildtrace import Timed, load_profile, load_seconds

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Variant:
    """One image configuration whose app-code rebuild is timed."""

    name: str
    profile: str
    note: str = ""
    tolerant: bool = False  # build.py run with bench.buildtrace's --allow-empty-profile

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
    seconds: dict[str, float] = field(default_factory=dict)  # unrounded buildx run times: models / app

    def duration(self, key: str) -> float:
        """ "models build" / "app build": buildx's run time (unrounded when traced), else build.py's --json."""
        label = key.split()[0]
        if label in self.seconds:
            return self.seconds[label]
        return float(self.report.get("durations", {}).get(key, 0.0))


def run_build_py(repo: Path, args: list[str], trace: Path, variant: str, kind: str, tolerant: bool = False) -> BuildRun:
    """One build.py process (through bench.buildtrace), timed from the outside."""
    trace.mkdir(parents=True, exist_ok=True)
    json_file = trace / "report.json"
    cmd = [sys.executable, "-m", "bench.buildtrace", "--engine-timeout", "900", "--trace", str(trace)]
    cmd += ["--allow-empty-profile"] if tolerant else []
    cmd += ["--root", str(repo), "--", *args, "--json", str(json_file), "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO)
    wall = time.perf_counter() - started
    (trace / "stderr.txt").write_text(proc.stderr)
    ok = proc.returncode == 0 and json_file.is_file()
    run = BuildRun(variant, kind, round(wall, 2), ok, error="" if ok else _last_error(proc.stderr))
    if ok:
        run.report = json.loads(json_file.read_text())
    run.models_steps = load_profile(trace, "models")
    run.app_steps = load_profile(trace, "app")
    for label in ("models", "app"):
        seconds = load_seconds(trace, label)
        if seconds is not None:
            run.seconds[label] = seconds
    status = f"{wall:.1f} s" if ok else f"FAILED: {run.error}"
    print(f"bench.layers: {variant} {kind}: {status}", file=sys.stderr, flush=True)
    return run


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:") or "Error" in line]
    return (errors or lines or ["no output"])[-1][:300]
