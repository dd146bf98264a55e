"""`python -m bench`: the app image's new layer order (models at the bottom) vs the old one, at real model sizes,
through a mirror at a stated bandwidth, in one run on one machine.

Per layout (bench/layouts.py), each built by build.py as shipped: the cold build against the network limit and
where its time goes, app-code rebuilds (and the naive Dockerfile's), one model's pin change, a second app with
other dependencies on the same engine (model bytes added on disk), a base-image bump, the restore from the gha
emulator after a wipe (vs `tar -x` of the app image's files), and a client pulling each new version from a
registry (time, downloads, bytes unpacked on disk). Writes bench/results.md, bench/results.png and the README's
bench block, and prints the goals and, last, one line of the key ratios.

    python -m bench [--quick] [--bandwidth 100] [--root DIR] [--tiny] [--layouts new,old]

`--quick`: the same models and scenarios, two app-code rebuilds, no offline verify, one `tar -x`.
`--tiny`: the tiny test models (develops the benchmark: prints the results, writes nothing of the repository).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.contexts import LAYOUTS
    from bench.realsize import DEFAULT_ROOT

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two app-code rebuilds, no offline verify, one tar -x")
    p.add_argument(
        "--bandwidth",
        type=float,
        default=100.0,
        metavar="MB_PER_S",
        help="mirror bandwidth in MB/s, shared by all connections (default 100, a typical CI-to-hub rate)",
    )
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"bench.realsize tree (default {DEFAULT_ROOT})")
    p.add_argument("--layouts", default=",".join(LAYOUTS), help="new,old (default: both, new first)")
    p.add_argument("--repeat", type=int, default=None, help="app-code rebuilds per layout (default 3; quick 2)")
    p.add_argument("--tiny", action="store_true", help="tiny models instead (develops the benchmark; no results)")
    p.add_argument("--out", type=Path, default=None, help="default bench/results.md (quick: results-quick.md)")
    p.add_argument("--chart", type=Path, default=None, help="default bench/results.png (quick: results-quick.png)")
    p.add_argument("--workdir", type=Path, default=None, help="keep traces here (default: a temp dir, removed)")
    args = p.parse_args(argv)
    args.layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if unknown := [x for x in args.layouts if x not in LAYOUTS]:
        p.error(f"--layouts: unknown {unknown}; choose from {', '.join(LAYOUTS)}")
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    name = "results-quick" if args.quick else "results"
    args.out = args.out or REPO / "bench" / f"{name}.md"
    args.chart = args.chart or REPO / "bench" / f"{name}.png"
    return args


def run(args: argparse.Namespace, command: str):
    from bench.enginecache import exit_on_sigterm, load_average, machine, other_builds_since
    from bench.layouts import run_layout
    from bench.modelsets import realsize_models, tiny_models
    from bench.results import Outcome
    from bench.scenarios import Bench
    from bench.tar_baseline import export_image_files, tarball_baseline

    exit_on_sigterm()
    began = time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelbake-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    models = tiny_models(work / "tiny") if args.tiny else realsize_models(args.root)
    _warn_if_disk_is_short(models.total_bytes)
    bench = Bench(models, work, args.bandwidth * 1e6, wipe_timeout=30 if args.tiny else 300, tiny=args.tiny)
    outcome = Outcome(command, args.quick, models, args.bandwidth * 1e6, "", {})
    try:
        outcome.naive = naive_rebuild(bench)
        bench.wipe()
        for i, layout in enumerate(args.layouts):

            def tar(tag: str, drop_registry) -> None:
                """The app image's files, extracted once the layout's registry is gone (the disk is shared)."""
                subprocess.run(["docker", "pull", "--quiet", tag], check=True, capture_output=True, timeout=3600)
                drop_registry()
                ball = export_image_files(tag, work / "app-image.tar")
                bench.remove(tag)
                outcome.tar = tarball_baseline(ball, work, 1 if args.quick else 3)

            outcome.layouts[layout] = run_layout(
                bench,
                layout,
                bench.epoch + i,
                repeat=args.repeat,
                verify=not (args.quick or args.tiny),  # --tiny's lean venv has no torch
                after_client_pull=None if outcome.tar else tar,
            )
    finally:
        bench.cleanup()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    outcome.machine = f"{machine()}; load average at the end {load_average()}"
    outcome.others = other_builds_since(bench.started, bench.record_names)
    outcome.notes = bench.notes
    outcome.elapsed = time.perf_counter() - began
    outcome.finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return outcome


def naive_rebuild(bench):
    """The naive Dockerfile after an app-code change: its `COPY . .` changes, so every model is downloaded and
    exported again; its deps stage is built before (untimed), so the build measures exactly that."""
    from bench.build_inputs import edit_app_code
    from bench.contexts import LOCK_A, NEW
    from bench.naive import build_naive
    from bench.scenarios import Measure

    trace = bench.work / "trace"
    context = bench.context(NEW, LOCK_A).path  # the project's files (and its download script), the app's lock
    warm = build_naive(
        context,
        bench.naive_file,
        bench.tag("naive-deps"),
        bench.mirror.url,
        bench.base,
        trace / "naive-deps",
        target="deps",
    )
    if not warm.ok:
        raise RuntimeError(f"the naive Dockerfile's deps stage: {warm.error}")
    edit_app_code(context, 0)
    tag = bench.tag("naive")
    bench.mirror.clear_requests()
    built = build_naive(context, bench.naive_file, tag, bench.mirror.url, bench.base, trace / "naive")
    deps = [s for s in built.steps if s.stage == "deps" and not s.cached and s.seconds >= 5]
    if deps:
        bench.notes.append(
            f"the naive rebuild ran the deps stage again ({deps[0].seconds:.0f} s of {built.wall:.0f} s)"
        )
    m = Measure("naive app-code change", built.wall, bench.fetched(), ok=built.ok, error=built.error, steps=built.steps)
    print(f"bench: naive app-code change: {m.wall:.1f} s, {m.fetched / 1e6:,.1f} MB fetched", file=sys.stderr)
    return m


def _warn_if_disk_is_short(model_bytes: int) -> None:
    """A layout's block keeps several images, build records, a registry and a gha cache of the models at once."""
    root = Path("/var/lib/docker")
    free = shutil.disk_usage(root if root.is_dir() else Path("/")).free
    need = 15 * model_bytes
    if free < need:
        print(
            f"bench: warning: {free / 1e9:.0f} GB free for the engine, a run at this size needs about "
            f"{need / 1e9:.0f} GB",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    from bench.chart import MISSING, chart_available, write_chart
    from bench.filelayers_report import carried_block, with_block
    from bench.results_render import render, update_readme

    draw = chart_available()
    if not draw:
        print(MISSING, file=sys.stderr, flush=True)
    outcome = run(args, command)
    if args.workdir is not None:  # kept with the traces: `python -m bench.rerender DIR` writes the text again
        import pickle

        (args.workdir / "outcome.pickle").write_bytes(pickle.dumps(outcome))
    text = render(outcome)
    if args.tiny:
        print(text)
    else:
        previous = args.out.read_text() if args.out.is_file() else ""
        block = carried_block(previous)  # python -m bench.filelayers's section: not this run's to drop
        args.out.write_text(with_block(text, block) if block else text)
        if draw:
            write_chart(outcome, args.chart)
        if args.out.resolve() == (REPO / "bench" / "results.md").resolve() and update_readme(
            REPO / "README.md", outcome
        ):
            print("bench: README.md's bench block updated", file=sys.stderr)
    for goal, measured, ok in outcome.goals():
        print(f"{'met   ' if ok else 'MISSED'} {goal}: {measured}")
    print(outcome.last_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
