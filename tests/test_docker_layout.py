"""Models at the bottom (issue 16): the app image starts FROM the models image, on the real engine.

An image store unpacks a layer once per chain (the layer and every layer below it). With the models image's layers
at the very bottom of every app, the models image and each app built on it hold the same chains: one copy of each
model on disk per machine, whatever each app's base or dependencies.

- The app's bottom layers are the models image's, in order: the same diff ids, so the same chain ids; above them
  the base's root filesystem (one layer) and the venv; the image's config set by the Dockerfile.
- A second app with other dependencies adds no model byte to the image store: the snapshot directory holds each
  model file once (counted by the file's sha256 under containerd's snapshotter, not from `docker images`).
- A base bump changes the base layer and keeps every model layer's chain id.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, REPO, mirror_args, unavailable, wheelhouse_args
from modelbake.image.bake import BuildSpec
from testkit.buildx import run_build
from testkit.checkout import copy_checkout

pytestmark = pytest.mark.docker

# Where dockerd's containerd image store keeps the unpacked layers (ENVIRONMENT.md, checked on dockerd 28.5).
SNAPSHOTS = Path("/var/lib/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots")
# Dependencies of a second app: two small pure-Python packages of the image's lock, with their hashes.
OTHER_DEPS = ("more-itertools", "tqdm")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI chain ids of a layer stack, bottom first: what an image store keys an unpacked layer by."""
    chain: list[str] = []
    for diff in diff_ids:
        chain.append(diff if not chain else "sha256:" + hashlib.sha256(f"{chain[-1]} {diff}".encode()).hexdigest())
    return chain


def copies_on_disk(sha256: str, image_path: str) -> int:
    """How many unpacked snapshots hold a model file with these bytes at `image_path` (`/models/...`)."""
    if not SNAPSHOTS.is_dir():
        unavailable(f"{SNAPSHOTS} missing: the engine does not use the containerd image store's overlayfs snapshotter")
    found = 0
    for path in SNAPSHOTS.glob(f"*/fs{image_path}"):
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            found += 1
    return found


