"""The deps layer on a real engine: two cold builds of the `deps` stage install the same versions, the lock's.

Each build runs with `--no-cache` (every step runs again; BuildKit's pip cache mount is not a build cache record
and stays, which changes download times, not versions) and takes a couple of minutes on 2 cores: installing
1.6 GB of packages, then exporting them. Layers are exported uncompressed, which the test does not need
compressed. Both images are removed afterwards; their build cache records stay for the next app build, which
then finds its deps step cached (BuildKit's garbage collection reclaims them like any other).
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from packaging.utils import canonicalize_name

from conftest import BASE_IMAGE, CA_BUNDLE, REPO, WHEELHOUSE
from modelbake.image.bake import BuildSpec
from reqlock import APP_LOCK, pins
from testkit.buildx import run_build

pytestmark = pytest.mark.docker

RUN_ID = uuid.uuid4().hex[:8]


def build_deps(tag: str):
    spec = BuildSpec(
        context=REPO,
        dockerfile=REPO / "Dockerfile",
        target="deps",
        tags=[tag],
        build_args={"BASE_IMAGE": BASE_IMAGE},
        build_contexts={"wheels": str(WHEELHOUSE)} if WHEELHOUSE.is_dir() else {},
        secrets={"ca": CA_BUNDLE} if CA_BUNDLE.is_file() else {},
        no_cache=True,
        layer_compression="uncompressed",
    )
    return run_build(spec)


def in_image(tag: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", argv[0], tag, *argv[1:]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def installed(tag: str) -> dict[str, str]:
    proc = in_image(tag, "/opt/venv/bin/pip", "list", "--format", "json", "--disable-pip-version-check")
    assert proc.returncode == 0, proc.stderr
    return {canonicalize_name(p["name"]): p["version"] for p in json.loads(proc.stdout)}


def test_two_cold_deps_builds_install_the_same_locked_versions(docker_client, images, capsys):
    tags = [f"modelbake-test/deps:{RUN_ID}-{n}" for n in (1, 2)]
    images.extend(tags)
    results = [build_deps(tag) for tag in tags]
    with capsys.disabled():
        print(f"\ncold deps builds: {', '.join(f'{r.seconds:.0f} s' for r in results)}")
    for result in results:
        deps_runs = [s for s in result.steps if s.stage == "deps" and s.name.split("] ", 1)[-1].startswith("RUN ")]
        assert deps_runs and not any(s.cached for s in deps_runs), [(s.name, s.cached) for s in deps_runs]

    first, second = (installed(tag) for tag in tags)
    assert first == second
    # exactly the lock (plus the venv's own pip), torch CPU from the wheelhouse or the CPU index, no triton
    locked = pins(APP_LOCK)
    assert {name: v for name, v in first.items() if name != "pip"} == locked
    assert first["torch"] == "2.13.0+cpu"
    assert not [name for name in first if name == "triton" or name.startswith("nvidia-")]

    # --no-deps installed a closed set: `pip check` misses only whisper's triton, left out on purpose
    check = in_image(tags[0], "/opt/venv/bin/pip", "check", "--disable-pip-version-check")
    problems = [line for line in check.stdout.splitlines() if line.strip()]
    assert problems == ["openai-whisper 20250625 requires triton, which is not installed."], check.stdout
    smoke = in_image(
        tags[0], "/opt/venv/bin/python", "-c", "import torch, whisper, spacy, transformers; print(torch.__version__)"
    )
    assert smoke.returncode == 0 and smoke.stdout.strip() == "2.13.0+cpu", smoke.stderr[-2000:]
