"""build.py runs against one remote cache, and what a cache-restore run records of them.

Why apart: bench.cache_restore times one kind of build (build.py through bench/buildtrace.py, with build.py's
own `--cache-compression`) and reads the same things of each: the model stages' status, the layers' diff ids,
the blobs BuildKit pulled.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.buildtrace import Timed
from bench.buildtrace import run_build_py as run_traced
from bench.enginecache import BASE_IMAGE, CA_BUNDLE

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("local", "registry", "gha")  # the first gets the cold build
DEFAULT_ROUND = "default"  # a pseudo-compression: build.py's --cache-to specs as shipped, no attributes


@dataclass
class Build:
    """One build.py run."""

    label: str
    wall: float
    ok: bool
    report: dict = field(default_factory=dict)
    steps: list[Timed] = field(default_factory=list)
    error: str = ""

    def step_seconds(self, prefix: str) -> float:
        return sum(s.seconds for s in self.steps if s.parent is None and s.name.lower().startswith(prefix))

    def stage_status(self) -> dict[str, str]:
        return {s["stage"]: s["status"] for s in self.report.get("stages", []) if s["build"] == "models"}

    def layers(self) -> dict[str, str]:
        return {m["id"]: m["layer"] for m in self.report.get("models", [])}


@dataclass
class Restore:
    compression: str
    backend: str
    build: Build
    downloaded: int  # bytes, as the gha server counted them or as BuildKit reported its pulls
    all_cached: bool
    same_layers: bool


@dataclass
class Round:
    compression: str
    cold: Build
    uploaded: dict[str, int]  # backend -> bytes written to it
    stored: dict[str, list[dict]]  # backend -> layer descriptors (mediaType, size) of the cache
    exports: dict[str, Build]  # backend -> the build that exported to it (the first one is the cold build)
    restores: list[Restore] = field(default_factory=list)


def run_build_py(
    repo: Path, args: list[str], trace: Path, label: str, env: dict[str, str], compression: str = ""
) -> Build:
    """One build.py process (rawjson kept), with `--cache-compression COMPRESSION` unless it is empty."""
    extra = ["--cache-compression", compression] if compression else []
    run = run_traced(repo, [*args, *extra], trace, label, env)
    return Build(label, run.wall, run.ok, run.report, run.target_steps("models"), run.error)


def pulled_bytes(steps: list[Timed]) -> int:
    """Bytes of the blobs BuildKit reported pulling (statuses named by a blob digest)."""
    return sum(s.bytes for s in steps if s.parent is not None and s.name.startswith("sha256:"))


def warm_fetch_stage(dockerfile: Path, context: Path, base: str) -> float:
    """Build the `fetch` stage (modelbake's venv) once on the fresh base: every round's cold build then measures
    the model steps and the exports, not pip. Its record predates each round, so wipes keep it."""
    cmd = ["docker", "buildx", "build", "--file", str(dockerfile), "--target", "fetch"]
    cmd += ["--build-arg", f"BASE_IMAGE={base}", "--network", "host", "--allow", "network.host"]
    cmd += ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    cmd += ["--provenance", "false", "--output", "type=cacheonly", "--progress", "quiet", str(context)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"fetch stage: {proc.stderr.strip()[-800:]}")
    return time.perf_counter() - started


def warm_epoch_fetch_stage(context: Path, dockerfile: Path, tag: str, epoch: int, base: str = BASE_IMAGE) -> float:
    """The models image's `fetch` stage with a run's SOURCE_DATE_EPOCH, built before the clock: BuildKit hands
    that build argument to every RUN, so `warm_fetch_stage`'s record (without it) would not match."""
    from modelbake.image.bake import BuildSpec
    from testkit.buildx import run_build

    spec = BuildSpec(
        context=context,
        dockerfile=dockerfile,
        target="fetch",
        tags=[tag],
        build_args={"BASE_IMAGE": base, "SOURCE_DATE_EPOCH": str(epoch)},
        secrets={"ca": CA_BUNDLE} if CA_BUNDLE.is_file() else {},
        network="host",
    )
    return run_build(spec).seconds
