"""The models image and the app on it in ONE BuildKit graph: `docker buildx bake` with a generated definition.

Why bake: with two `docker buildx build` runs, the app build can only read the models image from the local
engine's image store, so the models image had to be loaded between them, which ties build.py to the `docker`
driver. Bake gives the app's `models` stage the models target itself (`contexts = {models = "target:models"}`,
as docker-bake.hcl does), so any builder (docker-container, remote, kubernetes, cloud) builds both, pushes
both, and caches both, with nothing loaded in between. The definition is JSON (bake reads `.json` files), one
target per BuildSpec; buildx resolves its fields exactly as for `docker buildx build`.

bake asks for entitlements the build flags grant implicitly: `--allow network.host` for a host-network step,
and `--allow fs.read=PATH` for every local path outside the working directory it reads (context,
Dockerfile, secrets, named contexts). build.py grants exactly those it put in the definition.

Results come from `--metadata-file` (image id, digest) and `--progress rawjson` (each step built or cached, its
times, a failed step's error and log), never from scraping plain logs.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .bakeerrors import STALL_HINT, CacheStalledError, bake_error
from .dockercli import Command, stream_docker
from .rawjson import Step, decode_line, parse_rawjson
from .stallwatch import TransferWatch

LAYER_COMPRESSIONS = ("uncompressed", "zstd", "gzip")


@dataclass
class BuildSpec:
    """One bake target: what `docker buildx build` would take for it."""

    context: Path
    dockerfile: Path
    target: str | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    build_contexts: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)  # id -> file
    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)
    network: str | None = None
    no_cache_filter: list[str] = field(default_factory=list)  # stages to re-run (e.g. --refresh-models)
    no_cache: bool = False  # run every step; cache imports are skipped too (a cold build)
    builder: str | None = None
    platform: str | None = None
    push: bool = False
    load: bool = True
    layer_compression: str | None = None  # uncompressed / zstd / gzip; None: the exporter's default (gzip)
    force_compression: bool = False  # recompress layers that already have a blob of another compression
    # Stop the build when a cache download makes no progress for this long (stallwatch); None: never.
    stall_seconds: float | None = None


def output_spec(spec: BuildSpec) -> str | None:
    """The `output` for a layer compression other than the exporter's default, or None (tags alone).

    `type=image` is the engine's image store with the docker driver (buildx names it from the tags), a push
    with `push=true`; another builder loads through `type=docker`. zstd needs OCI media types: the docker
    manifest has no zstd layer type, and BuildKit would write a non-standard one.
    """
    if spec.layer_compression is None:
        return None
    if spec.layer_compression not in LAYER_COMPRESSIONS:
        raise ValueError(f"layer compression {spec.layer_compression!r}: expected one of {LAYER_COMPRESSIONS}")
    kind = "docker" if spec.builder is not None and spec.load and not spec.push else "image"
    attrs = [f"type={kind}", f"compression={spec.layer_compression}"]
    attrs += ["force-compression=true"] if spec.force_compression else []
    attrs += ["oci-mediatypes=true"] if spec.layer_compression == "zstd" else []
    attrs += ["push=true"] if spec.push else []
    return ",".join(attrs)


def target_definition(spec: BuildSpec) -> dict[str, Any]:
    """One bake target, in bake's JSON form."""
    target: dict[str, Any] = {
        "context": str(spec.context),
        "dockerfile": str(spec.dockerfile),
        "tags": list(spec.tags),
        "args": dict(sorted(spec.build_args.items())),
        # No provenance attestation: it would record build args in the image index; nothing here needs it.
        "attest": ["type=provenance,disabled=true"],
    }
    if spec.target:
        target["target"] = spec.target
    if spec.build_contexts:
        target["contexts"] = dict(sorted(spec.build_contexts.items()))
    if spec.secrets:
        target["secret"] = [f"id={key},src={spec.secrets[key]}" for key in sorted(spec.secrets)]
    if spec.cache_from:
        target["cache-from"] = list(spec.cache_from)
    if spec.cache_to:
        target["cache-to"] = list(spec.cache_to)
    if spec.no_cache:
        target["no-cache"] = True
    elif spec.no_cache_filter:
        target["no-cache-filter"] = list(spec.no_cache_filter)
    if spec.network:
        target["network"] = spec.network
        if spec.network == "host":
            target["entitlements"] = ["network.host"]
    if spec.platform:
        target["platforms"] = [p.strip() for p in spec.platform.split(",") if p.strip()]
    output = output_spec(spec)
    if output is not None:
        target["output"] = [output]
    elif spec.push:
        target["output"] = ["type=image,push=true"]
    return target


def bake_definition(targets: Mapping[str, BuildSpec]) -> dict[str, Any]:
    return {"target": {name: target_definition(spec) for name, spec in targets.items()}}


