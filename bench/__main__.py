"""`python -m bench`: naive Dockerfile vs modelbake at real model sizes, through a mirror at a stated bandwidth.

Measures, each with wall time and bytes fetched from the mirror: the naive Dockerfile (cold, and after an
app-code change), modelbake cold, after an app-code change, after one model's pin change (Whisper tiny.en),
the restore from the gha emulator, a local cache and a registry after a wipe (vs. `tar -x` of the same bytes),
the offline verify, and image and layer sizes vs. model file bytes. Writes bench/results.md and
bench/results.png and prints, as its last line, the four numbers the goals are about.

    python -m bench [--quick] [--bandwidth 100] [--root DIR] [--tiny]

`--quick`: the same full-size models, the key scenarios only (naive rebuild, modelbake cold and rebuilds, the
pin change, a restore from the gha emulator); no naive cold build, no verify, one cache.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.results import Outcome

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("gha", "local", "registry")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.realsize import DEFAULT_ROOT

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="key scenarios only, full model sizes (minutes)")
    p.add_argument(
        "--bandwidth",
        type=float,
        default=100.0,
        metavar="MB_PER_S",
        help="mirror bandwidth in MB/s, shared by all connections (default 100, a typical CI-to-hub rate)",
    )
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"bench.realsize tree (default {DEFAULT_ROOT})")
    p.add_argument("--backends", default=None, help="caches to restore from (default gha,local,registry; quick: gha)")
    p.add_argument(
        "--lever",
        default=None,
        metavar="COMPRESSION",
        help="one more restore from a local cache exported with this forced compression (default: "
        "zstd in the full run, none with --quick; build.py's own default is uncompressed)",
    )
    p.add_argument("--repeat", type=int, default=3, help="modelbake rebuilds after an app-code change (median)")
    p.add_argument("--tiny", action="store_true", help="tiny models instead (develops the benchmark; no results)")
    p.add_argument("--out", type=Path, default=None, help="default bench/results.md (quick: results-quick.md)")
    p.add_argument("--chart", type=Path, default=None, help="default bench/results.png (quick: results-quick.png)")
    p.add_argument("--workdir", type=Path, default=None, help="keep traces here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    if args.backends is None:
        args.backends = "gha" if args.quick else ",".join(BACKENDS)
    name = "results-quick" if args.quick else "results"
    args.out = args.out or REPO / "bench" / f"{name}.md"
    args.chart = args.chart or REPO / "bench" / f"{name}.png"
    if args.lever is None:
        args.lever = "" if args.quick else "zstd"
    return args


def run(args: argparse.Namespace, command: str) -> Outcome:
    from bench.enginecache import image_layer_blobs, load_average, machine
    from bench.layers_report import wheel_unpacked_bytes
    from bench.modelsets import PROFILE, realsize_models, tiny_models
    from bench.scenarios import Bench
    from bench.tar_baseline import tar_baseline

    began = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelbake-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    models = tiny_models(work / "tiny") if args.tiny else realsize_models(args.root)
    _warn_if_disk_is_short(models.total_bytes)
    bench = Bench(models, work, args.bandwidth * 1e6)
    try:
        warm = bench.warm_up()
        naive = [] if args.quick else [bench.naive("cold build", "cold")]
        bench.edit_app()
        naive.append(bench.naive("rebuild after an app-code change", "rebuild"))
        cold = bench.modelbake("cold build", "cold")
        if not cold.ok:
            raise RuntimeError(f"modelbake cold build failed: {cold.error}")
        deps = [t for t in cold.steps if t.name.startswith("[deps ") and not t.cached and t.seconds >= 5]
        if deps:  # seen: the warm-up's deps record is not always the one build.py's app build finds afterwards
            bench.notes.append(
                f"modelbake's cold build re-ran the app's deps stage ({deps[0].seconds:.0f} s of its {cold.wall:.0f} s)"
                " although the warm-up built it: its cold time is an upper bound; the rebuilds found it cached."
            )
        rebuilds = []
        for i in range(args.repeat):
            bench.edit_app()
            rebuilds.append(bench.modelbake("rebuild after an app-code change", f"rebuild{i}"))
        verify = None if args.quick else bench.verify(cold.report["image"]["tag"])
        layers = layer_table(
            cold.report, image_layer_blobs(cold.report["models_image"]["tag"]), wheel_unpacked_bytes(models.spacy_wheel)
        )
        pin = bench.modelbake("rebuild after one model's pin changes", "pin", bench.pin_manifest)
        # the cache rounds start from an engine without this run (and with the disk its 3 GB layers took)
        bench.wipe(bench.started, list(bench.tags), free_disk=True)
        restores = [bench.restore(b) for b in args.backends.split(",") if b]
        if args.lever:
            restores.append(bench.restore("local", args.lever))
        baseline = tar_baseline(models.tar_tree(), PROFILE, work, 3, compressed=False)
    finally:
        bench.wipe(bench.started, bench.tags, free_disk=True)
        bench.close()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    outcome = Outcome(
        command,
        args.quick,
        models,
        args.bandwidth * 1e6,
        "",
        warm,
        naive,
        cold,
        rebuilds,
        pin,
        restores,
        baseline.extract,
        layers,
        verify,
        notes=bench.notes,
    )
    outcome.floors = {"sha256": baseline.sha256, "extract_sync": baseline.extract_sync}
    outcome.machine = f"{machine()}; load average at the end {load_average()}"
    outcome.elapsed = time.perf_counter() - began
    for r in [*naive, *rebuilds, pin, *(x.restore for x in restores)]:
        if not r.ok:
            outcome.notes.append(f"{r.approach} {r.scenario} FAILED: {r.error}")
    return outcome


def _warn_if_disk_is_short(model_bytes: int) -> None:
    """A run keeps images, build records and a cache of the models at once: at 3 GB of models it took ~32 GB
    of the engine's disk at its peak, and one run that started with less died with ENOSPC mid-build."""
    root = Path("/var/lib/docker")
    free = shutil.disk_usage(root if root.is_dir() else Path("/")).free
    need = 10 * model_bytes
    if free < need:
        print(
            f"bench: warning: {free / 1e9:.0f} GB free for the engine, a run at this size needs about "
            f"{need / 1e9:.0f} GB (`docker buildx prune --keep-storage 15gb` frees old build records)",
            file=sys.stderr,
        )


