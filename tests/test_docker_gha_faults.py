"""build.py with real BuildKit and the gha cache failing now and then, as GitHub's and Azure's do: it stays warm.

One cold build exports the models image to the emulator, with exactly a runner's variables. Then, for each
fault: the image and the build's own cache records are removed (a fresh runner), the fault is switched on,
and build.py builds again. The probe meets the fault first (on the cache index), BuildKit then meets it on
every model layer blob; both must get through, so that the build is warm: no model request at the mirror, the
model layers' blobs served by the emulator, no "building without it" warning.

- refused: each blob's first GET answers 403 AuthenticationFailed (a URL that ran out before its use);
- busy: each blob's first GET answers 503 ServerBusy (the Azure SDK waits about 10 s, then tries again);
- reset: each blob's first GET has its connection reset;
- throttled: each key's first twirp call answers 429 resource_exhausted with Retry-After 1;
- expired: signed URLs live 5 s, and each blob's first GET answers 503: BuildKit's retry 8-13 s later
  meets its URL expired (403) and asks for a fresh one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_docker_cache import MODEL_STAGES, build_py, layers, models_args, stage_status

from buildcache import cache_records, created_at, fresh_base_image, prune_records
from conftest import BASE_IMAGE, fresh_whisper_pin, mirror_args, removed_after
from testkit.ghacache import Faults, GhaCacheServer

pytestmark = pytest.mark.docker


def _expired(faults: Faults) -> None:
    faults.url_ttl = 5
    faults.busy_downloads()


FAULTS: dict[str, Callable[[Faults], None]] = {
    "refused": lambda f: f.refuse_downloads(),
    "busy": lambda f: f.busy_downloads(),
    "reset": lambda f: f.reset_downloads(),
    "throttled": lambda f: f.throttle(retry_after=1),
    "expired": _expired,
}
# What the request log shows for a key that met the fault and got through: the faults met, in order.
MET = {
    "refused": ["refused"],
    "busy": ["busy"],
    "reset": ["reset"],
    "throttled": ["throttled"],
    "expired": ["busy", "expired"],
}


@dataclass
class Exported:
    """The emulator holding one cold build's export, and what a warm build needs to be compared with it."""

    gha: GhaCacheServer
    args: list[str]
    env: dict[str, str]
    tag: str
    base_id: str  # the uuid in the module's base image's own step
    cold: dict = field(default_factory=dict)
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)  # when each of its builds ran

    def build(self, json_file: Path) -> tuple[int, dict, str]:
        began = datetime.now(UTC)
        try:
            return build_py(self.args, json_file, self.env)
        finally:
            self.windows.append((began, datetime.now(UTC)))


