"""Issue 12 on a real engine: one layer per spaCy pipeline (item 1), model steps keyed on the fetch code only
(item 2), and an app image without test tooling (item 6).

One app image is built for a manifest with two spaCy pipelines and reused; the other builds are models-only
from copies of the repository. Tags are removed at the end.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, REPO, mirror_args, removed_after, wheelhouse_args
from testkit.checkout import copy_checkout

pytestmark = pytest.mark.docker

RUN_ID = uuid.uuid4().hex[:8]
SECOND = ("spacy-people", "en_tiny_people")  # the second pipeline: model id, package name
PIPELINES = {"spacy-ner": "en_tiny_ner", SECOND[0]: SECOND[1]}


@dataclass
class Built:
    tag: str
    models_tag: str
    report: dict


@pytest.fixture(scope="module")
def tags(docker_client):
    yield from removed_after(docker_client)


@pytest.fixture(scope="module")
def two_pipelines(tiny_tree, mirror, tmp_path_factory) -> Path:
    """The tiny manifest plus a second spaCy pipeline (made by testkit, served by the mirror), locked."""
    from modelbake.cli import main as modelbake
    from testkit.tinymodels import add_spacy_pipeline, with_spacy_pipeline

    sha = add_spacy_pipeline(tiny_tree.root, SECOND[1])
    manifest = tmp_path_factory.mktemp("two-pipelines") / "models.toml"
    manifest.write_text(with_spacy_pipeline(tiny_tree.manifest.read_text(), SECOND[0], SECOND[1], sha))
    assert modelbake(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    return manifest


def build_py(repo: Path, manifest: Path, mirror, json_file: Path, *extra: str) -> dict:
    args = ["--manifest", str(manifest), "--profile", "test", "--base-image", BASE_IMAGE, "--network", "host"]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    cmd = [sys.executable, str(repo / "build.py"), *args, *mirror_args(mirror), *extra, "--json", str(json_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_file.read_text())


@pytest.fixture(scope="module")
def app(docker_client, tags, two_pipelines, mirror, tmp_path_factory) -> Built:
    tag, models_tag = f"modelbake-test/paths-app:{RUN_ID}", f"modelbake-test/paths-models:{RUN_ID}"
    tags += [tag, models_tag]
    extra = ["--tag", tag, "--models-tag", models_tag]
    extra += wheelhouse_args()
    report = build_py(REPO, two_pipelines, mirror, tmp_path_factory.mktemp("app") / "app.json", *extra)
    return Built(tag, models_tag, report)


def layer_files(docker_client, tag: str, work: Path) -> dict[str, list[str]]:
    """diff id -> the paths in that layer of `tag` (from `docker save`: OCI layout, index -> manifest -> config)."""
    saved = work / f"{uuid.uuid4().hex}.tar"
    subprocess.run(["docker", "save", "-o", str(saved), tag], check=True, timeout=300)
    try:
        with tarfile.open(saved) as tar:

            def blob(digest: str) -> bytes:
                return tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}").read()

            manifest = json.loads(blob(json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]))
            while "manifests" in manifest:
                manifest = json.loads(blob(manifest["manifests"][0]["digest"]))
            diff_ids = json.loads(blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]
            layers = {}
            for diff_id, layer in zip(diff_ids, manifest["layers"], strict=True):
                data = blob(layer["digest"])
                data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
                with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                    layers[diff_id] = sorted(m.name.rstrip("/") for m in inner.getmembers())
            return layers
    finally:
        saved.unlink(missing_ok=True)


def test_two_spacy_pipelines_are_two_layers_of_one_pipeline_each(app, docker_client, tmp_path):
    models = {m["id"]: m for m in app.report["models"]}
    assert set(PIPELINES) <= set(models)
    assert models["spacy-ner"]["path"] == "/models/spacy/en_tiny_ner"
    assert models[SECOND[0]]["path"] == f"/models/spacy/{SECOND[1]}"
    # distinct layers in both images
    assert len({models[m]["layer"] for m in PIPELINES}) == 2
    assert len({models[m]["models_image_layer"] for m in PIPELINES}) == 2
    assert len({m["models_image_layer"] for m in models.values()}) == len(models)
    layers = layer_files(docker_client, app.models_tag, tmp_path)
    for model_id, name in PIPELINES.items():
        files = layers[models[model_id]["models_image_layer"]]
        own = [f for f in files if f not in ("models", "models/spacy")]
        assert own and all(f == f"models/spacy/{name}" or f.startswith(f"models/spacy/{name}/") for f in own), files
        assert f"models/spacy/{name}/{name}/__init__.py" in files
        assert f"models/spacy/{name}/{name}-0.1.0.dist-info/METADATA" in files


def test_verify_loads_both_pipelines_offline(app, docker_client):
    out = docker_client.containers.run(app.tag, "verify", network_mode="none", remove=True, stderr=True)
    assert b"verify: 5 models load and run offline" in out, out[-2000:]
    # and so does any app of the user's: the image's PYTHONPATH names each pipeline's directory
    code = "import spacy; print(sorted(spacy.load(n).meta['name'] for n in ('en_tiny_ner', 'en_tiny_people')))"
    out = docker_client.containers.run(app.tag, ["python", "-c", code], entrypoint=[], network_mode="none", remove=True)
    assert out.decode().strip() == "['tiny_ner', 'tiny_people']"


def test_the_app_layer_carries_no_test_tooling(app, docker_client):
    """`COPY src/` is the app's code: no gha cache emulator, no tiny-model generator, no demo in the image."""
    script = (
        "ls /app/src; "
        "find / -xdev \\( -name testkit -o -name ghacache -o -name tinymodels \\) -print; find /app -name demo.py; "
        "python -c 'import testkit' 2>&1 | tail -1; python -c 'import modelbake.tinymodels' 2>&1 | tail -1"
    )
    out = docker_client.containers.run(
        app.tag, ["sh", "-c", script], entrypoint=[], network_mode="none", remove=True
    ).decode()
    lines = out.strip().splitlines()
    assert lines[:2] == ["modelbake", "podcast_pipeline"], out
    assert lines[2:] == [
        "ModuleNotFoundError: No module named 'testkit'",
        "ModuleNotFoundError: No module named 'modelbake.tinymodels'",
    ], out


