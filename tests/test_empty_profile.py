"""A profile with no models: build.py builds an empty models image and an app on it, with a note, never a crash.

An empty models image has no filesystem, and bake hands one target on to another only as a filesystem: with
`contexts = {models = "target:models"}` buildx leaves the context as it is and the app fails to solve
("unsupported context source target for models"). So the plan starts such an app FROM scratch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, error_lines, mirror_args, wheelhouse_args
from plans import plan_of

REPO = Path(__file__).resolve().parents[1]
EMPTY = "nothing"


def with_empty_profile(locked: Path, dest: Path) -> Path:
    """A copy of a locked manifest plus a profile with no models."""
    dest.mkdir()
    (dest / "models.toml").write_text(locked.read_text().rstrip("\n") + f"\n{EMPTY} = []\n")
    (dest / "models.lock").write_bytes(locked.with_suffix(".lock").read_bytes())
    return dest / "models.toml"


@pytest.mark.unit
def test_the_plan_starts_an_app_of_an_empty_profile_from_scratch(byte_locked, tmp_path):
    empty_profile = with_empty_profile(byte_locked, tmp_path / "m")
    plan = plan_of(["--manifest", str(empty_profile), "--profile", EMPTY], tmp_path / "work")
    app = plan.targets["app"]
    assert "models" not in app.build_contexts and app.build_args["MODELS_IMAGE"] == "scratch"
    assert "models" in plan.targets and plan.layers == ()  # the (empty) models image is still built and tagged
    assert any("FROM scratch" in note for note in plan.notes)
    # A profile with models keeps the models target as the app's models stage.
    full = plan_of(["--manifest", str(empty_profile)], tmp_path / "work2")
    assert full.targets["app"].build_contexts["models"] == "target:models"
    assert full.targets["app"].build_args["MODELS_IMAGE"] != "scratch"


@pytest.mark.docker
def test_build_py_builds_an_app_on_an_empty_models_image(docker_client, images, tiny_locked, mirror, tmp_path):
    """Through build.py on the real engine: exit 0, the note, an empty models image, and an app image whose
    layers are the app's own (base, venv, code), with nothing at the bottom."""
    empty_profile = with_empty_profile(tiny_locked, tmp_path / "m")
    run = uuid.uuid4().hex[:8]
    tag, models_tag = f"modelbake-test/empty-app:{run}", f"modelbake-test/empty-models:{run}"
    images += [tag, models_tag]
    report_file = tmp_path / "report.json"
    args = ["--manifest", str(empty_profile), "--profile", EMPTY, "--base-image", BASE_IMAGE, "--network", "host"]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    args += [*mirror_args(mirror), *wheelhouse_args(), "--tag", tag, "--models-tag", models_tag]
    proc = subprocess.run(
        [sys.executable, str(REPO / "build.py"), *args, "--json", str(report_file)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    assert error_lines(proc.stderr) == [] and "Traceback" not in proc.stderr
    assert f"profile '{EMPTY}' has no models: the models image has no layers" in proc.stderr
    report = json.loads(report_file.read_text())
    assert report["models"] == [] and report["models_image"]["layers"] == []
    assert report["models_at_bottom"] is True and report["warnings"] == []
    built = docker_client.images.get(tag)
    assert built.attrs["RootFS"]["Layers"] == report["image"]["layers"] and len(report["image"]["layers"]) >= 3
    # Nothing of the models under /models: the image holds the app's layers only.
    listing = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", tag, "-c", "ls /models || echo absent"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listing.stdout.strip().endswith("absent"), listing