@pytest.fixture(scope="module")
def exported(docker_client, mirror, tiny_tree, tiny_locked, tmp_path_factory, request):
    """A cold models build with a Whisper pin no build has seen, on a base image of its own, exported to the
    emulator once for every fault of the module."""
    from modelbake.cli import main as modelbake

    work = tmp_path_factory.mktemp("gha-faults")
    manifest = work / "models.toml"
    manifest.write_text(
        tiny_tree.manifest.read_text().replace(tiny_tree.whisper_sha256, fresh_whisper_pin(tiny_tree, request))
    )
    assert modelbake(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    created = removed_after(docker_client)
    tags = next(created)
    base = fresh_base_image(BASE_IMAGE, "modelbake-test/base", timeout=300)
    tag = f"modelbake-test/models:ghafault-{uuid.uuid4().hex[:8]}"
    tags += [tag, base]
    gha = GhaCacheServer(work / "gha").start()
    env = gha.runner_env()  # a hosted runner's variables, ACTIONS_CACHE_URL refusing connections
    args = models_args(manifest, mirror, base, tag) + ["--cache", "gha,scope=test"]
    state = Exported(gha, args, env, tag, base.rsplit(":", 1)[1])
    try:
        mirror.clear_requests()
        rc, state.cold, err = state.build(work / "cold.json")
        assert rc == 0, err
        assert all(stage_status(state.cold)[s] == "built" for s in MODEL_STAGES), stage_status(state.cold)
        assert mirror.requests, "the cold build fetched nothing from the mirror"
        assert set(model_blob_keys(state.cold)) <= {e.key for e in gha.entries}  # every model layer went up
        yield state
    finally:
        gha.stop()
        forget(docker_client, state)
        next(created, None)  # removes the tags


def model_blob_keys(report: dict) -> list[str]:
    """The gha keys of the model layers' blobs (uncompressed layers: the blob digest is the layer's)."""
    return [f"buildkit-blob-1-{digest}" for digest in layers(report).values()]


def forget(docker_client, state: Exported) -> None:
    """What a fresh runner lacks: the models image, and the build cache records of this module's builds, found
    without touching what other builds on the engine made at the same time:

    - the records on the module's own base image (its `echo <uuid>` step and everything above it);
    - the models stage's records made while one of the module's builds ran;
    - the record of the new Whisper layer imported from the cache (its digest is this module's alone);
    - every record built on one of those: the other models' layers are imported on top of the Whisper layer
      (and carry their first build's time, from the cache's `buildkit/createdat`, so no time window finds them).
    """
    try:
        docker_client.images.remove(state.tag, force=True)
    except Exception:  # noqa: BLE001 - not built, or already removed
        pass
    whisper = f"imported {layers(state.cold)['whisper-tiny']}" if state.cold else None
    for _ in range(6):  # a record another one still needs goes in a later round
        records = cache_records()
        ours = {r["ID"] for r in records if _seed(r, state, whisper)}
        grown = True
        while grown:
            before = len(ours)
            ours |= {r["ID"] for r in records if set(r.get("Parents") or ()) & ours}
            grown = len(ours) > before
        if not ours:
            return
        prune_records(ours)
        if ours & {r["ID"] for r in cache_records()} == ours:
            return  # nothing more goes away (in use by a running build)


def _seed(record: dict, state: Exported, whisper: str | None) -> bool:
    description = record.get("Description", "")
    if state.base_id in description or description == whisper:
        return True
    made = created_at(record)
    return description.startswith("[models ") and made is not None and any(a <= made <= b for a, b in state.windows)


def faults_met(gha: GhaCacheServer, key: str, method: str) -> list[str]:
    """The faults the `method` requests about `key` met, in order, up to its first good answer."""
    met = []
    for r in gha.requests:
        if r.key != key or r.method != method:
            continue
        if r.fault:
            met.append(r.fault)
        elif r.status in (200, 206):
            return met
    return met + ["<no good answer>"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_warm_build_stays_warm_through_a_transient_cache_fault(exported, fault, docker_client, mirror, tmp_path):
    gha = exported.gha
    forget(docker_client, exported)
    gha.faults.clear()
    FAULTS[fault](gha.faults)
    gha.clear_requests()
    gha.reset_counters()
    mirror.clear_requests()
    began = time.monotonic()
    rc, warm, err = exported.build(tmp_path / "warm.json")
    took = time.monotonic() - began
    gha.faults.clear()
    assert rc == 0, err
    assert "building without it" not in err, err
    assert not [w for w in warm["warnings"] if "GitHub Actions cache" in w], warm["warnings"]
    assert all(stage_status(warm)[s] == "cached" for s in MODEL_STAGES), stage_status(warm)
    assert mirror.requests == [], [r.path for r in mirror.requests]
    assert layers(warm) == layers(exported.cold)

    # The new Whisper layer's bytes came from the cache (the other models' layers hold bytes other builds made
    # too, which the engine's content store may still have: BuildKit fetches a blob only when it lacks it).
    whisper = next(m for m in exported.cold["models"] if m["id"] == "whisper-tiny")
    fresh = f"buildkit-blob-1-{whisper['layer']}"
    downloaded = [
        k for k in model_blob_keys(exported.cold) if any(r.key == k and r.method == "GET" for r in gha.requests)
    ]
    assert fresh in downloaded, downloaded
    assert gha.bytes_downloaded >= whisper["bytes"]

    # The fault was met and got through: by the probe on the cache index, by BuildKit on each model layer.
    method = "POST" if fault == "throttled" else "GET"
    index = next(r.key for r in gha.requests if r.method == method and r.key.startswith("index-"))
    assert faults_met(gha, index, method) == MET[fault][:1], index  # the probe's: one try, then a fresh one
    assert {key: faults_met(gha, key, method) for key in downloaded} == {key: MET[fault] for key in downloaded}
    print(f"{fault}: warm build in {took:.0f} s, {gha.bytes_downloaded} bytes from the cache")
