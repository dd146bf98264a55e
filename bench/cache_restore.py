"""Model layers restored from each remote cache after a wipe, vs. `tar -x` of the same bytes; and gzip vs.
zstd vs. uncompressed cache blobs (issue 4, item 9).

Goal: a restore from the cache <= 1.5x extracting the same bytes with tar (the disk limit). Model weights barely
compress (bench/realsize.py's float32/fp16 weights: about 8% with gzip, like real ones), so the compression of
the cache blobs is mostly CPU spent for little. Per compression: a cold `build.py --models-only` exporting to the
first cache, then one build per other cache that finds every step cached and only exports (one cache per build:
BuildKit 0.13 runs several exporters concurrently, and a local cache written beside a registry one came out
broken); build.py's own `--cache-compression X` sets the compression of the exports.
The caches: gha through the local v2 emulator (which takes no compression: its exporter uploads each layer's
own blob), a local directory, Debian's docker-registry, fresh per round.
Then, per cache: wipe (the image and every build record created since the round started, on a base image of its
own) and `build.py --models-only --cache <that one> --cache-read-only`, which must find every model step cached.

    python -m bench.cache_restore [--profile test] [--compressions gzip,zstd,uncompressed] [--quick]

The builds and their records: bench/cache_builds.py; what each cache stores: bench/cache_blobs.py; the tar
baseline: bench/tar_baseline.py; the results file: bench/cache_restore_report.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.build_inputs import bench_manifest, copy_repo, lock
from bench.cache_blobs import gha_cache_layers, local_cache_layers, registry_cache_layers
from bench.cache_builds import (
    BACKENDS,
    DEFAULT_ROUND,
    Build,
    Restore,
    Round,
    pulled_bytes,
    run_build_py,
    warm_fetch_stage,
)
from bench.cache_restore_report import render
from bench.enginecache import (
    CA_BUNDLE,
    Registry,
    code_stamp,
    exit_on_sigterm,
    imported_base_image,
    prune_own_records,
    record_names,
    remove_images,
    tree_bytes,
)
from bench.tar_baseline import tar_baseline

REPO = Path(__file__).resolve().parents[1]
COMPRESSIONS = ("gzip", "zstd", "uncompressed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_restore", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="test", help="realsize profile (default test, 1.30 GB; prod 2.44 GB)")
    parser.add_argument(
        "--compressions",
        default=",".join(COMPRESSIONS),
        help="gzip,zstd,uncompressed and/or default (build.py's cache specs as shipped, no compression attributes)",
    )
    parser.add_argument(
        "--default-restores", default="gha", help="caches to restore from in the default round (default gha)"
    )
    parser.add_argument("--backends", default=",".join(BACKENDS), help="local,registry,gha (the first: cold build)")
    parser.add_argument("--tar-runs", type=int, default=3, help="tar -x repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="zstd only (one cold build, three restores)")
    parser.add_argument("--root", type=Path, default=None, help="bench.realsize tree (default: its default root)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results-cache.md")
    parser.add_argument("--workdir", type=Path, default=None, help="keep traces here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.compressions = "zstd"
    compressions = [c.strip() for c in args.compressions.split(",") if c.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    default_restores = [b.strip() for b in args.default_restores.split(",") if b.strip()]
    command = "python -m bench.cache_restore" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))

    from bench.realsize import DEFAULT_ROOT, build_realsize_tree
    from modelbake.image.dockerfile import render_models_dockerfile
    from modelbake.lockfile import lock_hash, read_lock
    from modelbake.manifest import load_manifest
    from modelbake.mirror.server import MirrorServer
    from testkit.ghacache import GhaCacheServer

    exit_on_sigterm()
    started = datetime.now(UTC)
    began = time.perf_counter()
    tree = build_realsize_tree(args.root or DEFAULT_ROOT)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelbake-bench-cache-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    tags: list[str] = []
    rounds: list[Round] = []
    try:
        manifest = bench_manifest(tree.manifest, work / "manifest")
        repo = copy_repo(work / "repo")  # the context: edits to src/ by others cannot change a cache key mid-run
        stamp = code_stamp(repo)
        base = imported_base_image()
        tags.append(base)
        with ExitStack() as stack:
            mirror = stack.enter_context(MirrorServer(tree.root))
            mirror_args = [a for fam, url in sorted(mirror.mirrors.items()) for a in ("--mirror", f"{fam}={url}")]
            lock(manifest, mirror_args)
            loaded = load_manifest(manifest)
            dockerfile = work / "Dockerfile.models"
            dockerfile.write_text(render_models_dockerfile(loaded, read_lock(loaded.lock_path), args.profile))
            warm = warm_fetch_stage(dockerfile, repo, base)
            print(f"bench.cache_restore: fetch stage on {base}: {warm:.1f} s", file=sys.stderr)
            pin = lock_hash(loaded.lock_path)
            common = ["--manifest", str(manifest), "--profile", args.profile, "--models-only"]
            common += ["--base-image", base, "--network", "host", "--context", str(repo), *mirror_args]
            common += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
            n = 0
            for compression in compressions:
                # Each round has caches of its own (a gha server, a registry, a directory), deleted after it: no
                # blob of an earlier round is found again, and the disk holds one round's copies at a time.
                round_stack = stack.enter_context(ExitStack())
                gha = GhaCacheServer(work / f"gha-{compression}").start()
                round_stack.callback(shutil.rmtree, work / f"gha-{compression}", True)
                round_stack.callback(gha.stop)
                registry = round_stack.enter_context(Registry(work / f"registry-{compression}"))
                round_stack.callback(shutil.rmtree, registry.data, True)
                env = gha.runner_env()  # a hosted runner's variables, pointed at the v2 emulator
                round_started = datetime.now(UTC)
                prefix = f"bench{run_id}{compression}"
                local_dir = work / f"cache-{compression}"
                registry_ref = f"{registry.host}/bench/cache-{compression}"
                specs = {
                    "gha": f"gha,scope={prefix}",
                    "local": f"local:{local_dir}",
                    "registry": f"registry:{registry_ref}",
                }
                tag = f"modelbake-bench/models:{run_id}-{compression}"
                tags.append(tag)
                # "default": build.py exactly as shipped, without --cache-compression.
                shipped = compression == DEFAULT_ROUND
                forced = "" if shipped else compression
                scope_dir = local_dir / f"models-{args.profile}-{pin}"
                # One cache per build: with several --cache-to at once BuildKit 0.13 runs the exporters
                # concurrently, and a local cache exported beside a registry one came out with an index.json
                # naming the registry's manifest (a broken cache that restores nothing). The first build is the
                # cold one; the next ones find every step cached and only export.
                exports: dict[str, Build] = {}
                uploaded: dict[str, int] = {}
                stored: dict[str, list[dict]] = {}
                for i, backend in enumerate(backends):
                    gha.reset_counters()
                    registry_before = tree_bytes(registry.data)
                    n += 1
                    kind = "cold build" if i == 0 else "export-only build"
                    build = run_build_py(
                        repo,
                        common + ["--models-tag", tag, "--cache", specs[backend]],
                        work / "trace" / f"{n:02d}-{'cold' if i == 0 else 'export'}-{compression}-{backend}",
                        f"{kind} to {backend}, --cache-compression {forced or 'as build.py sets it'}",
                        env,
                        forced,
                    )
                    if not build.ok:
                        raise RuntimeError(f"{kind} to {backend} ({compression}) failed: {build.error}")
                    exports[backend] = build
                    uploaded[backend] = {
                        "gha": gha.bytes_uploaded,
                        "local": tree_bytes(scope_dir),
                        "registry": tree_bytes(registry.data) - registry_before,
                    }[backend]
                    try:
                        if backend == "gha":
                            stored[backend] = gha_cache_layers(gha, f"{prefix}-models-")
                        elif backend == "local":
                            stored[backend] = local_cache_layers(scope_dir)
                        else:
                            stored[backend] = registry_cache_layers(f"{registry_ref}:models-{args.profile}-{pin}")
                    except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
                        print(f"bench.cache_restore: {backend} cache layers: {exc}", file=sys.stderr)
                        stored[backend] = []
                cold = exports[backends[0]]
                this = Round(compression, cold, uploaded, stored, exports)
                rounds.append(this)
                for backend in [b for b in backends if not shipped or b in default_restores]:
                    remove_images([tag])
                    wiped = prune_own_records(round_started, record_names([manifest]))
                    print(f"bench.cache_restore: wiped {wiped} records", file=sys.stderr)
                    gha.reset_counters()
                    n += 1
                    warm_build = run_build_py(
                        repo,
                        common + ["--models-tag", tag, "--cache", specs[backend], "--cache-read-only"],
                        work / "trace" / f"{n:02d}-restore-{compression}-{backend}",
                        f"restore from {backend} ({compression})",
                        env,
                    )
                    if not warm_build.ok:
                        raise RuntimeError(f"restore from {backend} ({compression}) failed: {warm_build.error}")
                    status = warm_build.stage_status()
                    model_stages = [s for s in status if s.startswith("fetch-")]
                    downloaded = gha.bytes_downloaded if backend == "gha" else pulled_bytes(warm_build.steps)
                    this.restores.append(
                        Restore(
                            compression,
                            backend,
                            warm_build,
                            downloaded,
                            all_cached=bool(model_stages) and all(status[s] == "cached" for s in model_stages),
                            same_layers=warm_build.layers() == cold.layers(),
                        )
                    )
                remove_images([tag])
                prune_own_records(round_started, record_names([manifest]))
                shutil.rmtree(local_dir, ignore_errors=True)
                round_stack.close()
        baseline = tar_baseline(tree, args.profile, work, args.tar_runs)
        elapsed = time.perf_counter() - began
        text = render(command, tree, args.profile, rounds, baseline, elapsed, stamp)
        args.out.write_text(text)
        print(text)
    finally:
        remove_images(tags)
        removed = prune_own_records(started, record_names([manifest]))
        print(f"bench.cache_restore: removed {len(tags)} tags and {removed} build records", file=sys.stderr)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        else:  # keep the traces, not the gigabytes of cache data
            for path in [*work.glob("cache-*"), *work.glob("registry-*/data"), *work.glob("gha-*")]:
                shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