def layer_table(report: dict, blobs: list[dict], spacy_unpacked: int) -> list[dict]:
    """Per model: the lock's file bytes (spaCy: unpacked), the app image's layer bytes, the models image's blob."""
    blob_of = dict(zip(report["models_image"]["layers"], blobs, strict=False))
    out = []
    for m in report["models"]:
        files = spacy_unpacked if m["family"] == "spacy" else int(m.get("files_bytes") or 0)
        # the model's rest layer and each of its file layers (uncompressed: a layer's blob is its diff id)
        diffs = [m.get("models_image_layer") or "", *[f.get("layer") or "" for f in m.get("files", [])]]
        blob = sum(int(blob_of[d]["size"]) for d in diffs if d in blob_of)
        out.append({"id": m["id"], "files": files, "layer": int(m["bytes"]), "blob": blob})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    from bench.chart import MISSING, chart_available, write_chart
    from bench.results import render, update_readme

    draw = chart_available()
    if not draw:
        print(MISSING, file=sys.stderr, flush=True)
    outcome = run(args, command)
    text = render(outcome)
    if not args.tiny:
        from bench.filelayers_report import carried_block, with_block

        previous = args.out.read_text() if args.out.is_file() else ""
        block = carried_block(previous)  # python -m bench.filelayers's section: not this run's to drop
        args.out.write_text(with_block(text, block) if block else text)
        if draw:
            write_chart(outcome, args.chart)
        if args.out.resolve() == (REPO / "bench" / "results.md").resolve() and update_readme(
            REPO / "README.md", outcome
        ):
            print("bench: README.md's Benchmark table updated", file=sys.stderr)
    else:
        print(text)
        if draw:
            write_chart(outcome, (args.workdir or Path(tempfile.gettempdir())) / "bench-tiny.png")
    for goal, measured, ok in outcome.goals():
        print(f"{'met   ' if ok else 'MISSED'} {goal}: {measured}")
    print(
        f"rebuild walls: {', '.join(f'{r.wall:.1f}' for r in outcome.rebuilds)} s (median "
        f"{statistics.median(r.wall for r in outcome.rebuilds):.1f})"
    )
    print(outcome.last_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
