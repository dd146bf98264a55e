"""Model layers through the remote caches on a real engine: restore after a wipe, reproducible, fault-tolerant.

"Wipe" means what a fresh CI runner has: no image and no build cache record of this build. So that the rest
of the engine's build cache survives (other tests and the next CI run reuse the app's deps layer), each
restore test builds on a base image of its own (the local base plus one tiny file: a new digest, so no
step of the build can match an older record) and then removes only the records created since it started.
It then shows the cause, not only the outcome: the wipe dropped the new model layer from the engine's content
store, and the restore read that layer's blob from the cache (tests/layerblobs.py, tests/filereads.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from filereads import ReadWatch
from layerblobs import NoContentStore, cache_blob_of, cache_layers, layer_content, wait_content_gone
from localregistry import Registry

from buildcache import fresh_base_image, prune_records_created_since, remove_image
from conftest import BASE_IMAGE, CA_BUNDLE, REPO, error_lines, mirror_args, unavailable
from testkit.ghacache import GhaCacheServer

pytestmark = pytest.mark.docker

BUILD_TIMEOUT = 600
MODEL_STAGES = ("fetch-whisper-tiny", "fetch-spacy-ner", "fetch-bart-map", "fetch-led-reduce")


@pytest.fixture
def fresh_base(images) -> str:
    """The local base image plus one tiny file: a new digest, so that nothing of this build is already cached."""
    tag = fresh_base_image(BASE_IMAGE, "modelbake-test/base", timeout=120)
    images.append(tag)
    return tag


@pytest.fixture(scope="module")
def content_store() -> None:
    """The engine's content store can be read (ctr, and the containerd image store)."""
    try:
        layer_content([])
    except NoContentStore as exc:
        unavailable(f"the engine's content store cannot be read: {exc}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1; the engine accepts plain HTTP to loopback."""
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry missing: apt-get install docker-registry (.ci/run installs it)")
    with Registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def build_py(args: list[str], json_file: Path, env: dict[str, str] | None = None) -> tuple[int, dict, str]:
    cmd = [sys.executable, str(REPO / "build.py"), *args, "--json", str(json_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env={**os.environ, **(env or {})})
    report = json.loads(json_file.read_text()) if json_file.is_file() and proc.returncode == 0 else {}
    return proc.returncode, report, proc.stderr


def models_args(manifest: Path, mirror, base: str, tag: str) -> list[str]:
    args = ["--manifest", str(manifest), "--profile", "test", "--models-only", "--base-image", base]
    args += ["--models-tag", tag, "--network", "host", *mirror_args(mirror)]
    return args + (["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else [])


def stage_status(report: dict) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in report["stages"] if s["build"] == "models"}


def layers(report: dict) -> dict[str, str]:
    return {m["id"]: m["layer"] for m in report["models"]}


@pytest.mark.parametrize("kind", ["gha", "local", "registry"])
def test_model_layers_come_back_from_the_cache_after_a_wipe(
    kind, request, docker_client, content_store, images, fresh_base, mirror, unique_manifest, tmp_path
):
    """Cold build exports; image and every build record of it removed, until the engine's content store no
    longer holds the new Whisper checkpoint's layer; the rebuild asks the mirror nothing and reads that layer's
    blob from the cache: the emulator served its entry (gha), the registry its blob (registry), the cache
    directory's blob file was read (local). (The other models' layers are the same tiny models other builds
    keep in the engine: only the fresh pin's layer is sure to be gone after a wipe.)"""
    started = datetime.now(UTC)
    tag = f"modelbake-test/models:{kind}-{uuid.uuid4().hex[:8]}"
    env: dict[str, str] = {}
    gha = registry = None
    if kind == "gha":
        gha = GhaCacheServer(tmp_path / "gha").start()
        request.addfinalizer(gha.stop)
        env = gha.runner_env()  # exactly a hosted runner's variables, ACTIONS_CACHE_URL refusing connections
        cache = "gha,scope=test"
    elif kind == "local":
        cache = f"local:{tmp_path / 'cache'}"
    else:
        registry = request.getfixturevalue("registry")
        cache = f"registry:{registry.host}/modelbake-test/cache"
        tag = f"{registry.host}/{tag}"  # and the models image itself is pushed there
    images.append(tag)
    args = models_args(unique_manifest, mirror, fresh_base, tag) + ["--cache", cache]
    args += ["--push"] if kind == "registry" else []

    mirror.clear_requests()
    rc, cold, err = build_py(args, tmp_path / "cold.json", env)
    assert rc == 0, err
    assert all(stage_status(cold)[s] == "built" for s in MODEL_STAGES), stage_status(cold)
    assert mirror.requests, "the cold build fetched nothing from the mirror"
    exports = [c for c in cold["caches"] if c["direction"] == "export"]
    assert exports, cold["caches"]
    whisper = next(m for m in cold["models"] if m["id"] == "whisper-tiny")
    assert layer_content([whisper["layer"]]), "the content store check cannot see the cold build's layer"
    blob = cache_blob_of(exported_layers(kind, gha, registry, tmp_path), whisper["layer"])
    assert blob, f"the {kind} cache holds no layer with diff id {whisper['layer']}"
    if gha is not None:
        assert gha.bytes_uploaded > sum(m["bytes"] for m in cold["models"]) * 0.5
        assert {r.path.split("/")[1] for r in gha.requests} == {"twirp", "_blob"}  # v2 only
        assert cold["gha_cache_bytes"]["models"] == 2 * sum(m["bytes"] for m in cold["models"])  # mode=max
        uploaded = gha.bytes_uploaded
    if registry is not None:
        name, _, reference = tag.partition("/")[2].rpartition(":")
        listed = httpx.get(f"http://{registry.host}/v2/{name}/tags/list", timeout=10).json()
        assert reference in listed["tags"], listed  # --push put the models image in the registry

    assert remove_image(tag)
    assert prune_records_created_since(started) > 0
    left = wait_content_gone([whisper["layer"]])
    assert not left, f"the wipe left the Whisper layer in the engine's content store: {sorted(left)}"

    mirror.clear_requests()
    if gha is not None:
        gha.reset_counters()
        gha.clear_requests()
    mark = registry.log_offset() if registry is not None else 0
    with ReadWatch(local_cache_dir(tmp_path) / "blobs" / "sha256") if kind == "local" else nullcontext() as reads:
        rc, warm, err = build_py(args, tmp_path / "warm.json", env)
    assert rc == 0, err
    assert all(stage_status(warm)[s] == "cached" for s in MODEL_STAGES), stage_status(warm)
    assert mirror.requests == [], [r.path for r in mirror.requests]
    assert layers(warm) == layers(cold)
    assert {c["direction"] for c in warm["caches"]} >= {"import"}, warm["caches"]
    assert layer_content([whisper["layer"]]), "the restored image's Whisper layer is not in the content store"
    if gha is not None:
        served = {e.key for e in gha.downloaded_entries()}
        assert f"buildkit-blob-1-{blob}" in served, sorted(served)
        assert gha.bytes_downloaded >= whisper["bytes"] * 0.9
        assert {r.path.split("/")[1] for r in gha.requests} == {"twirp", "_blob"}
        print(f"gha: {uploaded} bytes up on the cold build, {gha.bytes_downloaded} down on the restore")
    elif registry is not None:
        got = [r for r in registry.requests(mark) if r["method"] == "GET" and r["uri"].endswith(f"/blobs/{blob}")]
        assert [r["status"] for r in got] == [200] * len(got) and got, registry.requests(mark)
    else:
        assert blob.removeprefix("sha256:") in reads.read, sorted(reads.read)


def local_cache_dir(tmp_path: Path) -> Path:
    """The one scope directory build.py's `local:` cache made under `tmp_path/cache` (`<dir>/<scope>`)."""
    (index,) = (tmp_path / "cache").glob("*/index.json")
    return index.parent


def exported_layers(kind: str, gha, registry, tmp_path: Path) -> list[dict]:
    """The layers of the BuildKit cache config the cold build exported, read from the cache itself."""
    if kind == "gha":
        (index,) = [e for e in gha.entries if e.key.startswith("index-")]
        return cache_layers(json.loads(gha.store.data_path(index).read_bytes()), lambda d: {})
    if kind == "local":
        root = local_cache_dir(tmp_path)

        def read_blob(digest: str) -> dict:
            return json.loads((root / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_text())

        return cache_layers(json.loads((root / "index.json").read_text()), read_blob)
    name = "modelbake-test/cache"
    (reference,) = [t for t in registry_tags(registry, name) if t.startswith("models-")]
    _, manifest = registry.manifest(name, reference)
    return cache_layers(manifest, lambda digest: registry.blob_json(name, digest))


def registry_tags(registry, name: str) -> list[str]:
    return httpx.get(f"http://{registry.host}/v2/{name}/tags/list", timeout=10).json()["tags"]


def test_model_layers_are_identical_across_cold_builds(docker_client, images, mirror, tiny_locked, tmp_path):
    """Two builds with no cache at all: the same model layers, and the same models image (SOURCE_DATE_EPOCH)."""
    runs = {}
    for name in ("one", "two"):
        tag = f"modelbake-test/models:repro-{name}-{uuid.uuid4().hex[:8]}"
        images.append(tag)
        rc, report, err = build_py(
            models_args(tiny_locked, mirror, BASE_IMAGE, tag) + ["--no-cache"], tmp_path / f"{name}.json"
        )
        assert rc == 0, err
        assert all(stage_status(report)[s] == "built" for s in MODEL_STAGES)
        runs[name] = (layers(report), report["image"]["id"])
    assert runs["one"][0] == runs["two"][0]
    assert all(runs["one"][0].values()) and len(set(runs["one"][0].values())) == 4
    assert runs["one"][1] == runs["two"][1]  # config too: created time and history from SOURCE_DATE_EPOCH


@pytest.mark.parametrize("fault", ["down", "stall"])
def test_a_cache_service_down_or_stalled_gives_a_cold_build_with_one_warning(
    fault, docker_client, images, mirror, tiny_locked, tmp_path
):
    gha = GhaCacheServer(tmp_path / "gha").start()
    env = gha.runner_env()
    if fault == "down":
        gha.stop()
    else:
        gha.faults.stall = True
    try:
        tag = f"modelbake-test/models:fault-{uuid.uuid4().hex[:8]}"
        images.append(tag)
        args = models_args(tiny_locked, mirror, BASE_IMAGE, tag) + ["--cache", "gha", "--cache-timeout", "3"]
        began = time.monotonic()
        rc, report, err = build_py(args, tmp_path / "r.json", env)
        took = time.monotonic() - began
    finally:
        gha.stop()
    assert rc == 0, err
    assert took < 300
    url = env["ACTIONS_RESULTS_URL"]
    warning = f"GitHub Actions cache (v2 at {url}) unreachable (" + ("no answer from" if fault == "stall" else url)
    assert [w for w in report["warnings"] if "GitHub Actions cache" in w] == [
        next(w for w in report["warnings"] if w.startswith(warning))
    ], report["warnings"]
    assert f"warning: {warning}" in err
    assert docker_client.images.get(tag).id == report["image"]["id"]


def test_a_blob_download_that_stalls_mid_build_is_bounded(
    docker_client, images, fresh_base, mirror, unique_manifest, tmp_path
):
    """The service answers (the probe passes) but the layer blobs never come: the build must not hang.

    build.py watches the transfer and stops the build after --cache-timeout without progress: one error line
    naming the blob, exit 1, bounded time. (No rebuild in the same daemon: it keeps the stalled download,
    and a rebuild of the same reproducible layer waits on it; see buildx.CacheStalledError.)
    """
    started = datetime.now(UTC)
    tag = f"modelbake-test/models:stall-{uuid.uuid4().hex[:8]}"
    images.append(tag)
    with GhaCacheServer(tmp_path / "gha") as gha:
        env = gha.runner_env()
        args = models_args(unique_manifest, mirror, fresh_base, tag) + ["--cache", "gha", "--cache-timeout", "5"]
        rc, cold, err = build_py(args, tmp_path / "cold.json", env)
        assert rc == 0, err
        assert remove_image(tag)
        assert prune_records_created_since(started) > 0

        gha.faults.stall_downloads = "buildkit-blob-"  # the index comes through; no layer blob does
        began = time.monotonic()
        rc, _, err = build_py(args, tmp_path / "warm.json", env)
        took = time.monotonic() - began
        stalled = [r for r in gha.requests if r.path.startswith("/_blob/download") and r.status == 0]
    assert stalled, "no blob download reached the stalled server"
    assert rc == 1 and took < 120, (rc, took, err)
    errors = error_lines(err)
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("error: models build stopped: the download of blob sha256:")
    assert re.search(r"from the cache stopped at [\d,]+ of [\d,]+ bytes for \d+ s$", errors[0]), errors[0]
    assert "hint: the cache service stalled mid-transfer" in err


def test_an_up_to_date_models_image_is_not_rebuilt(docker_client, images, mirror, tiny_locked, tmp_path):
    """The default tag names the lock hash: when that image exists, build.py goes straight to the app."""
    from modelbake.lockfile import lock_hash

    tag = f"modelbake/models:test-{lock_hash(tiny_locked.with_suffix('.lock'))}"
    images.append(tag)
    args = models_args(tiny_locked, mirror, BASE_IMAGE, tag)
    args = args[: args.index("--models-tag")] + args[args.index("--models-tag") + 2 :]  # the default tag
    rc, first, err = build_py(args, tmp_path / "first.json")
    assert rc == 0, err
    assert first["models_image"]["tag"] == tag
    rc, again, err = build_py(args, tmp_path / "again.json")
    assert rc == 0, err
    assert "is up to date with the lock: not rebuilt" in err
    assert not [s for s in again["stages"] if s["build"] == "models"] and again["durations"]["models build"] == 0.0
    assert layers(again) == layers(first)
    rc, refreshed, err = build_py(args + ["--refresh-models"], tmp_path / "refreshed.json")
    assert rc == 0 and "not rebuilt" not in err
    assert all(stage_status(refreshed)[s] == "built" for s in MODEL_STAGES)
