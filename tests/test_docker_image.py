"""The images on a real engine: one layer per model, an app that runs with --network none, secrets nowhere.

The app image (torch included, ~2 min cold) is built ONCE per session by `app_build` and reused; the other
builds here are models-only (seconds). Every image tag a test creates is removed at the end of the session.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    BASE_IMAGE,
    CA_BUNDLE,
    error_lines,
    fresh_whisper_pin,
    mirror_args,
    removed_after,
    wheelhouse_args,
)
from testkit.checkout import copy_checkout

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
CANARY = "hf_CANARY" + uuid.uuid4().hex  # an HF-token-shaped secret that must appear nowhere in the image
RUN_ID = uuid.uuid4().hex[:8]


@dataclass
class Built:
    tag: str
    models_tag: str
    report: dict
    stderr: str
    requests: list  # the mirror's request log of this build alone (RequestRecord)


@pytest.fixture(scope="session")
def tags(docker_client):
    """Every tag the session creates; removed at the end (not forced: an image still in use stays)."""
    yield from removed_after(docker_client, force=False)


@pytest.fixture(scope="session")
def mirror_server(tiny_tree):
    from modelbake.mirror.server import MirrorServer

    with MirrorServer(tiny_tree.root) as server:
        yield server


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("docker-work")


def lock_manifest(manifest: Path, server) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelbake.cli", "lock", "--manifest", str(manifest), *mirror_args(server)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def manifest_copy(tiny_tree, dest: Path, whisper_sha: str | None = None) -> Path:
    """The tiny manifest in its own directory (its lock is written beside it), optionally re-pinned."""
    dest.mkdir(parents=True, exist_ok=True)
    text = tiny_tree.manifest.read_text()
    if whisper_sha:
        text = text.replace(tiny_tree.whisper_sha256, whisper_sha)
    (dest / "models.toml").write_text(text)
    return dest / "models.toml"


def run_build_py(args: list[str], json_file: Path, repo: Path = REPO) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(repo / "build.py"), *args, "--json", str(json_file)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def common_args(manifest: Path, server, network: bool = True) -> list[str]:
    args = ["--manifest", str(manifest), "--profile", "test", "--base-image", BASE_IMAGE]
    args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    args += mirror_args(server)
    if network:
        args += ["--network", "host"]
    return args


@pytest.fixture(scope="session")
def base_manifest(tiny_tree, mirror_server, work):
    manifest = manifest_copy(tiny_tree, work / "base")
    lock_manifest(manifest, mirror_server)
    return manifest


@pytest.fixture(scope="session")
def app_build(docker_client, tags, base_manifest, mirror_server, work) -> Built:
    """The app image, built once: fetch steps forced to run (--refresh-models) with a canary HF token."""
    token = work / "hf_token"
    token.write_text(CANARY + "\n")
    tag, models_tag = f"modelbake-test/app:{RUN_ID}", f"modelbake-test/models:{RUN_ID}"
    tags += [tag, models_tag]
    args = common_args(base_manifest, mirror_server) + [
        "--tag",
        tag,
        "--models-tag",
        models_tag,
        "--hf-token-file",
        str(token),
        "--refresh-models",
        *wheelhouse_args(),
    ]
    mirror_server.clear_requests()
    proc = run_build_py(args, work / "app.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    BUILT_AT[tag] = time.monotonic()
    report = json.loads((work / "app.json").read_text())
    return Built(tag, models_tag, report, proc.stderr, mirror_server.requests)


BUILT_AT: dict[str, float] = {}  # when each session image was built (time.monotonic)


def layers_by_model(report: dict) -> dict[str, str]:
    return {m["id"]: m["layer"] for m in report["models"]}


def test_report_has_one_layer_per_model(app_build, docker_client):
    report = app_build.report
    assert {"tag", "id", "size"} <= set(report["image"])
    layers = layers_by_model(report)
    assert set(layers) == {"whisper-tiny", "spacy-ner", "bart-map", "led-reduce"}
    assert all(layer and layer.startswith("sha256:") for layer in layers.values())
    assert len(set(layers.values())) == 4, "each model must be a layer of its own"
    image = docker_client.images.get(app_build.tag)
    assert set(layers.values()) <= set(image.attrs["RootFS"]["Layers"])
    # The models image is exactly one layer per model, and the report names each model's layer there too.
    models_image = docker_client.images.get(app_build.models_tag)
    in_models_image = {m["id"]: m["models_image_layer"] for m in report["models"]}
    assert sorted(in_models_image.values()) == sorted(models_image.attrs["RootFS"]["Layers"])


def test_offline_verify(app_build, docker_client):
    out = docker_client.containers.run(app_build.tag, "verify", network_mode="none", remove=True)
    assert b"4 models load and run offline" in out


def test_user_not_root_and_models_read_only(app_build, docker_client):
    image = docker_client.images.get(app_build.tag)
    assert image.attrs["Config"]["User"] not in ("", "0", "root", "0:0")
    script = "id -u; find /models -writable | head -5; touch /models/whisper/x 2>/dev/null && echo WROTE || true"
    out = docker_client.containers.run(
        app_build.tag, ["sh", "-c", script], entrypoint=[], network_mode="none", remove=True
    ).decode()
    lines = out.split()
    assert lines[0] == "10001"
    assert "WROTE" not in out and "/models" not in out, out


def test_pin_change_rebuilds_only_that_model(request, app_build, tiny_tree, mirror_server, tags, work):
    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = manifest_copy(tiny_tree, work / "pin-change", whisper_sha=sha)
    lock_manifest(manifest, mirror_server)
    mirror_server.clear_requests()
    models_tag = f"modelbake-test/models:{RUN_ID}-pin"
    tags.append(models_tag)
    proc = run_build_py(
        common_args(manifest, mirror_server) + ["--models-only", "--models-tag", models_tag], work / "pin.json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "pin.json").read_text())
    before = {m["id"]: m["models_image_layer"] for m in app_build.report["models"]}
    after = layers_by_model(report)
    assert after["whisper-tiny"] != before["whisper-tiny"]
    for model_id in ("spacy-ner", "bart-map", "led-reduce"):
        assert after[model_id] == before[model_id], model_id
    steps = {s["stage"]: s["status"] for s in report["stages"]}
    assert steps["fetch-whisper-tiny"] == "built"
    assert all(steps[f"fetch-{m}"] == "cached" for m in ("spacy-ner", "bart-map", "led-reduce"))
    paths = [r.path for r in mirror_server.requests]
    assert paths and all(sha in p for p in paths), paths


def test_app_code_change_reruns_no_model_step(app_build, base_manifest, mirror_server, tags, work):
    copy = copy_checkout(work / "repo-copy")
    with open(copy / "src" / "modelbake" / "verify.py", "a") as f:
        f.write(f"\n# app code changed {RUN_ID}\n")
    mirror_server.clear_requests()
    tag = f"modelbake-test/app:{RUN_ID}-code"
    tags.append(tag)
    args = common_args(base_manifest, mirror_server) + ["--tag", tag, "--models-tag", app_build.models_tag]
    args += wheelhouse_args()
    proc = run_build_py(args, work / "code.json", repo=copy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "code.json").read_text())
    steps = {(s["build"], s["stage"]): s["status"] for s in report["stages"]}
    model_steps = {k: v for k, v in steps.items() if k[1].startswith("fetch")}
    assert model_steps and set(model_steps.values()) == {"cached"}, model_steps
    assert steps[("app", "deps")] == "cached"
    assert steps[("app", "app")] == "built"
    assert mirror_server.requests == []
    assert layers_by_model(report) == layers_by_model(app_build.report)


def test_durations_are_this_builds_wall_time_never_more_than_the_total(app_build, base_manifest, mirror_server, work):
    """A rebuild minutes after the first, every step from the cache: a cached step can carry the times of the build
    that first ran it, so each build's duration counts only the steps that ran in this bake."""
    wait = 120 - (time.monotonic() - BUILT_AT[app_build.tag])
    if wait > 0:
        time.sleep(wait)
    args = common_args(base_manifest, mirror_server) + ["--tag", app_build.tag, "--models-tag", app_build.models_tag]
    proc = run_build_py(args + wheelhouse_args(), work / "again.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    durations = json.loads((work / "again.json").read_text())["durations"]
    assert set(durations) == {"models build", "app build", "total"}
    assert all(0 <= seconds <= durations["total"] for seconds in durations.values()), durations


def _decompressed(data: bytes) -> bytes:
    """A layer blob as its tar: gzip or zstd (the app's new layers) or already plain (the models image's)."""
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def _scan_tar(stream, found: dict[bytes, list[str]], where: str) -> None:
    """Append to `found[needle]` every member of a tar stream holding `needle`, recursing into (compressed)
    layer tars."""
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            data = _decompressed(f.read())
            name = f"{where}/{member.name}"
            for needle, names in found.items():
                if needle in data:
                    names.append(name)
            if len(data) > 512 and data[257:262] == b"ustar":
                _scan_tar(io.BytesIO(data), found, name)


@pytest.fixture(scope="module")
def saved_images(app_build, work) -> dict[str, Path]:
    """`docker save` of the models image and the app image (an OCI layout each), written once for this module."""
    saved = {}
    for tag in (app_build.models_tag, app_build.tag):
        target = work / f"save-{tag.replace('/', '_').replace(':', '_')}.tar"
        subprocess.run(["docker", "save", "-o", str(target), tag], check=True, timeout=600)
        saved[tag] = target
    yield saved
    for target in saved.values():
        target.unlink(missing_ok=True)


def _layer_media_types(saved: Path) -> dict[str, str]:
    """diff id -> the layer's media type, from a saved image's OCI layout (index -> manifest -> config)."""
    with tarfile.open(saved) as tar:

        def blob(digest: str) -> dict:
            return json.load(tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}"))

        manifest = json.load(tar.extractfile("index.json"))
        while "manifests" in manifest:  # the layout's index, then maybe an image index
            manifest = blob(manifest["manifests"][0]["digest"])
        diff_ids = blob(manifest["config"]["digest"])["rootfs"]["diff_ids"]
        return {d: layer["mediaType"] for d, layer in zip(diff_ids, manifest["layers"], strict=True)}


def test_hf_token_reached_the_mirror_and_is_nowhere_in_the_image(app_build, docker_client, saved_images, tiny_tree):
    """The positive control first: the Hugging Face models' requests reached the mirror with a token (the
    mirror logs the Authorization scheme, never its value), so the token was in the build. Then its value is
    in neither image's `docker save` (every layer, config and manifest, nested layer tars opened), nor their
    config or history, nor build.py's output. The same scan finds the BART model's `refs/main` (its commit id)
    inside a layer of each image: it reads the layers' files."""
    hub = [r for r in app_build.requests if r.matches("/huggingface/")]
    assert hub, "the build fetched no Hugging Face model from the mirror (--refresh-models makes it)"
    assert {r.authorization for r in hub} == {"Bearer"}, [(r.path, r.authorization) for r in hub]
    # Only the Hub client takes the token: the Whisper and spaCy downloads carry none.
    others = [r for r in app_build.requests if not r.matches("/huggingface/")]
    assert others and {r.authorization for r in others} == {None}, [(r.path, r.authorization) for r in others]

    assert CANARY not in app_build.stderr
    known = tiny_tree.bart_commit.encode()
    for tag, saved in saved_images.items():
        found: dict[bytes, list[str]] = {CANARY.encode(): [], known: []}
        with open(saved, "rb") as f:
            _scan_tar(f, found, tag)
        assert found[CANARY.encode()] == [], found
        refs = [name for name in found[known] if name.endswith("/models--modelbake-tiny--bart/refs/main")]
        assert refs, f"the scan of {tag} found no layer's refs/main: it does not read the layers ({found[known]})"
        image = docker_client.images.get(tag)
        assert CANARY not in json.dumps(image.attrs), "in the image config (docker image inspect)"
        assert CANARY not in json.dumps(image.history()), "in the image history"


def test_every_layer_uncompressed_and_the_apps_model_layers_the_models_images_blobs(app_build, saved_images):
    """build.py's defaults: weights barely compress, so the models image's layers are plain tars, and so are
    the app's, whose model layers are then the models image's very blobs (shared by every app on it). Forced:
    layers the build cache held as gzip (the base image's) are converted."""
    models = _layer_media_types(saved_images[app_build.models_tag])
    assert models and all(t.endswith(("rootfs.diff.tar", "image.layer.v1.tar")) for t in models.values()), models
    assert {m["models_image_layer"] for m in app_build.report["models"]} <= set(models)
    app = _layer_media_types(saved_images[app_build.tag])
    copies = [m["layer"] for m in app_build.report["models"]]
    assert copies and set(copies) <= set(app)
    assert all(t.endswith(("rootfs.diff.tar", "image.layer.v1.tar")) for t in app.values()), app


@pytest.mark.parametrize("with_app", [False, True], ids=["models-only", "models-and-app"])
def test_corrupt_mirror_fails_naming_the_model(with_app, request, tiny_tree, mirror_server, docker_client, work):
    """One error line naming the models build's fetch step and the model, and no image tagged. With the app,
    the models target and the app are one bake whose graphs both hold that fetch step: it is still named as the
    models build's, whichever target the stream reported it under first."""
    name = "corrupt-app" if with_app else "corrupt"
    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = manifest_copy(tiny_tree, work / name, whisper_sha=sha)
    lock_manifest(manifest, mirror_server)
    models_tag = f"modelbake-test/models:{RUN_ID}-{name}"
    args, absent = common_args(manifest, mirror_server) + ["--models-tag", models_tag], [models_tag]
    if with_app:
        absent.append(f"modelbake-test/app:{RUN_ID}-{name}")
        args += ["--tag", absent[-1], *wheelhouse_args()]
    else:
        args.append("--models-only")
    mirror_server.faults.corrupt.add(sha)
    try:
        proc = run_build_py(args, work / f"{name}.json")
    finally:
        mirror_server.faults.corrupt.discard(sha)
    assert proc.returncode != 0
    error = error_lines(proc.stderr)
    assert len(error) == 1, proc.stderr[-2000:]
    assert error[0].startswith("error: models build: step fetch-whisper-tiny failed: model whisper-tiny:"), error
    assert "sha256 mismatch" in error[0], error
    for tag in absent:
        _assert_not_tagged(docker_client, tag)


def test_mirror_down_fails_naming_the_model(request, tiny_tree, mirror_server, docker_client, work):
    from modelbake.mirror.server import MirrorServer

    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = manifest_copy(tiny_tree, work / "down", whisper_sha=sha)
    lock_manifest(manifest, mirror_server)
    down = MirrorServer(tiny_tree.root).start()
    down.stop()  # its port is now closed
    models_tag = f"modelbake-test/models:{RUN_ID}-down"
    proc = run_build_py(common_args(manifest, down) + ["--models-only", "--models-tag", models_tag], work / "d.json")
    assert proc.returncode != 0
    error = error_lines(proc.stderr)
    assert len(error) == 1 and "whisper-tiny" in error[0], proc.stderr[-2000:]
    _assert_not_tagged(docker_client, models_tag)


def test_a_loopback_mirror_without_network_host_is_reached_on_the_host_network(
    request, tiny_tree, mirror_server, tags, work
):
    """Issue 12 item 5: no `--network` and a mirror on 127.0.0.1: build.py runs the models build on the host
    network itself, says so in one line, and the fetch step reaches the mirror (a fresh pin, so it must)."""
    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = manifest_copy(tiny_tree, work / "loopback", whisper_sha=sha)
    lock_manifest(manifest, mirror_server)
    mirror_server.clear_requests()
    models_tag = f"modelbake-test/models:{RUN_ID}-loopback"
    tags.append(models_tag)
    args = common_args(manifest, mirror_server, network=False) + ["--models-only", "--models-tag", models_tag]
    assert "--network" not in args
    proc = run_build_py(args, work / "loopback.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if "--network host" in line]
    assert notes == [
        f"build.py: the models build runs with --network host: the huggingface mirror {mirror_server.url}/huggingface "
        "is on this machine's loopback, which build steps reach only on the host network"
    ]
    report = json.loads((work / "loopback.json").read_text())
    assert {s["stage"]: s["status"] for s in report["stages"]}["fetch-whisper-tiny"] == "built"
    assert [r.status for r in mirror_server.requests_for(sha)] and all(
        r.status == 200 for r in mirror_server.requests_for(sha)
    )


def _assert_not_tagged(client, tag: str) -> None:
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        client.images.get(tag)


# --- the reference app, end to end in the offline image (issue 5) ---

PROFILE_IDS = {"whisper-tiny", "spacy-ner", "bart-map", "led-reduce"}
APP_UID = 10001


@dataclass
class AppRun:
    exit_code: int
    stdout: str
    stderr: str
    attrs: dict  # the container's inspect, taken after it exited


def run_app(client, image: str, args: list[str], data: Path) -> AppRun:
    """`docker run --rm --network none -v DATA:/data IMAGE ARGS...` through the SDK, as the image's own user."""
    container = client.containers.run(
        image, args, network_mode="none", volumes={str(data): {"bind": "/data", "mode": "rw"}}, detach=True
    )
    try:
        status = container.wait(timeout=600)
        stdout = container.logs(stdout=True, stderr=False).decode()
        stderr = container.logs(stdout=False, stderr=True).decode()
        container.reload()
        return AppRun(status["StatusCode"], stdout, stderr, container.attrs)
    finally:
        container.remove(force=True)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """The directory mounted at /data: writable for the app's uid 10001 (the test runs as another user)."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    return data


def test_process_spoken_episode_offline(app_build, docker_client, mirror_server, tiny_tree, data_dir):
    from podcast_pipeline import sample

    sample.synthesize(data_dir / "ep.wav")  # espeak-ng: .ci/run and `make demo` install it
    duration = sample.duration(data_dir / "ep.wav")
    mirror_server.clear_requests()
    args = ["process", "/data/ep.wav", "--out", "/data/result.json"]
    args += ["--title", sample.TITLE, "--description", sample.DESCRIPTION, "--max-new-tokens", "8"]
    run = run_app(docker_client, app_build.tag, args, data_dir)
    assert run.exit_code == 0, run.stderr[-3000:]
    assert run.stdout == ""  # the JSON went to --out; progress lines go to stderr

    # nothing touched the network: no interface but loopback, and the mirror the image was built from saw nothing
    assert run.attrs["HostConfig"]["NetworkMode"] == "none"
    networks = run.attrs["NetworkSettings"]["Networks"]
    assert set(networks) == {"none"} and not any(n.get("IPAddress") for n in networks.values()), networks
    assert mirror_server.requests == []
    net_dev = docker_client.containers.run(
        app_build.tag, ["cat", "/proc/net/dev"], network_mode="none", remove=True
    ).decode()
    interfaces = [line.split(":")[0].strip() for line in net_dev.splitlines()[2:] if ":" in line]
    assert interfaces == ["lo"], net_dev

    result_file = data_dir / "result.json"
    assert result_file.stat().st_uid == APP_UID  # written by the image's own non-root user
    assert sorted(p.name for p in data_dir.iterdir()) == ["ep.wav", "result.json"]  # no temp files left
    result = json.loads(result_file.read_text())
    for key in ("transcript", "segments", "speakers", "summary", "models", "timings", "audio", "summary_stats"):
        assert key in result, key
    assert result["audio"]["path"] == "/data/ep.wav"
    assert result["audio"]["sample_rate"] == 22050 and result["audio"]["channels"] == 1
    assert result["audio"]["duration"] == pytest.approx(duration, abs=0.01)
    assert isinstance(result["transcript"], str) and isinstance(result["summary"], str)
    assert isinstance(result["segments"], list)
    for segment in result["segments"]:
        assert set(segment) == {"start", "end", "text"} and isinstance(segment["text"], str)
        assert 0 <= segment["start"] <= segment["end"] <= duration + 0.01
    for stage in ("audio", "load_whisper", "transcribe", "load_spacy", "speakers", "load_summarizers", "summarize"):
        assert 0 <= result["timings"][stage] <= result["timings"]["total"], stage

    # every model of the profile, at its locked revision, and used: `calls` counts inference calls per model
    models = {m["id"]: m for m in result["models"]}
    assert set(models) == PROFILE_IDS
    assert (models["whisper-tiny"]["name"], models["whisper-tiny"]["revision"]) == (
        tiny_tree.whisper_name,
        tiny_tree.whisper_sha256,
    )
    assert (models["spacy-ner"]["name"], models["spacy-ner"]["revision"]) == (
        tiny_tree.spacy_name,
        tiny_tree.spacy_version,
    )
    assert (models["bart-map"]["repo"], models["bart-map"]["revision"]) == (tiny_tree.bart_repo, tiny_tree.bart_commit)
    assert (models["led-reduce"]["revision"], models["led-reduce"]["role"]) == (tiny_tree.led_commit, "reduce")
    assert models["whisper-tiny"]["calls"] == 1
    assert models["spacy-ner"]["calls"] >= 2  # title and description, plus the transcript when there is one
    # The tiny random Whisper ignores the audio and always emits the same few tokens (never nothing), so the
    # transcript is non-empty and both summarizers run: one map call per chunk, then one reduce call.
    assert result["transcript"].strip()
    stats = result["summary_stats"]
    assert models["bart-map"]["calls"] == stats["map_calls"] == stats["summary_chunks"] >= 1
    assert models["led-reduce"]["calls"] == stats["reduce_calls"] == 1

    # The tiny spaCy pipeline was trained on sentences naming exactly these people (tinymodels.spacy_pipeline);
    # the title is one of those sentences and the description names two of them.
    speakers = {s["name"]: s for s in result["speakers"]}
    assert "Alice Smith" in speakers and "Bob Jones" in speakers, result["speakers"]
    assert {"title", "description"} <= set(speakers["Alice Smith"]["sources"]), result["speakers"]
    assert "title" in speakers["Bob Jones"]["sources"], result["speakers"]


def test_process_rejects_non_audio_in_the_image(app_build, docker_client, data_dir):
    (data_dir / "notes.wav").write_text("Show notes: Alice Smith talked with Bob Jones.\n")
    run = run_app(docker_client, app_build.tag, ["process", "/data/notes.wav", "--out", "/data/result.json"], data_dir)
    assert run.exit_code == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: /data/notes.wav: not a WAV file"), run.stderr
    assert run.stdout == ""
    assert [p.name for p in data_dir.iterdir()] == ["notes.wav"]  # no result, no temp file