def lock_of(packages: tuple[str, ...]) -> str:
    """The entries of requirements/app.txt for `packages`, hashes and all: a smaller lock of the same kind."""
    out, keep = [], False
    for line in (REPO / "requirements/app.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            keep = line.split("==")[0] in packages
        if keep:
            out.append(line)
    assert sum(1 for line in out if "==" in line) == len(packages), out
    return "\n".join(out) + "\n"


def build_py(args: list[str], json_file: Path) -> dict:
    cmd = [sys.executable, str(REPO / "build.py"), *args, "--json", str(json_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_file.read_text())


@pytest.fixture(scope="module")
def stack(docker_client, tiny_tree, mirror, tmp_path_factory, request):
    """One models image (a Whisper checkpoint no other build has), the app on it, and a second app with other
    dependencies; the unique checkpoint's copies on disk after each."""
    from conftest import fresh_whisper_pin
    from modelbake.cli import main as modelbake
    from modelbake.manifest import load_manifest
    from modelbake.paths import image_paths

    work = tmp_path_factory.mktemp("layout")
    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = work / "models.toml"
    manifest.write_text(tiny_tree.manifest.read_text().replace(tiny_tree.whisper_sha256, sha))
    assert modelbake(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    whisper = next(s for s in load_manifest(manifest).select("test") if s.family == "whisper")
    checkpoint = image_paths(whisper)[0]
    run = uuid.uuid4().hex[:8]
    tags = {name: f"modelbake-test/layout-{name}:{run}" for name in ("models", "app", "other", "bumped", "base")}
    request.addfinalizer(lambda: [_remove(docker_client, tag) for tag in tags.values()])
    common = ["--manifest", str(manifest), "--profile", "test", "--models-tag", tags["models"], *mirror_args(mirror)]
    common += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    common += wheelhouse_args()

    models = build_py([*common, "--base-image", BASE_IMAGE, "--models-only"], work / "models.json")
    on_disk = {"models": copies_on_disk(sha, checkpoint)}
    app = build_py([*common, "--base-image", BASE_IMAGE, "--tag", tags["app"]], work / "app.json")
    on_disk["app"] = copies_on_disk(sha, checkpoint)

    other = copy_checkout(work / "other")
    (other / "requirements/app.txt").write_text(lock_of(OTHER_DEPS))
    args = [*common, "--base-image", BASE_IMAGE, "--context", str(other), "--tag", tags["other"]]
    second = build_py(args, work / "other.json")
    on_disk["other"] = copies_on_disk(sha, checkpoint)

    # A base bump: the same base with one more file, under a tag of its own.
    bump = work / "bump"
    bump.mkdir()
    (bump / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN echo {run} > /etc/base-bump\n")
    subprocess.run(["docker", "build", "-q", "-t", tags["base"], str(bump)], check=True, capture_output=True)
    args = [*common, "--base-image", tags["base"], "--context", str(other), "--tag", tags["bumped"]]
    bumped = build_py(args, work / "bumped.json")
    return {"sha": sha, "models": models, "app": app, "other": second, "bumped": bumped, "on_disk": on_disk}


def _remove(client, tag: str) -> None:
    try:
        client.images.remove(tag, force=True)
    except Exception:  # noqa: BLE001 - never built, or already gone
        pass


def test_the_apps_bottom_layers_are_the_models_image_by_diff_and_chain_id(stack, docker_client):
    models = stack["models"]["image"]["layers"]
    assert len(models) == 4  # one per model of the profile
    for name in ("app", "other", "bumped"):
        report = stack[name]
        layers = report["image"]["layers"]
        assert report["models_at_bottom"] is True and report["models_image"]["layers"] == models
        assert layers[: len(models)] == models, name
        assert chain_ids(layers)[: len(models)] == chain_ids(models), name
        # above them: the base's root filesystem and the venv, one layer each, then the app's few small layers
        # (entrypoint, manifest, code, and WORKDIR's directory entry)
        assert len(layers) - len(models) == 6, name
        assert all(m["layer"] == m["models_image_layer"] for m in report["models"]), name


def test_the_image_config_is_the_dockerfiles_own(stack, docker_client):
    """FROM the models image, the app inherits none of the base's config: the Dockerfile sets all of it."""
    config = docker_client.images.get(stack["app"]["image"]["tag"]).attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:") and "/usr/bin" in env["PATH"].split(":")
    assert env["LANG"] == "C.UTF-8" and env["PYTHONUNBUFFERED"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PYTHONPATH"] == "/app/src:/models/spacy/en_tiny_ner"  # the models image's MODELBAKE_SPACY_PATH
    assert config["User"] == "10001:10001" and config["WorkingDir"] == "/app"
    assert config["Entrypoint"] == ["/usr/local/bin/modelbake-entrypoint"] and config["Cmd"] == ["verify"]
    out = docker_client.containers.run(
        stack["app"]["image"]["tag"],
        [
            "sh",
            "-c",
            "id -u; stat -c '%u %a' /models/whisper/*.pt; stat -c %u /app; touch /models/x 2>&1 || echo read-only",
        ],
        network_mode="none",
        remove=True,
    ).decode()
    assert out.split("\n")[:3] == ["10001", "0 644", "0"] and "read-only" in out


def test_a_second_app_with_other_dependencies_adds_no_model_byte_on_disk(stack):
    """The unique checkpoint's copies on disk (BuildKit's own snapshot of the layer and the image store's) are
    all there once the models image is built: the app and an app with other dependencies add none."""
    on_disk = stack["on_disk"]
    assert on_disk["models"] >= 1 and on_disk["app"] == on_disk["models"] and on_disk["other"] == on_disk["models"]
    app, other = stack["app"]["image"]["layers"], stack["other"]["image"]["layers"]
    models = stack["models"]["image"]["layers"]
    assert app[len(models)] == other[len(models)]  # the same base's root filesystem: shared as well
    assert app[len(models) + 1] != other[len(models) + 1]  # other dependencies: another venv layer


def test_a_base_bump_keeps_every_model_layers_chain_id(stack):
    other, bumped = stack["other"]["image"]["layers"], stack["bumped"]["image"]["layers"]
    n = len(stack["models"]["image"]["layers"])
    assert chain_ids(bumped)[:n] == chain_ids(other)[:n]
    assert bumped[n] != other[n]  # the base's layer changed, and everything above it


def test_the_base_stage_run_again_gives_the_same_layer(docker_client, tmp_path):
    """The base's root filesystem is one layer of every app: it must come out the same blob when its stage runs
    again (a lost cache, another app's CI), or apps on one base and one models image share no base layer. Two
    builds of the stage from nothing (`--no-cache`), seconds apart: the same diff id, and useradd took its
    last-change day from SOURCE_DATE_EPOCH, not from the clock."""
    run = uuid.uuid4().hex[:8]
    tags = [f"modelbake-test/base-again:{run}-{n}" for n in (1, 2)]
    try:
        for tag in tags:
            spec = BuildSpec(context=REPO, dockerfile=REPO / "Dockerfile", target="base", tags=[tag], no_cache=True)
            run_build(replace(spec, build_args={"BASE_IMAGE": BASE_IMAGE}), name="base")
        layers = [docker_client.images.get(tag).attrs["RootFS"]["Layers"] for tag in tags]
        base = docker_client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]
        assert len(layers[0]) == len(base) + 1 and layers[0][: len(base)] == base  # the user's step: one layer
        assert layers[0] == layers[1]
        shadow = docker_client.containers.run(tags[0], ["grep", "^app:", "/etc/shadow"], remove=True).decode()
        # useradd took SOURCE_DATE_EPOCH=0 (it leaves the last-change day out), not the clock's day
        assert shadow.split(":")[2] == "", shadow
    finally:
        for tag in tags:
            _remove(docker_client, tag)
