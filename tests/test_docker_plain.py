"""Plain Docker, no build.py: `docker build` of the committed Dockerfiles, models image then the app on it.

build.py adds mirrors, secrets, caches and reports, never necessity. These tests build from a copy of the
repository whose generated Dockerfile parts were regenerated for the tiny manifest (what `make dockerfile`
does for the real one), with the local mirror given as the `mirrors` secret, as a person would.
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
PLAIN_FILES = ("pyproject.toml", "requirements", "src", "docker", "Dockerfile", "Dockerfile.models", ".dockerignore")


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
    from modelbake.layers import DEFAULT_SPLIT_BYTES, plan_layers
    from modelbake.lockfile import read_lock
    from modelbake.manifest import load_manifest
    from modelbake.report import find_model_layers

    manifest = load_manifest(checkout / "models.toml")
    specs = manifest.select(None)
    layers = plan_layers(specs, read_lock(manifest.lock_path), DEFAULT_SPLIT_BYTES)
    models = docker_client.images.get(models_tag)
    final = docker_client.images.get(tag) if tag else models
    return {m.id: m.layer for m in find_model_layers(models, specs, layers, final=final)}


def test_plain_docker_build_of_both_dockerfiles(docker_client, checkout, images):
    run = uuid.uuid4().hex[:8]
    models, app = f"modelbake-test/plain-models:{run}", f"modelbake-test/plain-app:{run}"
    images += [models, app]
    ca = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    docker(
        "build", "-f", "Dockerfile.models", "-t", models, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--secret", "id=mirrors,src=mirrors.toml", *ca, "--network", "host", ".",
        cwd=checkout,
    )  # fmt: skip
    in_models = model_layers(docker_client, models, checkout)
    # one layer per model, nothing else
    assert sorted(in_models.values()) == sorted(docker_client.images.get(models).attrs["RootFS"]["Layers"])
    wheels = ["--build-context", f"wheels={WHEELHOUSE}"] if WHEELHOUSE.is_dir() else []
    docker(
        "build", "-t", app, "--build-arg", f"MODELS_IMAGE={models}", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", "MODELBAKE_PROFILE=test", *wheels, *ca, "--network", "host", ".",
        cwd=checkout,
    )  # fmt: skip
    in_app = model_layers(docker_client, models, checkout, tag=app)
    # with plain docker build too, the app's model layers are the models image's own (same diff ids)
    assert in_app == in_models and all(in_app.values()) and len(set(in_app.values())) == 4
    out = docker_client.containers.run(app, ["verify"], network_mode="none", remove=True, stderr=True)
    assert b"verify: 4 models load and run offline" in out, out[-2000:]
