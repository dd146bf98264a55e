"""Run build.py with BuildKit's own progress kept, and optionally extra attributes on its cache exports.

Why: build.py's `--json` has per-stage times and cache traffic, but not the export, unpack and load steps that
decide a rebuild's time, and it has no cache compression option yet. This runs build.py's `main` in a process
of its own (so the wall time is a whole build.py run) with two hooks:

- every `docker buildx build` keeps its `--progress rawjson` stream in `TRACE_DIR/<label>.rawjson`
  (`models`, `app`), which :func:`profile` turns into step and sub-step durations;
- `--cache-to-attrs compression=zstd,force-compression=true` sets those attributes on every `--cache-to` spec
  that build.py's `cachespec.specs_for` derives (replacing build.py's own values for the same keys).

modelbake is imported from `--root`'s src/ (as build.py does), so a benchmark that runs from a snapshot copy of
the repository measures one version of build.py even while src/ is being edited.

    python -m bench.buildtrace --trace DIR [--cache-to-attrs ATTRS] -- BUILD.PY-ARGS...
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Timed:
    """A vertex or a sub-step of one (e.g. "exporting layers" under "exporting to image")."""

    name: str
    seconds: float
    cached: bool = False
    parent: str | None = None
    bytes: int = 0
    started: datetime | None = None  # the vertex's own span (vertices only), for spans across parallel steps
    completed: datetime | None = None


def _time(value: str | None) -> datetime | None:
    from modelbake.buildx import _parse_time

    return _parse_time(value)


def profile(text: str, target: str | None = None) -> list[Timed]:
    """Vertices (steps) and their statuses (sub-steps such as "exporting layers", "unpacking to ...") with
    the durations BuildKit reports, in first-seen order; with `target`, a bake's steps of that target only
    (and the steps that name none)."""
    from modelbake.buildx import rawjson_documents
    from modelbake.rawjson import Step

    vertices: dict[str, dict] = {}
    statuses: dict[tuple[str, str], dict] = {}
    for doc in rawjson_documents(text)[0]:
        for v in doc.get("vertexes") or []:
            owner = Step(digest="", name=v.get("name", "")).target
            if target is not None and owner is not None and owner != target:
                continue
            seen = vertices.setdefault(v["digest"], {"name": v.get("name", "")})
            for key in ("started", "completed", "cached"):
                if v.get(key):
                    seen[key] = v[key]
        for s in doc.get("statuses") or []:
            seen = statuses.setdefault((s.get("vertex", ""), s.get("id", "")), {})
            for key in ("started", "completed", "total", "current"):
                if s.get(key):
                    seen[key] = s[key]
    out: list[Timed] = []
    for digest, v in vertices.items():
        start, end = _time(v.get("started")), _time(v.get("completed"))
        seconds = (end - start).total_seconds() if start and end else 0.0
        out.append(Timed(v["name"], round(max(seconds, 0.0), 2), bool(v.get("cached")), started=start, completed=end))
        for (vertex, sid), s in statuses.items():
            if vertex != digest:
                continue
            start, end = _time(s.get("started")), _time(s.get("completed"))
            seconds = (end - start).total_seconds() if start and end else 0.0
            size = int(s.get("total") or s.get("current") or 0)
            out.append(Timed(sid, round(max(seconds, 0.0), 2), parent=v["name"], bytes=size))
    return out


def load_seconds(trace_dir: Path, label: str) -> float | None:
    """The `docker buildx build` run time build.py measured, unrounded (None if that build did not finish)."""
    path = trace_dir / f"{label}.seconds"
    return float(path.read_text()) if path.is_file() else None


def load_profile(trace_dir: Path, label: str) -> list[Timed]:
    path = trace_dir / f"{label}.rawjson"
    return profile(path.read_text(), target=label) if path.is_file() else []


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m bench.buildtrace", description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, required=True, help="directory for <label>.rawjson")
    parser.add_argument("--cache-to-attrs", default="", help="appended to every --cache-to spec, e.g. compression=zstd")
    parser.add_argument("--root", type=Path, default=REPO, help="where build.py lives (its default context)")
    parser.add_argument(
        "--allow-empty-profile",
        action="store_true",
        help="work around build.py's report crashing on a models image without layers (an empty profile)",
    )
    parser.add_argument(
        "--engine-timeout",
        type=int,
        default=None,
        metavar="SECONDS",
        help="Docker SDK read timeout (build.py's is 10 s, too short to `docker load` a GB-sized models image)",
    )
    args = parser.parse_args(argv[:split])
    build_args = argv[split + 1 :]
    args.trace.mkdir(parents=True, exist_ok=True)

    # build.py's own rule: the modelbake of the repository it belongs to (here a snapshot copy), first on sys.path.
    sys.path.insert(0, str(args.root.resolve() / "src"))
    from modelbake import buildplan, imagebuild

    original_run, original_specs = imagebuild.run_bake, buildplan.specs_for

    def traced_run(specs, *, echo=None):
        """One bake of every target; each target's trace gets the whole stream (load_profile picks its steps)."""
        lines: list[str] = []
        try:
            results = original_run(specs, echo=lines.append)
            for label, result in results.items():
                # build.py's --json rounds to 0.1 s; a cached rebuild takes well under a second.
                (args.trace / f"{label}.seconds").write_text(f"{result.seconds:.4f}\n")
            return results
        finally:
            for label in specs:
                (args.trace / f"{label}.rawjson").write_text("".join(lines))
                (args.trace / f"{label}.argv.json").write_text(json.dumps(spec_argv(specs)))

    def specs_with_attrs(*a, **kw):
        specs = original_specs(*a, **kw)
        if args.cache_to_attrs:
            # Replace what build.py set for the same keys (it may pass compression attributes of its own).
            keys = {item.partition("=")[0] for item in args.cache_to_attrs.split(",")}
            specs.cache_to = [
                ",".join([i for i in spec.split(",") if i.partition("=")[0] not in keys] + [args.cache_to_attrs])
                for spec in specs.cache_to
            ]
        return specs

    imagebuild.run_bake = traced_run
    if args.allow_empty_profile:
        from modelbake import report

        original_history = report.layer_history

        def tolerant_history(image):
            # `image.history()` is None for an image without layers (FROM scratch, no COPY): no layer, no entry.
            if not image.attrs.get("RootFS", {}).get("Layers"):
                return []
            return original_history(image)

        report.layer_history = tolerant_history
    if args.engine_timeout:
        from modelbake import engine

        original_client = engine.docker_client
        engine.docker_client = lambda timeout=10: original_client(max(timeout, args.engine_timeout))
    buildplan.specs_for = specs_with_attrs
    return imagebuild.main(build_args, root=args.root)


def spec_argv(specs) -> list[str]:
    from modelbake.bake import bake_argv

    return [str(a) for a in bake_argv(specs, Path("BAKE.json"), Path("METADATA.json"))]


if __name__ == "__main__":
    sys.exit(main())
