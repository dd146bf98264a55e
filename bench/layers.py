"""Model layers at real sizes: layer bytes vs. the model files' bytes, and the rebuild after an app-code edit
with the models vs. the same app with no models at all (issue 3, item 9).

Goals: model layer bytes <= 1.01x the model files' bytes; rebuild after an app-code change <= 1.2x the rebuild
of the same app with no models. The models are bench/realsize.py's: loadable random-weight models at the real
shapes and sizes (float32/fp16 N(0, 0.02) weights compress like real ones, about 8% with gzip), served by the
local mirror and locked. Builds run through build.py exactly as a user runs it (bench/buildtrace.py only keeps
BuildKit's progress stream for the step profile) from a snapshot copy of the repository: the edits go to the
copy, never to src/, and one version of build.py is measured even while src/ is being edited.

    python -m bench.layers [--profile prod] [--repeat 9] [--quick]

The repository and manifest copies: bench/build_inputs.py; the build.py runs: bench/build_runs.py; the results
file: bench/layers_report.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.build_inputs import PROFILE_NONE, bench_manifest, copy_repo, edit_app_code, lock
from bench.build_runs import BuildRun, Variant, run_build_py
from bench.enginecache import (
    BASE_IMAGE,
    CA_BUNDLE,
    WHEELHOUSE,
    code_stamp,
    exit_on_sigterm,
    image_layer_blobs,
    prune_own_records,
    record_names,
    remove_images,
)
from bench.layers_report import render

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layers", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="prod", help="realsize profile with the models (default prod, 2.44 GB)")
    parser.add_argument(
        "--repeat", type=int, default=9, help="rebuilds per variant (default 9, about 1 s each; the median is used)"
    )
    parser.add_argument("--quick", action="store_true", help="test profile (1.30 GB), 3 rebuilds")
    parser.add_argument("--root", type=Path, default=None, help="bench.realsize tree (default: its default root)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results-layers.md")
    parser.add_argument("--workdir", type=Path, default=None, help="keep traces here (default: a temp dir, removed)")
    parser.add_argument("--keep-cache", action="store_true", help="leave the build records and images in the engine")
    args = parser.parse_args(argv)
    if args.quick:
        args.profile, args.repeat = "test", 3
    command = "python -m bench.layers" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))

    from bench.realsize import DEFAULT_ROOT, build_realsize_tree
    from modelbake.mirror.server import MirrorServer

    exit_on_sigterm()
    started = datetime.now(UTC)
    began = time.perf_counter()
    tree = build_realsize_tree(args.root or DEFAULT_ROOT)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelbake-bench-layers-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    tags: list[str] = []
    runs: list[BuildRun] = []
    notes: list[str] = []
    try:
        manifest = bench_manifest(tree.manifest, work / "manifest")
        repo = copy_repo(work / "repo")
        stamp = code_stamp(repo)
        with MirrorServer(tree.root) as server:
            mirror_args = [a for fam, url in sorted(server.mirrors.items()) for a in ("--mirror", f"{fam}={url}")]
            lock(manifest, mirror_args)
            common = ["--manifest", str(manifest), "--base-image", BASE_IMAGE, "--network", "host", *mirror_args]
            common += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
            variants = [Variant("models", args.profile), Variant("no models", PROFILE_NONE)]
            models_tag = f"modelbake-bench/models:{run_id}-only"
            tags.append(models_tag)
            models_only = run_build_py(
                repo,
                common + ["--profile", args.profile, "--models-only", "--models-tag", models_tag],
                work / "trace" / "00-models-only",
                "models image (--models-only)",
                "first",
            )
            if not models_only.ok:
                raise RuntimeError(f"models-only build failed: {models_only.error}")
            models_blobs = image_layer_blobs(models_tag)
            common += ["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []

            def build(v: Variant, kind: str, n: int) -> BuildRun:
                app_tag = f"modelbake-bench/app:{run_id}-{v.slug}"
                # build.py's default models tag (profile + lock hash), as a user gets it: with it, a rebuild
                # whose models image is up to date skips the models build.
                from modelbake.lockfile import lock_hash

                v_models_tag = f"modelbake/models:{v.profile}-{lock_hash(manifest.with_suffix('.lock'))}"
                for tag in (app_tag, v_models_tag):
                    if tag not in tags:
                        tags.append(tag)
                extra = ["--profile", v.profile, "--tag", app_tag]
                trace = work / "trace" / f"{n:02d}-{v.slug}-{kind}"
                return run_build_py(repo, common + extra, trace, v.name, kind)

            n = 0
            for v in variants:  # first builds: the app's layers created; not timed as rebuilds
                n += 1
                first = build(v, "first", n)
                runs.append(first)
                if not first.ok:
                    raise RuntimeError(f"{v.name}: first build failed: {first.error}")
                deps = [s for s in first.app_steps if s.stage == "deps"]
                if any(not s.cached and s.seconds > 1 for s in deps):
                    notes.append(
                        f"the first '{v.name}' build rebuilt the deps layer ({max(s.seconds for s in deps):.0f} s): "
                        "the engine had none for this requirements/app.txt"
                    )
            app_blobs = image_layer_blobs(runs[0].report["image"]["tag"])
            for i in range(args.repeat):  # interleaved, so machine load drifts hit both variants alike
                for v in variants:
                    n += 1
                    edit_app_code(repo, n)
                    run = build(v, "rebuild", n)
                    runs.append(run)
                    if not run.ok:
                        raise RuntimeError(f"{v.name}: rebuild {i + 1} failed: {run.error}")
        if not models_blobs or not app_blobs:
            print("bench.layers: warning: no layer blobs from containerd (ctr)", file=sys.stderr)
        elapsed = time.perf_counter() - began
        text = render(
            command=command,
            tree=tree,
            profile=args.profile,
            models_only=models_only,
            runs=runs,
            variants=variants,
            models_blobs=models_blobs,
            app_blobs=app_blobs,
            notes=notes,
            elapsed=elapsed,
            stamp=stamp,
        )
        args.out.write_text(text)
        print(text)
    finally:
        if not args.keep_cache:
            remove_images(tags)
            removed = prune_own_records(started, record_names([manifest]))
            print(f"bench.layers: removed {len(tags)} tags and {removed} build records", file=sys.stderr)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
