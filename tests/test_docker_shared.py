"""One models image, many apps, platforms and builders (issue 13, items 3-5), on the real engine.

- The app's model layers are the models image's, byte for byte: two cold builds of an app give the same model
  layers, equal to the models image's own.
- `build.py --models-only --push` pushes the models image to a registry (Debian's docker-registry on a
  loopback address of its own, 127.x.y.z); `--models-image REF@sha256:...` builds an app on it on a wiped
  engine, the reference app and then a second, minimal one: each runs no model step, asks the mirror nothing,
  has the models image's blobs as its model layers, and its push uploads none of them (the registry's own
  request log says which blobs each push uploaded).
- `--platform linux/amd64,linux/arm64` gives one set of model layers for both platforms, fetched once; an app
  built for both in the same graph (FROM scratch, so no emulator is needed here) holds those same layers on
  each platform, each uploaded once per repository.

"Wiped" means what a fresh runner has: no image and no build record made since the test began (records made
before, such as the app's deps layer, stay for the other tests and the next CI run).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from localregistry import Registry

from buildcache import prune_records_created_since, remove_image
from conftest import BASE_IMAGE, CA_BUNDLE, REPO, mirror_args, unavailable, wheelhouse_args

pytestmark = pytest.mark.docker

MINIMAL_APP = """\
# A second, minimal app on the same models: its own Dockerfile, FROM the models image like the reference app's.
ARG BASE_IMAGE
ARG MODELS_IMAGE=modelbake/models:latest
FROM ${BASE_IMAGE} AS base
FROM ${MODELS_IMAGE} AS models

FROM models AS app
COPY --link --from=base / /
ENV PATH=/usr/local/bin:/usr/bin:/bin HF_HUB_CACHE=/models/huggingface/hub HF_HUB_OFFLINE=1
CMD ["python3", "-c", "import os; print(sorted(os.listdir('/models')))"]
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if shutil.which("docker-registry") is None:
        unavailable("docker-registry missing: apt-get install docker-registry (.ci/run installs it)")
    # A loopback address of its own (127.x.y.z), so that no content in the engine carries a registry source for it.
    # containerd labels a blob with the repositories it was pushed to or pulled from, keyed by host WITHOUT the
    # port (`containerd.io/distribution.source.127.0.0.1=a/b,c/d`), and a push tries a cross-repository mount
    # from the first of them. Content that outlives an earlier test's registry on 127.0.0.1 (the other tests'
    # build records keep the same tiny models' layers) would name repositories this registry never had: the
    # mount fails and the blob is uploaded. A fresh runner has no such content; a fresh host name gives the same.
    address = "127." + ".".join(str(random.randint(1, 254)) for _ in range(3))
    with Registry(tmp_path_factory.mktemp("shared-registry"), address=address) as running:
        yield running


