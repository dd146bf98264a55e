"""bench/results-cache.md, from one `python -m bench.cache_restore` run.

Why apart from the runs: the text is derived from the measured rounds and the tar baseline only.
"""

from __future__ import annotations

import statistics
import time

from bench.buildtrace import Timed
from bench.cache_blobs import summarize_layers
from bench.cache_builds import BACKENDS, DEFAULT_ROUND, Build, Round
from bench.enginecache import load_average, machine
from bench.tar_baseline import TarBaseline

RESTORE_GOAL = 1.5


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
