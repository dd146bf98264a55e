"""Model layers restored from each remote cache after a wipe, vs. `tar -x` of the same bytes; and gzip vs.
zstd vs. uncompressed cache blobs (issue 4, item 9).

Goal: a restore from the cache <= 1.5x extracting the same bytes with tar (the disk limit). Model weights barely
compress (bench/realsize.py's float32/fp16 weights: about 8% with gzip, like real ones), so the compression of
the cache blobs is mostly CPU spent for little. Per compression: a cold `build.py --models-only` exporting to the
first cache, then one build per other cache that finds every step cached and only exports (one cache per build:
BuildKit 0.13 runs several exporters concurrently, and a local cache written beside a registry one came out
broken); `compression=X,force-compression=true` set on build.py's `--cache-to` specs by bench/buildtrace.py.
The caches: gha through the local v2 emulator (which takes no compression: its exporter uploads each layer's
own blob), a local directory, Debian's docker-registry, fresh per round.
Then, per cache: wipe (the image and every build record created since the round started, on a base image of its
own) and `build.py --models-only --cache <that one> --cache-read-only`, which must find every model step cached.

    python -m bench.cache_restore [--profile test] [--compressions gzip,zstd,uncompressed] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.buildtrace import Timed, load_profile
from bench.enginecache import (
    CA_BUNDLE,
    Registry,
    code_stamp,
    exit_on_sigterm,
    fresh_base_image,
    load_average,
    machine,
    remove_images,
    tree_bytes,
    wipe_records_since,
)
from bench.layers import bench_manifest, copy_repo, lock

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("local", "registry", "gha")  # the first gets the cold build
COMPRESSIONS = ("gzip", "zstd", "uncompressed")
RESTORE_GOAL = 1.5
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


def run_build_py(repo: Path, args: list[str], trace: Path, label: str, env: dict[str, str], attrs: str = "") -> Build:
    """One build.py process through bench.buildtrace (rawjson kept; `attrs` appended to every --cache-to)."""
    trace.mkdir(parents=True, exist_ok=True)
    json_file = trace / "report.json"
    cmd = [sys.executable, "-m", "bench.buildtrace", "--engine-timeout", "900", "--trace", str(trace)]
    cmd += ["--root", str(repo)] + (["--cache-to-attrs", attrs] if attrs else [])
    cmd += ["--", *args, "--json", str(json_file), "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=REPO, env={**os.environ, **env})
    wall = time.perf_counter() - started
    (trace / "stderr.txt").write_text(proc.stderr)
    ok = proc.returncode == 0 and json_file.is_file()
    build = Build(label, round(wall, 2), ok)
    if ok:
        build.report = json.loads(json_file.read_text())
    else:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        build.error = (lines or ["no output"])[-1][:300]
    build.steps = load_profile(trace, "models")
    print(f"bench.cache_restore: {label}: {f'{wall:.1f} s' if ok else 'FAILED: ' + build.error}", file=sys.stderr)
    return build


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


def local_cache_layers(directory: Path) -> list[dict]:
    """Layer descriptors of a `type=local` cache (OCI layout: index.json -> cache manifest)."""
    index = json.loads((directory / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((directory / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
    if "layers" in manifest:
        return list(manifest["layers"])
    # A manifest list: the layers are its entries, next to the cache config.
    return [m for m in manifest.get("manifests", []) if "cacheconfig" not in m.get("mediaType", "")]


def registry_cache_layers(ref: str) -> list[dict]:
    """Layer descriptors of a registry cache pushed with image-manifest=true."""
    host, _, rest = ref.partition("/")
    name, _, tag = rest.rpartition(":")
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    manifest = httpx.get(f"http://{host}/v2/{name}/manifests/{tag}", headers={"Accept": accept}, timeout=30).json()
    return list(manifest.get("layers", []))


def gha_cache_layers(server, scope_prefix: str) -> list[dict]:
    """Layer descriptors from the gha cache's index entry (BuildKit's cache config JSON)."""
    index = [e for e in server.entries if e.key.startswith(f"index-{scope_prefix}")]
    if not index:
        return []
    entry = max(index, key=lambda e: e.seq)
    config = json.loads(server.store.data_path(entry).read_bytes())
    return [
        {"mediaType": layer["annotations"]["mediaType"], "size": layer["annotations"]["size"], "digest": layer["blob"]}
        for layer in config.get("layers", [])
    ]


def compression_of(media_type: str) -> str:
    if media_type.endswith("+gzip") or media_type.endswith(".gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith(".tar") or media_type.endswith("tar"):
        return "uncompressed"
    return media_type.rsplit("/", 1)[-1]


def summarize_layers(layers: list[dict]) -> str:
    """`3 gzip 1,234 MB + 2 uncompressed 10 MB`."""
    by: dict[str, list[int]] = {}
    seen: set[str] = set()
    for layer in layers:
        if layer.get("digest") in seen:
            continue  # a blob listed twice (two records sharing it) is stored once
        seen.add(layer.get("digest", ""))
        by.setdefault(compression_of(layer["mediaType"]), []).append(int(layer["size"]))
    return " + ".join(f"{len(v)} {k} {sum(v) / 1e6:,.0f} MB" for k, v in sorted(by.items())) or "-"


@dataclass
class TarBaseline:
    bytes: int
    files: int
    extract: list[float]
    extract_sync: float
    gunzip_extract: float
    unzstd_extract: float
    gzip_bytes: int
    zstd_bytes: int
    sha256: float  # one sha256 pass over the uncompressed tarball


def tar_baseline(tree, profile: str, work: Path, runs: int, compressed: bool = True) -> TarBaseline:
    """`tar -x` of a tarball of the profile's model files into a fresh directory (page cache warm, as the
    engine's are): the disk limit. Also gzip and zstd tarballs of the same files, for the decompression floor
    (unless `compressed` is False: zeros then, and two minutes saved at 3 GB)."""
    ids = set(tree.profiles[profile])
    files = [f for f in tree.files if f.model_id in ids]
    ball = work / "models.tar"
    with tarfile.open(ball, "w") as tar:
        for f in files:
            tar.add(tree.root / f.path, arcname=f.path)
    total = sum(f.size for f in files)

    def timed(cmd: list[str], sync: bool = False) -> float:
        dest = work / f"x-{uuid.uuid4().hex[:6]}"
        dest.mkdir()
        started = time.perf_counter()
        subprocess.run(cmd + ["-C", str(dest)], check=True)
        if sync:
            subprocess.run(["sync"], check=True)
        took = time.perf_counter() - started
        shutil.rmtree(dest)
        return took

    extract = [timed(["tar", "-xf", str(ball)]) for _ in range(runs)]
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(ball)], check=True, capture_output=True)
    sha256 = time.perf_counter() - started
    extract_sync = timed(["tar", "-xf", str(ball)], sync=True)
    if not compressed:
        ball.unlink()
        return TarBaseline(total, len(files), extract, extract_sync, 0.0, 0.0, 0, 0, sha256)
    gz, zst = work / "models.tar.gz", work / "models.tar.zst"
    subprocess.run(f"gzip -1 -c {ball} > {gz}", shell=True, check=True)
    subprocess.run(["zstd", "-q", "-3", "-T0", str(ball), "-o", str(zst)], check=True)
    gunzip = timed(["tar", "-xzf", str(gz)])
    unzstd = timed(["tar", "--zstd", "-xf", str(zst)])
    baseline = TarBaseline(
        total, len(files), extract, extract_sync, gunzip, unzstd, gz.stat().st_size, zst.stat().st_size, sha256
    )
    for path in (ball, gz, zst):
        path.unlink()
    return baseline


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
    from modelbake.dockerfile import render_models_dockerfile
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
        base = fresh_base_image()
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
                # "default": build.py exactly as shipped, no compression attributes on its --cache-to specs.
                shipped = compression == DEFAULT_ROUND
                attrs = "" if shipped else f"compression={compression},force-compression=true"
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
                        f"{kind} to {backend}, cache-to {attrs or 'as build.py sets it'}",
                        env,
                        attrs,
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
                    wiped = wipe_records_since(round_started)
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
                wipe_records_since(round_started)
                shutil.rmtree(local_dir, ignore_errors=True)
                round_stack.close()
        baseline = tar_baseline(tree, args.profile, work, args.tar_runs)
        elapsed = time.perf_counter() - began
        text = render(command, tree, args.profile, rounds, baseline, elapsed, stamp)
        args.out.write_text(text)
        print(text)
    finally:
        remove_images(tags)
        removed = wipe_records_since(started)
        print(f"bench.cache_restore: removed {len(tags)} tags and {removed} build records", file=sys.stderr)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        else:  # keep the traces, not the gigabytes of cache data
            for path in [*work.glob("cache-*"), *work.glob("registry-*/data"), *work.glob("gha-*")]:
                shutil.rmtree(path, ignore_errors=True)
    return 0


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def _export_step(build: Build) -> Timed | None:
    """The build's cache export vertex (one per build here)."""
    for s in build.steps:
        name = s.name.lower()
        if s.parent is None and (name.startswith("exporting cache") or name.startswith("exporting to github")):
            return s
    return None


