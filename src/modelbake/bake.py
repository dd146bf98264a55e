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
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .buildx import BuildResult, BuildSpec, CacheStalledError, Command, Echo, _error, _pump, output_spec
from .rawjson import Step, parse_rawjson
from .transferwatch import TransferWatch

STALL_HINT = (
    "the cache service stalled mid-transfer and the daemon still holds that download: re-run the job (a fresh "
    "runner), or build here without --cache, after restarting dockerd"
)


def target_definition(spec: BuildSpec) -> dict[str, Any]:
    """One bake target with the fields `build_argv` would pass to `docker buildx build`."""
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


def bake_definition(specs: Mapping[str, BuildSpec]) -> dict[str, Any]:
    return {"target": {name: target_definition(spec) for name, spec in specs.items()}}


def local_paths(specs: Mapping[str, BuildSpec]) -> list[str]:
    """Every local path the definition makes bake read (for `--allow fs.read=`)."""
    paths: set[str] = set()
    for spec in specs.values():
        paths.add(str(spec.context))
        paths.add(str(Path(spec.dockerfile).parent))
        paths.update(str(src) for src in spec.secrets.values())
        paths.update(v for v in spec.build_contexts.values() if "://" not in v and not v.startswith("target:"))
    return sorted(paths)


def bake_argv(specs: Mapping[str, BuildSpec], definition: Path, metadata: Path | None) -> Command:
    builders = {spec.builder for spec in specs.values()}
    if len(builders) > 1:
        raise ValueError(f"one bake runs on one builder, got {sorted(map(str, builders))}")
    cmd = Command(["docker", "buildx", "bake"])
    cmd.add("--builder", next(iter(builders)))
    cmd.add("--file", definition)
    if any(spec.network == "host" for spec in specs.values()):
        cmd.add("--allow", "network.host")
    for path in local_paths(specs):
        cmd.add("--allow", f"fs.read={path}")
    cmd.add("--metadata-file", metadata)
    cmd.add("--progress", "rawjson")
    cmd.extend(specs)
    return cmd


def run_bake(specs: Mapping[str, BuildSpec], *, echo: Echo | None = None) -> dict[str, BuildResult]:
    """Run one bake of `specs` (target name -> spec); a BuildResult per target (its steps, its metadata).

    A cache download that makes no progress for the specs' `stall_seconds` stops it (CacheStalledError).
    """
    stall = min((s.stall_seconds for s in specs.values() if s.stall_seconds), default=None)
    with tempfile.TemporaryDirectory(prefix="modelbake-bake-") as tmp:
        definition, metadata_file = Path(tmp) / "bake.json", Path(tmp) / "metadata.json"
        definition.write_text(json.dumps(bake_definition(specs), indent=2, sort_keys=True))
        argv = [str(a) for a in bake_argv(specs, definition, metadata_file)]
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        chunks: list[str] = []
        stalled = _pump(proc, chunks, TransferWatch(stall) if stall else None, echo)
        out = proc.stdout.read() if proc.stdout else ""
        seconds = time.perf_counter() - started
        steps, rest = parse_rawjson("".join(chunks))
        if stalled is not None:
            label = "/".join(s.label for s in specs.values())
            raise CacheStalledError(f"{label} build stopped: {stalled}", argv, proc.returncode, rest[-5:], STALL_HINT)
        if proc.returncode != 0:
            failed = failed_step(steps, list(specs))
            spec = specs.get(failed.target or "", next(iter(specs.values()))) if failed else next(iter(specs.values()))
            raise _error(spec, argv, proc.returncode, steps, rest + out.splitlines())
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    if len(specs) == 1:  # bake names a step's target only when it builds several
        (name,) = specs
        return {name: BuildResult(argv, steps, metadata.get(name, metadata), seconds)}
    return {
        name: BuildResult(argv, mine, metadata.get(name, {}), _span(mine))
        for name in specs
        for mine in [[s for s in steps if s.target == name]]
    }


def failed_step(steps: list[Step], targets: list[str]) -> Step | None:
    """The step that failed the bake (not one cancelled because of it). A step the targets share comes under
    each (see parse_rawjson): it is named as the first target's (the models target, whose step it is), not as
    whichever target the stream reported first."""
    order = {name: i for i, name in enumerate(targets)}
    errors = [s for s in steps if s.error and not s.error.startswith("context canceled")]
    return min(errors, key=lambda s: order.get(s.target or "", len(order)), default=None)


def _span(steps: list[Step]) -> float:
    starts = [s.started for s in steps if s.started]
    ends = [s.completed for s in steps if s.completed]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
