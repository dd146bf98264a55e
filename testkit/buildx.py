"""One `docker buildx build` of a single Dockerfile, for tests and the benchmark (a naive Dockerfile, a deps layer
alone): build.py itself always runs one bake (modelbake.image.bake), so this runner is not part of the product.

It takes the product's `BuildSpec` and reads the progress stream and failures with the product's own code
(modelbake.image.rawjson, modelbake.image.bakeerrors), so a test of a single build sees what build.py would.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelbake.image.bake import BuildResult, BuildSpec, output_spec
from modelbake.image.bakeerrors import bake_error
from modelbake.image.dockercli import Command, stream_docker
from modelbake.image.rawjson import parse_rawjson


def build_argv(spec: BuildSpec, metadata_file: Path | None = None, progress: str = "rawjson") -> Command:
    cmd = Command(["docker", "buildx", "build"])
    cmd.add("--builder", spec.builder)
    cmd.add("--file", spec.dockerfile)
    cmd.add("--target", spec.target)
    cmd.add_each("--tag", spec.tags)
    cmd.add("--platform", spec.platform)
    for key in sorted(spec.build_args):
        cmd.add("--build-arg", f"{key}={spec.build_args[key]}")
    for name in sorted(spec.build_contexts):
        cmd.add("--build-context", f"{name}={spec.build_contexts[name]}")
    for secret_id in sorted(spec.secrets):
        cmd.add("--secret", f"id={secret_id},src={spec.secrets[secret_id]}")
    cmd.add_each("--cache-from", spec.cache_from)
    cmd.add_each("--cache-to", spec.cache_to)
    cmd.flag("--no-cache", spec.no_cache)
    if spec.no_cache_filter and not spec.no_cache:
        cmd.add("--no-cache-filter", ",".join(spec.no_cache_filter))
    if spec.network:
        cmd.add("--network", spec.network)
        if spec.network == "host":
            cmd.add("--allow", "network.host")
    cmd.add("--provenance", "false")
    output = output_spec(spec)
    if output is not None:
        cmd.add("--output", output)  # says push/load itself: buildx refuses --push or --load beside --output
    elif not spec.tags and not spec.push:
        cmd.add("--output", "type=cacheonly")  # no name, no image: the build only fills the build cache
    else:
        cmd.flag("--push", spec.push)
        cmd.flag("--load", spec.load and not spec.push and spec.builder is not None)
    cmd.add("--metadata-file", metadata_file)
    cmd.add("--progress", progress)
    cmd.append(str(spec.context))
    return cmd


def run_build(spec: BuildSpec, *, echo: Callable[[str], None] | None = None, name: str = "build") -> BuildResult:
    """Run one build; a BuildxError (bakeerrors) whose one line names the failed step, like build.py's."""
    with tempfile.TemporaryDirectory(prefix="testkit-buildx-") as tmp:
        metadata_file = Path(tmp) / "metadata.json"
        argv = [str(a) for a in build_argv(spec, metadata_file)]
        started = time.perf_counter()
        done = stream_docker(argv, echo or (lambda line: None))
        seconds = time.perf_counter() - started
        steps, rest = parse_rawjson("".join(done.stderr))
        if done.returncode != 0:
            raise bake_error([name], argv, done.returncode, steps, rest + done.stdout.splitlines())
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    return BuildResult(steps, metadata, seconds)
