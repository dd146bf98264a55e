"""The fetch stage of Dockerfile.models on a real engine: its venv is requirements/fetch.txt, exactly, and that lock
(with the base image and the fetch code) is what its key holds, so every model step runs on the same libraries
until the lock changes, and an edit of another lock runs none of them.

The key test builds models-only images of the tiny manifest from a copy of the repository through build.py, as
tests/test_docker_paths.py does for the fetch code. Tags are removed at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from conftest import BASE_IMAGE, CA_BUNDLE, REPO, mirror_args, removed_after
from modelbake.image.bake import BuildSpec
from reqlock import FETCH_LOCK, pins
from testkit.buildx import run_build
from testkit.checkout import copy_checkout

pytestmark = pytest.mark.docker

RUN_ID = uuid.uuid4().hex[:8]
MODELS = ("whisper-tiny", "spacy-ner", "bart-map", "led-reduce")
# What `python -m venv` puts into a venv of the base image's Python 3.11 by itself (ensurepip).
VENV_SEED = {"pip", "setuptools"}


@pytest.fixture(scope="module")
def tags(docker_client):
    yield from removed_after(docker_client)


def in_image(tag: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", argv[0], tag, *argv[1:]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_fetch_stage_installs_exactly_the_fetch_lock(docker_client, tags):
    tag = f"modelbake-test/fetch-stage:{RUN_ID}"
    tags.append(tag)
    spec = BuildSpec(
        context=REPO,
        dockerfile=REPO / "Dockerfile.models",
        target="fetch",
        tags=[tag],
        build_args={"BASE_IMAGE": BASE_IMAGE},
        secrets={"ca": CA_BUNDLE} if CA_BUNDLE.is_file() else {},
        layer_compression="uncompressed",
    )
    run_build(spec, name="fetch")
    listed = in_image(tag, "/opt/fetch/bin/pip", "list", "--format", "json", "--disable-pip-version-check")
    assert listed.returncode == 0, listed.stderr
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listed.stdout)}
    assert {name: v for name, v in installed.items() if name not in VENV_SEED} == pins(FETCH_LOCK)
    # --no-deps installed a closed set, and the lock was bind-mounted: it is no file of the image
    check = in_image(tag, "/opt/fetch/bin/pip", "check", "--disable-pip-version-check")
    assert check.returncode == 0 and check.stdout.strip() == "No broken requirements found.", check.stdout
    assert in_image(tag, "ls", "/tmp/requirements").returncode != 0


def build_models(repo: Path, manifest: Path, mirror, work: Path, tag: str) -> dict:
    """`build.py --models-only` from `repo`; its --json report."""
    args = ["--manifest", str(manifest), "--profile", "test", "--base-image", BASE_IMAGE, "--network", "host"]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    report = work / f"{uuid.uuid4().hex[:8]}.json"
    cmd = [sys.executable, str(repo / "build.py"), *args, *mirror_args(mirror)]
    cmd += ["--models-only", "--models-tag", tag, "--json", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def model_steps(report: dict) -> dict[str, str]:
    """Each stage of the models build but the final one (`fetch` and every model's step): built or cached."""
    return {s["stage"]: s["status"] for s in report["stages"] if s["build"] == "models" and s["stage"] != "models"}


def test_an_edit_of_the_app_lock_runs_no_model_step_and_one_of_the_fetch_lock_runs_them_all(
    tiny_locked, mirror, tags, tmp_path
):
    """requirements/app.txt edited (its bytes, as a moved pin changes them): the fetch stage and every model step
    cached, the mirror asked nothing. Then requirements/fetch.txt edited: the fetch stage's install and every model
    step run again (the lock is an input, so the first half is not vacuous), and the layers keep their bytes."""
    copy = copy_checkout(tmp_path / "repo")
    work = tmp_path / "reports"
    work.mkdir()
    tags += [f"modelbake-test/fetch-lock:{RUN_ID}-{n}" for n in range(3)]
    build_models(copy, tiny_locked, mirror, work, tags[-3])  # whatever the engine holds: now every step is there

    with open(copy / "requirements/app.txt", "a") as f:
        f.write(f"# edited {RUN_ID}\n")
    mirror.clear_requests()
    report = build_models(copy, tiny_locked, mirror, work, tags[-2])
    steps = model_steps(report)
    assert {"fetch", *(f"fetch-{m}" for m in MODELS)} <= set(steps), steps
    assert set(steps.values()) == {"cached"}, steps
    assert mirror.requests == []
    layers = {m["id"]: m["layer"] for m in report["models"]}

    with open(copy / "requirements/fetch.txt", "a") as f:
        f.write(f"# edited {RUN_ID}\n")
    mirror.clear_requests()
    control = build_models(copy, tiny_locked, mirror, work, tags[-1])
    steps = model_steps(control)
    assert {s for s, status in steps.items() if status == "built"} == set(steps), steps
    assert {r.path.rsplit("/", 1)[-1] for r in mirror.requests} >= {"tiny-random.en.pt", "model.safetensors"}
    assert {m["id"]: m["layer"] for m in control["models"]} == layers
