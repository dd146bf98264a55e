"""BuildKit's real `type=gha` client against the v2 emulator, driven by exactly what a runner hands a step.

The build gets `ACTIONS_CACHE_SERVICE_V2=True`, `ACTIONS_RESULTS_URL`, `ACTIONS_RUNTIME_TOKEN`, and an
`ACTIONS_CACHE_URL` as well: here it points at the emulator too, which answers the retired v1 API with 404 and
logs it, so the test can show that not one v1 request was made. buildx reads the variables itself
(`--cache-to type=gha,scope=...` carries no url or token), as it does on GitHub.

The engine's build cache is shared with other tests and with CI, so it is never wiped here: the test removes
only the records its own build made (found by the per-test uuid its RUN step carries).

No `--network host`: the cache client runs inside the daemon (buildkitd in dockerd, on the host's network
namespace), not in a build step, so it reaches the emulator on 127.0.0.1 without it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from buildcache import cache_records, prune_records
from conftest import BASE_IMAGE
from modelbake.rawjson import Step, parse_rawjson
from testkit.ghacache import GhaCacheServer

pytestmark = pytest.mark.docker

LAYER_BYTES = 20 * 1024 * 1024
BUILD_TIMEOUT = 180  # the gha client has no HTTP timeout: never let a stuck build hang the session


def build(context: Path, tag: str, gha: GhaCacheServer, scope: str) -> list[Step]:
    argv = [
        "docker", "buildx", "build",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--tag", tag,
        "--cache-to", f"type=gha,scope={scope},mode=max",
        "--cache-from", f"type=gha,scope={scope}",
        "--provenance", "false",
        "--progress", "rawjson",
        str(context),
    ]  # fmt: skip
    env = {**os.environ, **gha.runner_env(legacy_url=gha.url + "legacy/")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env)
    steps, rest = parse_rawjson(proc.stderr)
    assert proc.returncode == 0, "\n".join(rest[-20:]) or proc.stderr[-2000:]
    return steps


def run_step(steps: list[Step], marker: str) -> Step:
    found = [s for s in steps if "RUN" in s.name and marker in s.name]
    assert found, [s.name for s in steps]
    return found[0]


def test_gha_v2_export_then_restore_surviving_an_expired_signed_url(docker_client, tmp_path):
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
    with GhaCacheServer(tmp_path / "gha") as gha:
        try:
            steps = build(context, tag, gha, scope)
            assert not run_step(steps, run_id).cached
            assert gha.bytes_uploaded >= LAYER_BYTES  # random bytes do not compress
            paths = [r.path for r in gha.requests]
            assert not [p for p in paths if "_apis/artifactcache" in p], "a v1 request was made"
            assert {p.split("/")[1] for p in paths} == {"twirp", "_blob"}, paths
            assert any(p.endswith(".CacheService/CreateCacheEntry") for p in paths)
            assert any("comp=blocklist" in p for p in paths)  # the 20 MiB layer went up in 1 MiB blocks
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

            # The first layer blob's signed URL runs out between the lookup and the download: 403, as Azure
            # answers an expired SAS; BuildKit must ask the service for a fresh URL and go on.
            gha.reset_counters()
            gha.clear_requests()
            gha.faults.expire_before_download = "buildkit-blob-"
            steps = build(context, tag, gha, scope)
            assert run_step(steps, run_id).cached, "the RUN step ran again instead of coming from the gha cache"
            downloads = [(r.path.split("?")[0], r.status) for r in gha.requests if r.path.startswith("/_blob/download")]
            expired = [path for path, status in downloads if status == 403]
            assert len(expired) == 1, downloads
            assert (expired[0], 200) in downloads or (expired[0], 206) in downloads  # the same blob, re-asked
            assert gha.bytes_downloaded >= LAYER_BYTES
            assert not [r for r in gha.requests if "_apis/artifactcache" in r.path]
            assert docker_client.images.get(tag).attrs["RootFS"]["Layers"] == layers
        finally:
            try:
                docker_client.images.remove(tag)
            except Exception:  # noqa: BLE001 - never built, or already removed
                pass
            # The records this test made: its RUN step's, and the layer it imported from the emulator (a digest
            # of uuid-seeded content, so no other build can own such a record).
            imported = {f"imported {e.key.removeprefix('buildkit-blob-1-')}" for e in gha.entries}
            prune_records(
                [
                    r["ID"]
                    for r in cache_records()
                    if run_id in r.get("Description", "") or r.get("Description") in imported
                ]
            )
