"""File layers on a real engine (issue 13, item 1), with the tiny models and a threshold low enough that their
weights and tokenizer.json are "big": each big file a layer of its own, the rest one more, the app offline on the
very same layers, two cold builds identical, and a revision bump that touches only small files fetching only
those and pushing only the changed layer (the mirror's and the registry's own logs say so).

The mirror serves a copy of the tiny tree (the bump publishes a new commit in it); the registry is Debian's
docker-registry on 127.0.0.1, logging every request. Tags are removed at the end.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import BASE_IMAGE, CA_BUNDLE, REPO, mirror_args, removed_after, unavailable, wheelhouse_args

pytestmark = pytest.mark.docker

RUN_ID = uuid.uuid4().hex[:8]
SPLIT_MIB = "0.01"  # 10,485 bytes: the tiny models' model.safetensors and tokenizer.json (38 KB) are over it
SPLIT = int(float(SPLIT_MIB) * 1024 * 1024)
HF_MODELS = ("bart-map", "led-reduce")
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass
class Build:
    tag: str
    report: dict


@pytest.fixture(scope="module")
def tags(docker_client):
    yield from removed_after(docker_client)


@pytest.fixture(scope="module")
def tree(tiny_tree, tmp_path_factory) -> Path:
    """A copy of the tiny mirror tree of this module's own: the revision bump publishes a commit in it."""
    root = tmp_path_factory.mktemp("filelayers-tree") / "tree"
    shutil.copytree(tiny_tree.root, root, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    return root


@pytest.fixture(scope="module")
def server(tree):
    from modelbake.mirror.server import MirrorServer

    with MirrorServer(tree) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from localregistry import Registry

    if shutil.which("docker-registry") is None:
        unavailable("docker-registry missing: apt-get install docker-registry (.ci/run installs it)")
    with Registry(tmp_path_factory.mktemp("registry"), log_level="info") as running:
        yield running


def locked_manifest(tree: Path, server, dest: Path) -> Path:
    from modelbake.cli import main as modelbake

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tree / "models.toml", dest / "models.toml")
    assert modelbake(["lock", "--manifest", str(dest / "models.toml"), *mirror_args(server)]) == 0
    return dest / "models.toml"


@pytest.fixture(scope="module")
def manifest(tree, server, tmp_path_factory) -> Path:
    return locked_manifest(tree, server, tmp_path_factory.mktemp("filelayers-manifest"))