def local_paths(targets: Mapping[str, BuildSpec]) -> list[str]:
    """Every local path the definition makes bake read (for `--allow fs.read=`)."""
    paths: set[str] = set()
    for spec in targets.values():
        paths.add(str(spec.context))
        paths.add(str(Path(spec.dockerfile).parent))
        paths.update(str(src) for src in spec.secrets.values())
        paths.update(v for v in spec.build_contexts.values() if "://" not in v and not v.startswith("target:"))
    return sorted(paths)


def bake_argv(targets: Mapping[str, BuildSpec], definition: Path, metadata: Path | None) -> Command:
    builders = {spec.builder for spec in targets.values()}
    if len(builders) > 1:
        raise ValueError(f"one bake runs on one builder, got {sorted(map(str, builders))}")
    cmd = Command(["docker", "buildx", "bake"])
    cmd.add("--builder", next(iter(builders)))
    cmd.add("--file", definition)
    if any(spec.network == "host" for spec in targets.values()):
        cmd.add("--allow", "network.host")
    for path in local_paths(targets):
        cmd.add("--allow", f"fs.read={path}")
    cmd.add("--metadata-file", metadata)
    cmd.add("--progress", "rawjson")
    cmd.extend(targets)
    return cmd


@dataclass
class BuildResult:
    """One target of a finished bake: its steps, its metadata, and this build's wall time for it."""

    steps: list[Step]
    metadata: dict[str, Any]
    seconds: float

    @property
    def image_id(self) -> str | None:
        value = self.metadata.get("containerimage.config.digest")
        return None if value is None else str(value)

    @property
    def digest(self) -> str | None:
        value = self.metadata.get("containerimage.digest")
        return None if value is None else str(value)


def run_bake(targets: Mapping[str, BuildSpec], *, trace: Path | None = None) -> dict[str, BuildResult]:
    """Run one bake of `targets` (name -> spec); a BuildResult per target. Raises a BuildxError subclass whose
    one-line message names the failed step (and model).

    A cache download that makes no progress for the specs' `stall_seconds` stops it (CacheStalledError).
    `trace`: a file that gets buildx's rawjson stream as it comes, one JSON document per line.
    """
    stall = min((s.stall_seconds for s in targets.values() if s.stall_seconds), default=None)
    watch = TransferWatch(stall) if stall else None
    trace_log = trace.open("w", encoding="utf-8") if trace is not None else contextlib.nullcontext()
    with tempfile.TemporaryDirectory(prefix="modelbake-bake-") as tmp, trace_log as log:
        definition, metadata_file = Path(tmp) / "bake.json", Path(tmp) / "metadata.json"
        definition.write_text(json.dumps(bake_definition(targets), indent=2, sort_keys=True))
        argv = [str(a) for a in bake_argv(targets, definition, metadata_file)]

        def on_line(line: str) -> None:
            if log is not None:
                log.write(line)
            doc = decode_line(line) if watch is not None else None
            if doc is not None and watch is not None:
                watch.feed(doc)

        began, started = datetime.now(UTC), time.perf_counter()
        done = stream_docker(argv, on_line, watch.stalled if watch is not None else None)
        seconds = time.perf_counter() - started
        steps, rest = parse_rawjson("".join(done.stderr))
        if done.stopped is not None:
            raise CacheStalledError(
                f"{'/'.join(targets)} build stopped: {done.stopped}", argv, done.returncode, rest[-5:], STALL_HINT
            )
        if done.returncode != 0:
            raise bake_error(list(targets), argv, done.returncode, steps, rest + done.stdout.splitlines())
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    if len(targets) == 1:  # bake names a step's target only when it builds several
        (name,) = targets
        return {name: BuildResult(steps, metadata.get(name, metadata), seconds)}
    window = (began, began + timedelta(seconds=seconds))
    return {
        name: BuildResult(mine, metadata.get(name, {}), target_seconds(mine, window))
        for name in targets
        for mine in [[s for s in steps if s.target == name]]
    }


def target_seconds(steps: list[Step], window: tuple[datetime, datetime]) -> float:
    """One target's wall time in this bake: from its first step to its last, counting only steps that ran in the
    bake's own `window`. A cached step can carry the times of the build that first ran it, so a span over every
    step once gave a target minutes the whole bake never took. Never more than the window."""
    slack = timedelta(seconds=2)  # the stream's times and the client's clock, rounded differently
    began, ended = window
    spans = [
        (s.started, s.completed)
        for s in steps
        if s.started and s.completed and s.started >= began - slack and s.completed <= ended + slack
    ]
    if not spans:
        return 0.0
    start = max(min(a for a, _ in spans), began)
    end = min(max(b for _, b in spans), ended)
    return max(0.0, (end - start).total_seconds())
