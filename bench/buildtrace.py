"""build.py as a user runs it, in a process of its own, and BuildKit's step profile from its `--rawjson` trace.

Why: the benchmarks measure the product as shipped. Everything comes through build.py's own options: `--json`
(stages built or cached, each model's layers, images, per-target durations of this bake), `--rawjson FILE`
(buildx's progress stream, one JSON document per line, which :func:`profile` turns into step and sub-step
durations: the model steps, "exporting layers", "unpacking to ..."), `--cache-compression` for the cache
rounds. Nothing of modelbake is patched; the stream is read with modelbake.image.rawjson's own parser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class Timed:
    """A vertex or a sub-step of one (e.g. "exporting layers" under "[models] exporting to image")."""

    name: str
    seconds: float
    cached: bool = False
    parent: str | None = None
    bytes: int = 0
    started: datetime | None = None  # the vertex's own span (vertices only), for spans across parallel steps
    completed: datetime | None = None
    target: str | None = None  # the bake target it belongs to (vertices only), None for shared internal steps

    @property
    def stage(self) -> str | None:
        """The Dockerfile stage of a vertex (`[app deps 2/2] RUN ...` -> `deps`), None for other steps."""
        from modelbake.image.rawjson import Step

        return Step(digest="", name=self.name).stage if self.parent is None else None


def profile(text: str, target: str | None = None) -> list[Timed]:
    """Vertices (steps) and their statuses (sub-steps such as "exporting layers", "unpacking to ...") with the
    durations BuildKit reports, in first-seen order; with `target`, a bake's steps of that target only (and the
    steps that name none)."""
    from modelbake.image.rawjson import Step, parse_time, rawjson_documents

    vertices: dict[tuple[str, str], dict] = {}
    by_digest: dict[str, list[dict]] = {}
    statuses: dict[tuple[str, str], dict] = {}
    for doc in rawjson_documents(text)[0]:
        for v in doc.get("vertexes") or []:
            digest, name = v["digest"], v.get("name", "")
            if name or digest not in by_digest:
                key = (digest, name)
                if key not in vertices:
                    vertices[key] = {"name": name, "target": Step(digest="", name=name).target}
                    by_digest.setdefault(digest, []).append(vertices[key])
                named = [vertices[key]]
            else:  # an update without a name is about every target's copy of the vertex
                named = by_digest[digest]
            for seen in named:
                for item in ("started", "completed", "cached"):
                    if v.get(item):
                        seen[item] = v[item]
        for s in doc.get("statuses") or []:
            seen = statuses.setdefault((s.get("vertex", ""), s.get("id", "")), {})
            for item in ("started", "completed", "total", "current"):
                if s.get(item):
                    seen[item] = s[item]
    out: list[Timed] = []
    for (digest, _), v in vertices.items():
        if target is not None and v["target"] is not None and v["target"] != target:
            continue
        start, end = parse_time(v.get("started")), parse_time(v.get("completed"))
        seconds = (end - start).total_seconds() if start and end else 0.0
        out.append(
            Timed(
                v["name"],
                round(max(seconds, 0.0), 2),
                bool(v.get("cached")),
                started=start,
                completed=end,
                target=v["target"],
            )
        )
        for (vertex, sid), s in statuses.items():
            if vertex != digest:
                continue
            start, end = parse_time(s.get("started")), parse_time(s.get("completed"))
            seconds = (end - start).total_seconds() if start and end else 0.0
            size = int(s.get("total") or s.get("current") or 0)
            out.append(Timed(sid, round(max(seconds, 0.0), 2), parent=v["name"], bytes=size))
    return out


@dataclass
class BuildPyRun:
    """One `python build.py ...` process: its wall time, its `--json` report and its rawjson steps."""

    label: str
    wall: float
    ok: bool
    report: dict = field(default_factory=dict)
    steps: list[Timed] = field(default_factory=list)  # every target's
    error: str = ""
    trace: Path | None = None

    def target_steps(self, target: str) -> list[Timed]:
        """A target's steps with their sub-steps (a sub-step follows its vertex in `steps`)."""
        out: list[Timed] = []
        keep = False
        for step in self.steps:
            if step.parent is None:
                keep = step.target in (None, target)
            if keep:
                out.append(step)
        return out

    def duration(self, key: str) -> float:
        """build.py's per-target duration of this bake: "models build", "app build", "total"."""
        return float(self.report.get("durations", {}).get(key, 0.0))

    def stage_status(self, build: str = "models") -> dict[str, str]:
        return {s["stage"]: s["status"] for s in self.report.get("stages", []) if s["build"] == build}

    def layers(self) -> dict[str, str]:
        """Model id -> its layer in the built image (the diff id)."""
        return {m["id"]: m["layer"] for m in self.report.get("models", [])}

    @property
    def outside_bake(self) -> float:
        """The process's time outside the bake: start-up, engine checks, cache probes and the report's image
        inspection through the Docker SDK (what a too-short SDK timeout would cut)."""
        return max(0.0, self.wall - self.duration("total"))


def run_build_py(repo: Path, args: list[str], trace: Path, label: str, env: dict[str, str] | None = None) -> BuildPyRun:
    """`python REPO/build.py ARGS --json F --rawjson R --quiet`, timed from the outside; never raises on a failed
    build (`ok` False, `error` its last error line)."""
    trace.mkdir(parents=True, exist_ok=True)
    json_file, raw_file = trace / "report.json", trace / "build.rawjson"
    cmd = [sys.executable, str(repo / "build.py"), *args, "--json", str(json_file), "--rawjson", str(raw_file)]
    (trace / "argv.json").write_text(json.dumps(cmd))
    started = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--quiet"], capture_output=True, text=True, timeout=3600, cwd=repo, env={**os.environ, **(env or {})}
    )
    wall = time.perf_counter() - started
    (trace / "stderr.txt").write_text(proc.stderr)
    ok = proc.returncode == 0 and json_file.is_file()
    run = BuildPyRun(label, round(wall, 2), ok, error="" if ok else last_error(proc.stderr), trace=trace)
    if ok:
        run.report = json.loads(json_file.read_text())
    if raw_file.is_file():
        run.steps = profile(raw_file.read_text())
    print(f"bench: {label}: {f'{wall:.1f} s' if ok else 'FAILED: ' + run.error}", file=sys.stderr, flush=True)
    return run


def last_error(stderr: str) -> str:
    """The `error:` line build.py printed (its one line for a failure), else the last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:300]
