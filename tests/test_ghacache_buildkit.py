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

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from buildcache import cache_records, prune_records
from conftest import BASE_IMAGE, REPO
from modelbake.cache.ghaenv import CLIENT_VERSION, resolve
from modelbake.cache.ghaprobe import TWIRP_SERVICE
from modelbake.cache.spec import gha_scope, models_scope, parse_cache, specs_for
from modelbake.image.rawjson import Step, parse_rawjson
from testkit.ghacache import GhaCacheServer, make_token

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


# --- the index key: what BuildKit writes is what build.py's probe looks up ------------------------------------

RUNNER_VARIABLES = {"ACTIONS_CACHE_SERVICE_V2", "ACTIONS_RESULTS_URL", "ACTIONS_RUNTIME_TOKEN"}


@pytest.fixture
def served_gha(tmp_path):
    """`python -m testkit.ghacache serve` as its own process: (its store's root, the variables it printed)."""
    root = tmp_path / "served-gha"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.ghacache", "serve", "--root", str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = dict(proc.stdout.readline().strip().partition("=")[::2] for _ in RUNNER_VARIABLES)
        yield root, printed
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def index_entries(root: Path) -> list[dict]:
    """The finalized index entries in the emulator's store (`entries/<id>.json`, read from disk)."""
    entries = [json.loads(p.read_text()) for p in sorted((root / "entries").glob("*.json"))]
    return [e for e in entries if e["key"].startswith("index-")]


@pytest.mark.parametrize("event", ["push", "pull_request"])
def test_the_index_key_buildkit_writes_is_the_one_build_py_looks_up(event, served_gha, docker_client, tmp_path):
    """A `--cache gha` build's models export, with exactly the variables a runner gives a step: BuildKit's own
    gha exporter writes the scope's index under the key modelbake computes (ghaenv.index_key of cachespec's
    scope), and the probe's lookup of that key, with that token, is a hit. A pull request's token (read on
    main, write on its merge ref) checks which of the token's scopes names the key."""
    root, printed = served_gha
    assert set(printed) == RUNNER_VARIABLES, printed
    env = dict(printed)
    if event == "pull_request":
        env["ACTIONS_RUNTIME_TOKEN"] = make_token([("refs/heads/main", 1), "refs/pull/7/merge"])
    run_id = uuid.uuid4().hex
    pin = run_id[:16]  # stands in for a lock hash
    backend = parse_cache("gha")
    backend.gha_version = resolve(env).version
    specs = specs_for([backend], "models", "test", pin, environ=env)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {run_id} > /run-id\n")
    tag = f"modelbake-test/ghakey:{run_id[:12]}"
    argv = ["docker", "buildx", "build", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "--tag", tag,
            "--provenance", "false", "--progress", "plain"]  # fmt: skip
    for spec in specs.cache_to:
        argv += ["--cache-to", spec]
    runner = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_")} | env
    try:
        proc = subprocess.run([*argv, str(context)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=runner)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # BuildKit names each version of the index `<key>#<n>` (the next free n); lookups match by prefix.
        written = [e["key"] for e in index_entries(root)]
        expected = resolve(env).index_key(gha_scope(backend, models_scope("test", pin)))
        found = [k.partition("#")[::2] for k in written]
        assert found == [(expected, "1")], f"BuildKit wrote {written}, build.py looks up {expected}"

        answer = httpx.post(
            f"{env['ACTIONS_RESULTS_URL'].rstrip('/')}/{TWIRP_SERVICE}/GetCacheEntryDownloadURL",
            json={"key": expected, "restore_keys": [expected], "version": CLIENT_VERSION},
            headers={"Authorization": f"Bearer {env['ACTIONS_RUNTIME_TOKEN']}"},
            timeout=10,
        ).json()
        assert answer.get("ok") is True and answer.get("matched_key") == written[0], answer
    finally:
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001 - never built
            pass
        prune_records([r["ID"] for r in cache_records() if run_id in r.get("Description", "")])