def build_py(manifest: Path, server, tag: str, json_file: Path, *extra: str) -> dict:
    args = ["--manifest", str(manifest), "--profile", "test", "--base-image", BASE_IMAGE, "--network", "host"]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    args += ["--file-layers-over", SPLIT_MIB, "--models-tag", tag, *mirror_args(server), *extra]
    proc = subprocess.run(
        [sys.executable, str(REPO / "build.py"), *args, "--json", str(json_file)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(json_file.read_text())


@pytest.fixture(scope="module")
def cold(manifest, server, registry, tags, tmp_path_factory) -> tuple[Build, Build]:
    """Two cold models-only builds (no build cache at all); the first pushed to the registry."""
    work = tmp_path_factory.mktemp("filelayers-cold")
    one = f"{registry.host}/modelbake-test/filelayers:v1-{RUN_ID}"
    two = f"modelbake-test/filelayers:{RUN_ID}-two"
    tags += [one, two]
    first = build_py(manifest, server, one, work / "one.json", "--models-only", "--no-cache", "--push")
    second = build_py(manifest, server, two, work / "two.json", "--models-only", "--no-cache")
    return Build(one, first), Build(two, second)


def layer_members(tag: str, work: Path) -> dict[str, dict[str, str]]:
    """diff id -> {path: kind} of each layer of `tag` (`docker save`), kind `file`, `link -> target` or `dir`."""
    saved = work / f"{uuid.uuid4().hex}.tar"
    subprocess.run(["docker", "save", "-o", str(saved), tag], check=True, timeout=300)
    try:
        with tarfile.open(saved) as tar:

            def blob(digest: str) -> bytes:
                member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
                assert member is not None
                return member.read()

            manifest = json.loads(blob(json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]))  # type: ignore[arg-type]
            while "manifests" in manifest:
                manifest = json.loads(blob(manifest["manifests"][0]["digest"]))
            diff_ids = json.loads(blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]
            out = {}
            for diff_id, layer in zip(diff_ids, manifest["layers"], strict=True):
                with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as inner:
                    out[diff_id] = {m.name.rstrip("/"): _kind(m) for m in inner.getmembers()}
            return out
    finally:
        saved.unlink(missing_ok=True)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"link -> {member.linkname}"
    return "dir" if member.isdir() else "file"


def pushed_manifest(registry, tag: str) -> dict:
    """An image's manifest as the registry holds it (through an index if it is one)."""
    name, _, reference = tag.partition("/")[2].rpartition(":")
    base = f"http://{registry.host}/v2/{name}/manifests"
    doc = httpx.get(f"{base}/{reference}", headers={"Accept": MANIFEST_TYPES}, timeout=30).json()
    while "manifests" in doc:
        doc = httpx.get(
            f"{base}/{doc['manifests'][0]['digest']}", headers={"Accept": MANIFEST_TYPES}, timeout=30
        ).json()
    return doc


def pushed_layers(registry, tag: str) -> list[str]:
    return [layer["digest"] for layer in pushed_manifest(registry, tag)["layers"]]


def file_layers(report: dict) -> dict[tuple[str, str], str]:
    return {(m["id"], f["path"]): f["layer"] for m in report["models"] for f in m["files"]}


def rest_layers(report: dict) -> dict[str, str]:
    return {m["id"]: m["layer"] for m in report["models"]}


def test_each_big_file_is_a_layer_of_its_own_and_the_rest_holds_links_and_refs(cold, manifest, tmp_path):
    from modelbake.lockfile import read_lock

    build, _ = cold
    lock = read_lock(manifest.with_suffix(".lock"))
    assert lock is not None
    members = layer_members(build.tag, tmp_path)
    models = {m["id"]: m for m in build.report["models"]}
    expected_layers = 2  # whisper and spaCy: one layer each
    for model_id in HF_MODELS:
        entry = lock.get(model_id)
        assert entry is not None
        big = {f.path: f for f in entry.files if f.size > SPLIT}
        assert set(big) == {"model.safetensors", "tokenizer.json"}
        repo = "models/huggingface/hub/models--" + entry.spec["repo"].replace("/", "--")
        files = {f["path"]: f for f in models[model_id]["files"]}
        assert set(files) == set(big)
        for path, f in big.items():
            layer = members[files[path]["layer"]]
            blob = f"{repo}/blobs/{f.sha256}"
            # the blob, and nothing but the directories down to it
            assert {p: k for p, k in layer.items() if k != "dir"} == {blob: "file"}, (model_id, path, layer)
            assert set(layer) == {blob, *(blob.rsplit("/", n)[0] for n in range(1, blob.count("/") + 1))}
        rest = members[models[model_id]["layer"]]
        snapshot = f"{repo}/snapshots/{entry.revision}"
        assert rest[f"{repo}/refs/main"] == "file"
        for f in entry.files:
            link = rest[f"{snapshot}/{f.path}"]
            assert link.startswith("link -> ../../blobs/"), (model_id, f.path, link)
            target = f"{repo}/{link.removeprefix('link -> ../../')}"
            if f.path in big:  # dangling here: the file's own layer holds it, at its sha256
                assert target == f"{repo}/blobs/{f.sha256}" and target not in rest, (model_id, f.path)
            else:  # a config, the tokenizer's config: its blob (named by the Hub's ETag) is in this layer
                assert rest[target] == "file", (model_id, f.path)
        assert len([p for p in rest if p.startswith(f"{repo}/blobs/")]) == len(entry.files) - len(big)
        expected_layers += len(big) + 1
    assert len(members) == expected_layers == len({*members})


def test_two_cold_builds_give_identical_layers(cold, docker_client):
    one, two = cold
    assert rest_layers(one.report) == rest_layers(two.report)
    assert file_layers(one.report) == file_layers(two.report)
    first, second = (docker_client.images.get(b.tag) for b in cold)
    assert first.attrs["RootFS"]["Layers"] == second.attrs["RootFS"]["Layers"]
    assert first.id == second.id


@pytest.fixture(scope="module")
def app(cold, manifest, server, tags, tmp_path_factory) -> Build:
    """The app image on the first cold build's models image (same lock, same threshold)."""
    build, _ = cold
    tag = f"modelbake-test/filelayers-app:{RUN_ID}"
    tags.append(tag)
    extra = ["--tag", tag, *wheelhouse_args()]
    report = build_py(manifest, server, build.tag, tmp_path_factory.mktemp("filelayers-app") / "app.json", *extra)
    return Build(tag, report)


def test_the_app_runs_offline_on_the_models_images_very_layers(app, cold, docker_client):
    build, _ = cold
    assert not [w for w in app.report["warnings"] if "byte for byte" in w], app.report["warnings"]
    in_app = set(docker_client.images.get(app.tag).attrs["RootFS"]["Layers"])
    models_image = docker_client.images.get(build.tag).attrs["RootFS"]["Layers"]
    assert set(models_image) <= in_app  # every model layer, big files included, digest for digest
    assert rest_layers(app.report) == rest_layers(build.report)
    assert file_layers(app.report) == file_layers(build.report)
    out = docker_client.containers.run(app.tag, "verify", network_mode="none", remove=True, stderr=True)
    assert b"verify: 4 models load and run offline" in out, out[-2000:]


def test_a_revision_bump_of_small_files_fetches_and_pushes_only_those(cold, tree, server, registry, tags, tmp_path):
    from modelbake.lockfile import read_lock
    from testkit.tinymodels import BART_REPO, publish_revision

    v1, _ = cold
    snapshot = next((tree / "huggingface/models--modelbake-tiny--bart/snapshots").iterdir())
    config = json.loads((snapshot / "config.json").read_text())
    commit = publish_revision(
        tree,
        BART_REPO,
        {
            "config.json": (json.dumps({**config, "modelbake_bump": RUN_ID}, indent=2) + "\n").encode(),
            "README.md": b"# bumped\n",
        },
    )
    manifest = locked_manifest(tree, server, tmp_path / "bumped")
    lock = read_lock(manifest.with_suffix(".lock"))
    assert lock is not None
    bart = lock.get("bart-map")
    assert bart is not None and bart.revision == commit
    small = {f.path: f.size for f in bart.files if f.size <= SPLIT}
    assert {"config.json", "README.md"} <= set(small) and max(small.values()) < SPLIT

    server.clear_requests()
    offset = registry.log_offset()
    v2 = f"{registry.host}/modelbake-test/filelayers:v2-{RUN_ID}"
    tags.append(v2)
    report = build_py(manifest, server, v2, tmp_path / "v2.json", "--models-only", "--push")

    # the mirror: the small files of the new revision, nothing else, at <= 1.1x their bytes
    fetched = [r for r in server.requests if r.bytes_sent]
    assert {r.path.rsplit("/", 1)[1] for r in fetched} == set(small), [r.path for r in server.requests]
    assert all(f"/resolve/{commit}/" in r.path for r in server.requests)
    sent = sum(r.bytes_sent for r in server.requests)
    assert sent <= 1.1 * sum(small.values()), (sent, small)
    # every big layer keeps its digest; of the rest layers only bart's changes
    assert file_layers(report) == file_layers(v1.report)
    before, after = rest_layers(v1.report), rest_layers(report)
    assert [m for m in before if before[m] != after[m]] == ["bart-map"]
    status = {s["stage"]: s["status"] for s in report["stages"] if s["build"] == "models"}
    assert [s for s, v in status.items() if v == "built" and s != "models"] == ["fetch-bart-map"], status
    # the registry: the one new layer (and the image's config) uploaded, nothing else
    new_layers = set(pushed_layers(registry, v2)) - set(pushed_layers(registry, v1.tag))
    assert new_layers == {after["bart-map"]}  # uncompressed: the blob's digest is the diff id
    uploaded = registry.uploaded_blobs(offset)
    config_digest = pushed_manifest(registry, v2)["config"]["digest"]
    assert set(uploaded) == new_layers | {config_digest}, uploaded
    print(f"bump: fetched {sent:,} bytes for {sum(small.values()):,} of small files; uploaded {uploaded}")
