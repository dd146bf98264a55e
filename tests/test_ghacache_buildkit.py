"""BuildKit's real `type=gha` cache client against the emulator: export, forget locally, restore from it.

The engine's build cache is shared with other tests and with CI, so it is never wiped here: the test removes
only the records its own build made, found in `docker buildx du --verbose` by the per-test uuid that its RUN
step's description carries, and removes them with `docker buildx prune --filter id=<record id>` (which, with
buildx 0.13 and dockerd 26.1's builder, deletes exactly the named record).

No `--network host`: the cache client runs inside the daemon (buildkitd in dockerd, on the host's network
namespace), not in a build step, so it reaches the emulator on 127.0.0.1 without it.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from buildcache import cache_records, prune_records
from conftest import BASE_IMAGE
from modelbake.buildx import Step, parse_rawjson
from modelbake.ghacache import GhaCacheServer

pytestmark = pytest.mark.docker

LAYER_BYTES = 20 * 1024 * 1024
BUILD_TIMEOUT = 180  # the gha client has no HTTP timeout: never let a stuck build hang the session


def build(context: Path, tag: str, gha: GhaCacheServer, scope: str) -> list[Step]:
    argv = [
        "docker", "buildx", "build",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--tag", tag,
        "--cache-to", gha.cache_to(scope=scope, mode="max"),
        "--cache-from", gha.cache_from(scope=scope),
        "--provenance", "false",
        "--progress", "rawjson",
        str(context),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    steps, rest = parse_rawjson(proc.stderr)
    assert proc.returncode == 0, "\n".join(rest[-20:]) or proc.stderr[-2000:]
    return steps


def run_step(steps: list[Step], marker: str) -> Step:
    found = [s for s in steps if "RUN" in s.name and marker in s.name]
    assert found, [s.name for s in steps]
    return found[0]


def test_gha_cache_restores_the_layer_after_its_local_records_are_removed(docker_client, tmp_path):
    run_id = uuid.uuid4().hex
    tag = f"modelbake-test/ghacache:{run_id[:12]}"
    scope = f"modelbake-test-{run_id[:12]}"
    context = tmp_path / "ctx"
    context.mkdir()
    # New content every run (seeded by the uuid, which the step's description also carries).
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\n"
        "FROM ${BASE_IMAGE}\n"
        f"RUN python3 -c \"import random; random.seed('{run_id}'); "
        f"open('/blob.bin', 'wb').write(random.randbytes({LAYER_BYTES}))\"\n"
    )
    downloaded_digests: set[str] = set()
    with GhaCacheServer(tmp_path / "gha") as gha:
        try:
            steps = build(context, tag, gha, scope)
            assert not run_step(steps, run_id).cached
            assert gha.bytes_uploaded >= LAYER_BYTES  # random bytes do not compress
            keys = [e.key for e in gha.entries]
            assert any(k.startswith(f"index-{scope}-1-") for k in keys), keys
            assert any(k.startswith("buildkit-blob-1-sha256:") for k in keys), keys
            layers = docker_client.images.get(tag).attrs["RootFS"]["Layers"]

            # Forget this build locally: its tag, then only its own build cache records.
            docker_client.images.remove(tag)
            ours = [r["ID"] for r in cache_records() if run_id in r.get("Description", "")]
            assert ours, "no build cache record names the RUN step"
            prune_records(ours)
            assert not [r for r in cache_records() if run_id in r.get("Description", "")]

            gha.reset_counters()
            gha.clear_requests()
            steps = build(context, tag, gha, scope)
            for r in gha.requests:
                if r.path.startswith("/_archives/") and r.status in (200, 206):
                    entry = gha.store.get(int(r.path.split("/")[2]))
                    if entry is not None and entry.key.startswith("buildkit-blob-1-"):
                        downloaded_digests.add(entry.key.removeprefix("buildkit-blob-1-"))
            assert run_step(steps, run_id).cached, "the RUN step ran again instead of coming from the gha cache"
            assert gha.bytes_downloaded >= LAYER_BYTES
            assert downloaded_digests, [r.path for r in gha.requests]
            assert docker_client.images.get(tag).attrs["RootFS"]["Layers"] == layers
        finally:
            try:
                docker_client.images.remove(tag)
            except Exception:  # noqa: BLE001 - never built, or already removed
                pass
            # The records this test made: its RUN step's, and the layer it imported from the emulator (a digest
            # of uuid-seeded content, so no other build can own such a record).
            imported = {f"imported {d}" for d in downloaded_digests}
            prune_records(
                [
                    r["ID"]
                    for r in cache_records()
                    if run_id in r.get("Description", "") or r.get("Description") in imported
                ]
            )