def _restore_phases(build: Build) -> tuple[float, float]:
    """(pull, unpack) seconds: the longest blob pull BuildKit reported (they run in parallel) and the image
    export's unpacking into the image store (decompression and writing the files)."""
    pulls = [s.seconds for s in build.steps if s.parent is not None and s.name.startswith("sha256:")]
    unpack = sum(s.seconds for s in build.steps if s.parent is not None and s.name.startswith("unpacking to"))
    # A local cache's blobs are extracted during the build instead, layer by layer (the unpack is then a no-op).
    extract = sum(s.seconds for s in build.steps if s.parent is not None and s.name.startswith("extracting "))
    return (max(pulls) if pulls else 0.0), max(unpack, extract)


def render(command: str, tree, profile: str, rounds: list[Round], base: TarBaseline, elapsed: float, stamp: str) -> str:
    tar_x = statistics.median(base.extract)
    backends = list(rounds[0].exports) if rounds else list(BACKENDS)
    lines = [
        "# Model layers from the remote caches after a wipe, vs. tar; cache blob compression",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, total run time {elapsed / 60:.1f} min  ",
        f"Machine: {machine()}; load average at the end {load_average()} (other engineers' builds share the engine)  ",
        f"Build code measured (sha256 prefixes, from the snapshot copy): {stamp}  ",
        f"Models: `bench/realsize.py` profile `{profile}`: {base.files} files, {base.bytes / 1e9:.2f} GB (random weights "
        "at the real shapes and sizes; gzip -1 shrinks them by "
        f"{100 * (1 - base.gzip_bytes / base.bytes):.0f}%, zstd -3 by {100 * (1 - base.zstd_bytes / base.bytes):.0f}%).",
        "",
        "Every build is `build.py --models-only` on a base image of its own, from a snapshot copy of the repository",
        "(bench/buildtrace.py keeps BuildKit's progress). Per compression: a cold build exporting to the first cache",
        "(the model steps run, from the local mirror), then one build per other cache that finds every step cached",
        "and only exports; `compression=X,force-compression=true` is appended to build.py's `--cache-to` specs. One",
        "cache per build on purpose: exporting to a local and a registry cache in one build (BuildKit runs the",
        "exporters concurrently) left the local cache's index.json naming the registry's manifest, a cache that",
        "restores nothing. Restore: after a wipe (the image and every build record since the round began removed;",
        "never the deps layer), `--cache <one> --cache-read-only`; every model step must come back `cached` with the",
        "cold build's diff ids.",
        "",
        "## Baseline: tar (the disk limit)",
        "",
        f"- `tar -xf` of an uncompressed tarball of the same files into a fresh directory: **{tar_x:.1f} s** (median "
        f"of {len(base.extract)}: {', '.join(f'{t:.1f}' for t in base.extract)}); with `sync`: {base.extract_sync:.1f} s",
        f"- `tar -xzf` (gzip -1, {_mb(base.gzip_bytes)}): {base.gunzip_extract:.1f} s; `tar --zstd -xf` (zstd -3, "
        f"{_mb(base.zstd_bytes)}): {base.unzstd_extract:.1f} s (page cache warm: the tarballs were just written)",
        f"- `sha256sum` of the uncompressed tarball: {base.sha256:.1f} s. An image-store restore hashes the bytes at "
        "least twice (the pulled blob's digest, then the diff id while unpacking) and writes them twice (the content "
        f"store's blob, then the snapshot): about {2 * base.sha256 + 2 * tar_x:.0f} s here before any decompression "
        f"or network, {(2 * base.sha256 + 2 * tar_x) / tar_x:.0f}x `tar -x`.",
        "",
        f"## Restore after a wipe (goal <= {RESTORE_GOAL}x `tar -x`, {tar_x:.1f} s)",
        "",
        "Pull: the longest blob download BuildKit reported (they run in parallel). Unpack: the image export's",
        "unpacking into the image store (decompressing, writing and hashing the files); for the local cache, whose",
        "blobs BuildKit extracts during the build, the sum of its `extracting` steps.",
        "",
        "| compression | cache | restore (build.py wall) | / tar -x | buildx | pull | unpack | pulled | cached, same layers |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rounds:
        for x in r.restores:
            ratio = x.build.wall / tar_x if tar_x else 0.0
            ok = "yes" if x.all_cached and x.same_layers else f"NO (cached {x.all_cached}, same {x.same_layers})"
            pull, unpack = _restore_phases(x.build)
            lines.append(
                f"| {_round_name(r.compression)} | {x.backend} | **{x.build.wall:.1f} s** | {ratio:.1f}x | "
                f"{x.build.report.get('durations', {}).get('models build', 0):.1f} s | {pull:.1f} s | {unpack:.1f} s | "
                f"{_mb(x.downloaded)} | {ok} |"
            )
    valid = [x for r in rounds for x in r.restores if x.all_cached and x.same_layers]
    best = min(valid, key=lambda x: x.build.wall, default=None)
    if best is not None:
        verdict = "met" if best.build.wall <= RESTORE_GOAL * tar_x else "MISSED"
        lines += [
            "",
            f"Best: {best.backend}/{_round_name(best.compression)} {best.build.wall:.1f} s = "
            f"{best.build.wall / tar_x:.1f}x `tar -x`: goal **{verdict}**.",
        ]
    lines += [
        "",
        "## Exporting to the caches",
        "",
        "Cold build: the first cache's build (model steps + image export + cache export). Then per cache: the cache",
        "export step's seconds (its build's wall time), bytes written to the cache, and the blobs it holds by",
        "compression (model layers and, with mode=max, the fetch steps' layers). Each round has caches of its own",
        "(a gha emulator, a registry, a directory), deleted after it. BuildKit's gha exporter takes no compression",
        "attributes (its `Config()` is fixed to the default, gzip) and uploads the blob each layer already has:",
        "the image export's gzip for the model layers.",
        "",
        "| compression asked | cold build | image export (gzip, the image store) | "
        + " | ".join(f"{b}: export step (build), written, stored blobs" for b in backends)
        + " |",
        "| --- | ---: | ---: | " + " | ".join("---" for _ in backends) + " |",
    ]
    for r in rounds:
        cells = []
        for b in backends:
            build = r.exports.get(b)
            step = _export_step(build) if build else None
            secs = f"{step.seconds:.1f} s ({build.wall:.0f} s)" if step and build else "-"
            cells.append(f"{secs}, {_mb(r.uploaded.get(b, 0))}, {summarize_layers(r.stored.get(b, []))}")
        lines.append(
            f"| {_round_name(r.compression)} | {r.cold.wall:.1f} s | {r.cold.step_seconds('exporting to image'):.1f} s | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "## Where a restore's time goes (BuildKit step durations, 0.5 s or more)", ""]
    for r in rounds:
        for x in r.restores:
            top = sorted((s for s in x.build.steps if s.seconds >= 0.5 and not s.cached), key=lambda s: -s.seconds)[:6]
            parts = ", ".join(f"{_short(s.name)} {s.seconds:.1f} s" for s in top)
            lines.append(f"- {_round_name(r.compression)}/{x.backend} ({x.build.wall:.1f} s): {parts}")
    return "\n".join(lines) + "\n"


def _round_name(compression: str) -> str:
    return "default (build.py as shipped)" if compression == DEFAULT_ROUND else compression


def _short(name: str) -> str:
    name = name.replace("|", "\\|")
    return name if len(name) <= 70 else name[:67] + "..."


if __name__ == "__main__":
    sys.exit(main())