def model_steps(report: dict) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in report["stages"] if s["build"] == "models" and s["stage"] != "models"}


def test_an_edit_outside_the_fetch_path_runs_no_model_step(app, two_pipelines, mirror, tags, tmp_path):
    """cli.py (a help string), progress.py and verify.py edited: every fetch step cached, no mirror request."""
    copy = copy_checkout(tmp_path / "repo")
    cli = copy / "src/modelbake/cli.py"
    cli.write_text(cli.read_text().replace("parallel downloads (default 4)", f"parallel downloads ({RUN_ID})"))
    for rel in ("src/modelbake/progress.py", "src/modelbake/verify.py"):
        with open(copy / rel, "a") as f:
            f.write(f"\n# edited {RUN_ID}\n")
    mirror.clear_requests()
    models_tag = f"modelbake-test/paths-models:{RUN_ID}-edit"
    tags.append(models_tag)
    report = build_py(copy, two_pipelines, mirror, tmp_path / "edit.json", "--models-only", "--models-tag", models_tag)
    steps = model_steps(report)
    assert {f"fetch-{m}" for m in (*PIPELINES, "whisper-tiny", "bart-map", "led-reduce")} <= set(steps)
    assert set(steps.values()) == {"cached"}, steps  # `fetch` itself too: its COPY holds none of the edited files
    assert mirror.requests == []
    before = {m["id"]: m["models_image_layer"] for m in app.report["models"]}
    assert {m["id"]: m["layer"] for m in report["models"]} == before


def test_control_an_edit_of_a_fetch_module_runs_every_model_step(app, two_pipelines, mirror, tags, tmp_path):
    """The other side of the key: the fetch code is an input of every model step (so the test above is not
    vacuous), while the layers stay the same bytes."""
    copy = copy_checkout(tmp_path / "repo")
    with open(copy / "src/modelbake/fetchers/whisper.py", "a") as f:
        f.write(f"\n# fetch code edited {RUN_ID}\n")
    models_tag = f"modelbake-test/paths-models:{RUN_ID}-control"
    tags.append(models_tag)
    mirror.clear_requests()
    report = build_py(
        copy, two_pipelines, mirror, tmp_path / "control.json", "--models-only", "--models-tag", models_tag
    )
    steps = model_steps(report)
    assert {s for s, status in steps.items() if status == "built"} == set(steps), steps
    assert {r.path.rsplit("/", 1)[-1] for r in mirror.requests} >= {"tiny-random.en.pt", "model.safetensors"}
    # same bytes, same layers: the model layers' digests do not depend on the code that fetched them
    before = {m["id"]: m["models_image_layer"] for m in app.report["models"]}
    assert {m["id"]: m["layer"] for m in report["models"]} == before
