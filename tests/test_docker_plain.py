"""Plain Docker, no build.py: `docker build` of the committed Dockerfiles, models image then the app on it, and
`docker buildx bake` of docker-bake.hcl; the same layer stack as build.py's.

build.py adds mirrors, secrets, caches and reports, never necessity. These tests build from a copy of the
repository whose Dockerfile.models was regenerated for the tiny manifest (what `make dockerfile` does for the
real one), with the local mirror given as the `mirrors` secret, as a person would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, WHEELHOUSE
from modelbake.cli import main as modelbake
from testkit.checkout import copy_checkout

pytestmark = pytest.mark.docker

# The plain `docker build` commands' inputs: no build.py, and the manifest comes from the tiny models.
PLAIN_FILES = ("pyproject.toml", "requirements", "src", "docker", "Dockerfile", "Dockerfile.models", ".dockerignore",
               "docker-bake.hcl", "build.py")  # fmt: skip


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, tiny_locked, mirror) -> Path:
    """A copy of the repository for the tiny manifest, with its Dockerfiles regenerated, and a mirrors file."""
    copy = copy_checkout(tmp_path_factory.mktemp("checkout"), PLAIN_FILES)
    shutil.copy(tiny_locked, copy / "models.toml")
    shutil.copy(tiny_locked.with_suffix(".lock"), copy / "models.lock")
    assert modelbake(["dockerfile", "--manifest", str(copy / "models.toml"), "--root", str(copy)]) == 0
    (copy / "mirrors.toml").write_text(
        "[mirrors]\n" + "".join(f'{family} = "{url}"\n' for family, url in sorted(mirror.mirrors.items()))
    )
    return copy


def docker(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["docker", *args], cwd=cwd, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def model_layers(docker_client, models_tag: str, checkout: Path, tag: str | None = None) -> dict[str, str | None]:
    """Each model's layer in `tag` (default: the models image), found the way build.py's report finds it: the
    models image's history entry of each layer's COPY, and the same diff id in `tag`."""
    from modelbake.image.layers import DEFAULT_FILE_LAYERS_OVER, plan_layers
    from modelbake.image.report import find_model_layers
    from modelbake.lockfile import read_lock
    from modelbake.manifest import load_manifest

    manifest = load_manifest(checkout / "models.toml")
    specs = manifest.select(None)
    layers = plan_layers(specs, read_lock(manifest.lock_path), DEFAULT_FILE_LAYERS_OVER)
    models = docker_client.images.get(models_tag)
    final = docker_client.images.get(tag) if tag else models
    return {m.id: m.layer for m in find_model_layers(models, specs, layers, final=final)}


def layers_of(docker_client, tag: str) -> list[str]:
    return list(docker_client.images.get(tag).attrs["RootFS"]["Layers"])


@pytest.fixture(scope="module")
def plain(docker_client, checkout, tmp_path_factory):
    """The models image and the app on it, each built by plain `docker build`; removed afterwards."""
    run = uuid.uuid4().hex[:8]
    models, app = f"modelbake-test/plain-models:{run}", f"modelbake-test/plain-app:{run}"
    ca = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    try:
        docker(
            "build", "-f", "Dockerfile.models", "-t", models, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--secret", "id=mirrors,src=mirrors.toml", *ca, "--network", "host", ".",
            cwd=checkout,
        )  # fmt: skip
        wheels = ["--build-context", f"wheels={WHEELHOUSE}"] if WHEELHOUSE.is_dir() else []
        docker(
            "build", "-t", app, "--build-arg", f"MODELS_IMAGE={models}", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg", "MODELBAKE_PROFILE=", *wheels, *ca, "--network", "host", ".",
            cwd=checkout,
        )  # fmt: skip
        yield {"models": models, "app": app}
    finally:
        for tag in (models, app):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_plain_docker_build_of_both_dockerfiles(docker_client, checkout, plain):
    models, app = plain["models"], plain["app"]
    in_models = model_layers(docker_client, models, checkout)
    # one layer per model, nothing else
    assert sorted(in_models.values()) == sorted(layers_of(docker_client, models))
    in_app = model_layers(docker_client, models, checkout, tag=app)
    # with plain docker build too, the app stands on the models image: its bottom layers are the models image's
    assert in_app == in_models and all(in_app.values()) and len(set(in_app.values())) == 4
    assert layers_of(docker_client, app)[:4] == layers_of(docker_client, models)
    out = docker_client.containers.run(app, ["verify"], network_mode="none", remove=True, stderr=True)
    assert b"verify: 4 models load and run offline" in out, out[-2000:]


def stack(docker_client, tag: str) -> tuple[list[str], list[str]]:
    """An image's model layers (digests) and what made each layer above them.

    Only the model layers are compared by digest: a `COPY --link` creates its destination's parent directories
    (`/opt`, `/usr/local/bin`) with the time it ran, so two builds that do not share that step's cache record
    (a plain `docker build` and a bake do not) differ in those directories' times, and nowhere else.
    """
    image = docker_client.images.get(tag)
    made = [" ".join(e["CreatedBy"].split()[1:]) for e in reversed(image.history()) if e["Size"]]
    return image.attrs["RootFS"]["Layers"][:4], made[4:]  # the tiny profile's 4 models, then the rest


def test_bake_and_build_py_give_the_plain_builds_layer_stack(docker_client, checkout, plain, images, tmp_path):
    """The same stack whichever way the app is built: `docker buildx bake` of docker-bake.hcl and `python build.py`
    give the plain build's layers (model layers at the bottom, then base and venv, digest for digest; the code)."""
    run = uuid.uuid4().hex[:8]
    tags = {name: f"modelbake-test/plain-{name}:{run}" for name in ("bake-models", "bake-app", "py-models", "py-app")}
    images += list(tags.values())
    env = {
        "BASE_IMAGE": BASE_IMAGE, "MODELS_TAG": tags["bake-models"], "APP_TAG": tags["bake-app"],
        "MIRRORS_FILE": str(checkout / "mirrors.toml"), "NETWORK": "host",
        "CA_BUNDLE": str(CA_BUNDLE) if CA_BUNDLE.is_file() else "", "WHEELHOUSE": str(WHEELHOUSE) if WHEELHOUSE.is_dir() else "",
    }  # fmt: skip
    docker("buildx", "bake", "--allow", "network.host", "--allow", "fs.read=/", cwd=checkout, env=env)
    want = stack(docker_client, plain["app"])
    assert want[0] == layers_of(docker_client, plain["models"]) and want[1][:2] == [
        "/ / # buildkit",
        "/opt/venv /opt/venv # buildkit",
    ]
    assert layers_of(docker_client, tags["bake-models"]) == layers_of(docker_client, plain["models"])
    assert stack(docker_client, tags["bake-app"]) == want
    mirrors = [f"--mirror={family}={url}" for family, url in (line.split(" = ") for line in
               (checkout / "mirrors.toml").read_text().splitlines()[1:])]  # fmt: skip
    argv = ["python3", "build.py", "--base-image", BASE_IMAGE, "--models-tag", tags["py-models"], "--tag",
            tags["py-app"], *[m.replace('"', "") for m in mirrors], "--quiet"]  # fmt: skip
    argv += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    argv += ["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []
    docker_env = {"PYTHONPATH": ""}
    proc = subprocess.run(
        argv, cwd=checkout, capture_output=True, text=True, timeout=900, env={**os.environ, **docker_env}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stack(docker_client, tags["py-app"]) == want