def build_py(args: list[str], json_file: Path) -> tuple[dict, str]:
    cmd = [sys.executable, str(REPO / "build.py"), *args, "--json", str(json_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_file.read_text()), proc.stderr


def common(manifest: Path, mirror) -> list[str]:
    args = ["--manifest", str(manifest), "--profile", "test", "--base-image", BASE_IMAGE, *mirror_args(mirror)]
    return args + (["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else [])


def minimal_app(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(MINIMAL_APP)
    return root


def model_layers(report: dict) -> dict[str, list[str]]:
    """Per model: its layers in the built image (the rest, then its big files)."""
    return {m["id"]: [m["layer"], *[f["layer"] for f in m["files"]]] for m in report["models"]}


def models_image_layers(report: dict) -> dict[str, list[str]]:
    return {m["id"]: [m["models_image_layer"]] for m in report["models"]}


def wipe(since: datetime, tags: list[str]) -> None:
    """What a fresh runner has of this test's work: none of `tags` and no build record made since `since`."""
    for tag in tags:
        remove_image(tag)
    prune_records_created_since(since)


def test_app_model_layers_are_reproducible_and_the_models_images_own(
    docker_client, images, mirror, tiny_locked, tmp_path
):
    """Two cold builds of one lock (no build cache at all): the app's model layers are the same both times
    and are the models image's own layers (diff ids), not copies with build-time directories."""
    runs = []
    for name in ("one", "two"):
        tag = f"modelbake-test/minimal:{name}-{uuid.uuid4().hex[:8]}"
        models_tag = f"modelbake-test/models:shared-{name}-{uuid.uuid4().hex[:8]}"
        images += [tag, models_tag]
        args = common(tiny_locked, mirror) + ["--context", str(minimal_app(tmp_path / "app")), "--tag", tag]
        report, _ = build_py(args + ["--models-tag", models_tag, "--no-cache"], tmp_path / f"{name}.json")
        assert not report["warnings"], report["warnings"]  # no "copy is not the models image's layer"
        runs.append(report)
    one, two = runs
    assert model_layers(one) == model_layers(two)
    assert {k: v[:1] for k, v in model_layers(one).items()} == models_image_layers(one)
    app = docker_client.images.get(one["image"]["tag"]).attrs["RootFS"]["Layers"]
    models = docker_client.images.get(one["models_image"]["tag"]).attrs["RootFS"]["Layers"]
    assert set(models) <= set(app)  # every models image layer is in the app, digest for digest


def test_one_models_image_many_apps_on_wiped_engines(docker_client, images, mirror, tiny_locked, registry, tmp_path):
    started = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    models_tag = f"{registry.host}/team/models:{run}"
    images.append(models_tag)

    # 1. The models image, pushed once.
    report, _ = build_py(
        common(tiny_locked, mirror) + ["--models-only", "--models-tag", models_tag, "--push"],
        tmp_path / "m.json",
    )
    digest, _ = registry.manifest("team/models", run)
    ref = f"{registry.host}/team/models@{digest}"
    models_layers = {m["id"]: m["layer"] for m in report["models"]}
    pushed = registry_blobs(registry, "team/models", digest)

    # 2. The reference app on it, on a wiped engine; 3. a second, minimal app, on another wiped engine. Each:
    # no model step, no request to the mirror, the models image's own layers, and a push that uploads none of
    # them (every model blob is already in the registry, under team/models: mounted, not sent again).
    apps = [
        ("team/podcast", [*wheelhouse_args()], [models_tag]),
        ("team/minimal", ["--context", str(minimal_app(tmp_path / "minimal"))], [f"{registry.host}/team/podcast:{run}"]),
    ]  # fmt: skip
    for name, extra, wiped in apps:
        app = f"{registry.host}/{name}:{run}"
        images.append(app)
        wipe(started, wiped)
        mirror.clear_requests()
        mark = registry.log_offset()
        built, err = build_py(
            common(tiny_locked, mirror) + extra + ["--models-image", ref, "--tag", app, "--push"],
            tmp_path / f"{name.replace('/', '-')}.json",
        )
        assert not [s for s in built["stages"] if s["stage"].startswith(("fetch", "file-"))], built["stages"]
        assert mirror.requests == [], (name, [r.path for r in mirror.requests])
        assert f"on {ref}" in err
        assert {m["id"]: m["layer"] for m in built["models"]} == models_layers, name  # the models image's own
        uploaded = registry.uploaded_blobs(since=mark)
        blobs = app_model_blobs(registry, name, run, set(models_layers.values()))
        assert len(blobs) == len(models_layers), (name, blobs)
        assert blobs <= pushed, f"{name}: its model layers are not the models image's blobs"
        assert not blobs & uploaded.keys(), f"{name}: the push uploaded model bytes again"
        assert uploaded, f"{name}: its own layers (its config at least) must have been pushed"


def app_model_blobs(registry: Registry, name: str, reference: str, model_diff_ids: set[str]) -> set[str]:
    """The blob digests of an app's layers whose diff id is a model layer's, from the registry's manifest and
    config (by diff id, not by position: the app's layer order is not fixed)."""
    _, manifest = registry.manifest(name, reference)
    config = registry.blob_json(name, manifest["config"]["digest"])
    return {
        layer["digest"]
        for layer, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)
        if diff in model_diff_ids
    }


def registry_blobs(registry: Registry, name: str, digest: str) -> set[str]:
    _, manifest = registry.manifest(name, digest)
    return {layer["digest"] for layer in manifest.get("layers", [])}


def test_model_layers_are_the_same_for_every_platform_and_fetched_once(
    docker_client, images, mirror, unique_manifest, registry, tmp_path
):
    """No emulator on this amd64 machine: the fetch steps run on the build platform, the models stage runs
    nothing, so an arm64 models image is the amd64 one's layers again."""
    run = uuid.uuid4().hex[:8]
    tag = f"{registry.host}/team/models-multi:{run}"
    images.append(tag)
    mirror.clear_requests()
    args = common(unique_manifest, mirror) + ["--models-only", "--models-tag", tag, "--push"]
    build_py(args + ["--platform", "linux/amd64,linux/arm64"], tmp_path / "multi.json")
    fetched = [r.path for r in mirror.requests if r.status == 200 and r.method == "GET"]
    assert [p for p in fetched if p.endswith(".pt")], f"the fresh Whisper pin was not fetched: {fetched}"
    assert len(fetched) == len(set(fetched)), "a model file was fetched twice"
    _, index = registry.manifest("team/models-multi", run)
    platforms = {
        f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
        for m in index["manifests"]
        if m.get("platform", {}).get("os") != "unknown"
    }
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    layers = {
        p: [x["digest"] for x in registry.manifest("team/models-multi", d)[1]["layers"]] for p, d in platforms.items()
    }
    assert layers["linux/amd64"] == layers["linux/arm64"] and len(layers["linux/amd64"]) == 4


SCRATCH_APP = """\
# The reference app's stack (models, then a base's root filesystem, a venv, the code) with no RUN step, so that it
# builds for any platform on this amd64 machine with no emulator: each stage is files copied in.
ARG MODELS_IMAGE=modelbake/models:latest
FROM scratch AS base
COPY --link os-release /etc/os-release
FROM scratch AS deps
COPY --link pyvenv.cfg /opt/venv/pyvenv.cfg
FROM ${MODELS_IMAGE} AS models

FROM models AS app
COPY --link --from=base / /
COPY --link --from=deps /opt/venv /opt/venv
COPY --link app.py /app/app.py
ENV HF_HUB_CACHE=/models/huggingface/hub HF_HUB_OFFLINE=1
"""


def test_a_multi_platform_app_fetches_and_stores_each_model_once(images, mirror, unique_manifest, registry, tmp_path):
    """Models and app in one graph for linux/amd64 and linux/arm64: every model file is fetched once, both
    platforms' app images hold the same model layers (the models image's), and each is uploaded once."""
    run = uuid.uuid4().hex[:8]
    app_dir = tmp_path / "scratch-app"
    app_dir.mkdir()
    (app_dir / "Dockerfile").write_text(SCRATCH_APP)
    for name in ("os-release", "pyvenv.cfg", "app.py"):
        (app_dir / name).write_text(f"{name}\n")
    models_tag = f"{registry.host}/team/models-multi-app:{run}"
    app_tag = f"{registry.host}/team/scratch-multi:{run}"
    images += [models_tag, app_tag]
    mirror.clear_requests()
    mark = registry.log_offset()
    args = common(unique_manifest, mirror) + ["--context", str(app_dir), "--models-tag", models_tag]
    report, _ = build_py(args + ["--tag", app_tag, "--push", "--platform", "linux/amd64,linux/arm64"],
                         tmp_path / "multi-app.json")  # fmt: skip
    fetched = [r.path for r in mirror.requests if r.status == 200 and r.method == "GET"]
    assert fetched and len(fetched) == len(set(fetched)), "a model file was fetched twice"

    def platform_layers(name: str, tag: str) -> dict[str, list[str]]:
        _, index = registry.manifest(name, tag)
        return {
            f"{m['platform']['os']}/{m['platform']['architecture']}": registry.manifest(name, m["digest"])[1]["layers"]
            for m in index["manifests"]
            if m.get("platform", {}).get("os") != "unknown"  # attestation manifests
        }

    app = {p: [layer["digest"] for layer in layers] for p, layers in platform_layers("team/scratch-multi", run).items()}
    models = {
        p: [layer["digest"] for layer in layers] for p, layers in platform_layers("team/models-multi-app", run).items()
    }
    assert set(app) == set(models) == {"linux/amd64", "linux/arm64"}
    for platform, layers in app.items():  # the models image's layers at the bottom, then base, venv, code
        assert layers[: len(models[platform])] == models[platform] and len(layers) == len(models[platform]) + 3
    assert models["linux/amd64"] == models["linux/arm64"], "the platforms got different model layers"
    assert {m["id"] for m in report["models"]} <= {m["id"] for m in report["models"] if m["layer"]}
    # Per repository, each model blob went up once, not once per platform. (The models image and the app are
    # pushed at the same time in one graph, so the app's repository gets its own upload: a cross-repository
    # mount needs the blob to be in the registry already, as with --models-image, tested above.)
    uploads = Counter(registry.uploads(mark))
    for repository in ("team/models-multi-app", "team/scratch-multi"):
        counts = {d: uploads.get((repository, d), 0) for d in models["linux/amd64"]}
        assert all(count <= 1 for count in counts.values()), (repository, counts)
    # (none of the two needs an upload at all where the registry already holds the blob: another repository's
    # copy is mounted, e.g. the models image of the test above, whose layers these share)
