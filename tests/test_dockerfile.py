"""Dockerfile.models generation, its drift check, the build.py argv (dry run) and the engine's error lines."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelbake.image import dockerfile
from modelbake.image.bake import BuildSpec, output_spec
from modelbake.image.bakeerrors import BuildxError, bake_error
from modelbake.image.dockerfile import render_models_dockerfile
from modelbake.image.layers import plan_layers
from modelbake.image.rawjson import parse_rawjson
from modelbake.lockfile import Lock, LockedFile, LockedModel, entry_json, spec_fields
from modelbake.manifest import load_manifest
from testkit.tinymodels import manifest_text

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]

TINY_MANIFEST = manifest_text(whisper_sha256="a" * 64, spacy_sha256="b" * 64)


def _lock_for(manifest, sizes: dict[str, int] | None = None) -> Lock:
    models = {}
    for spec in manifest.models.values():
        if sizes is not None and spec.id not in sizes:
            continue
        revision = {"whisper": "a" * 64, "spacy": "0.1.0", "huggingface": "c" * 40}[spec.family]
        models[spec.id] = LockedModel(
            id=spec.id,
            family=spec.family,
            spec=spec_fields(spec),
            revision=revision,
            files=(LockedFile(path="f.bin", size=(sizes or {}).get(spec.id, 10), sha256="d" * 64),),
        )
    return Lock(models=models)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(TINY_MANIFEST)
    manifest = load_manifest(path)
    return manifest, _lock_for(manifest)


def test_one_stage_and_one_layer_per_model(tiny):
    manifest, lock = tiny
    text = render_models_dockerfile(manifest, lock, "test")
    assert "# syntax" not in text  # a syntax line would pull the frontend image from a registry
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    for spec in manifest.models.values():
        assert f"FROM fetch AS fetch-{spec.id}\n" in text
        assert entry_json(lock.models[spec.id]) in text  # the step is keyed on that entry only
    copies = [line for line in text.splitlines() if line.startswith("COPY --link --from=fetch-")]
    # Each model's files under a root of its own, copied with their directories (stamped, never build-time).
    assert copies == [
        "COPY --link --from=fetch-whisper-tiny /out/whisper-tiny/ /",
        "COPY --link --from=fetch-spacy-ner /out/spacy-ner/ /",
        "COPY --link --from=fetch-bart-map /out/bart-map/ /",
        "COPY --link --from=fetch-led-reduce /out/led-reduce/ /",
    ]
    # Only the model's own paths move there (never /models/.modelbake, the fetch state), then get stamped.
    assert "&& mv /models/whisper/tiny-random.en.pt /out/whisper-tiny/models/whisper/tiny-random.en.pt " in text
    # each spaCy pipeline is a pip --target directory of its own (several pipelines: several layers)
    assert "&& mv /models/spacy/en_tiny_ner /out/spacy-ner/models/spacy/en_tiny_ner " in text
    assert "mv /models/huggingface/hub/models--modelbake-tiny--bart /out/bart-map/models/huggingface/hub/" in text
    assert text.count('&& find /out/led-reduce -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +') == 1
    assert text.count("ARG SOURCE_DATE_EPOCH=0") == 4
    assert "/models/.modelbake" not in text.split("FROM scratch AS models")[1]
    assert "torch" not in text.split("FROM fetch AS")[0].replace("no torch", "")
    # secrets come in as mounts only, never as ARG/ENV values
    assert "id=hf_token" in text and "id=mirrors" in text and "id=ca" in text
    assert "ARG HF" not in text and "HF_TOKEN=" not in text


def test_changing_one_pin_changes_one_step_only(tiny, tmp_path):
    manifest, lock = tiny
    before = render_models_dockerfile(manifest, lock, "test")
    changed = dict(lock.models)
    old = changed["whisper-tiny"]
    changed["whisper-tiny"] = LockedModel(
        id=old.id, family=old.family, spec=old.spec, revision="e" * 64, files=old.files
    )
    after = render_models_dockerfile(manifest, Lock(models=changed), "test")

    def stages(text: str) -> list[str]:  # instructions only: a model's comment line sits above its stage
        return "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")).split("\nFROM ")

    stages_before, stages_after = stages(before), stages(after)
    differing = [a.split()[2] for a, b in zip(stages_after, stages_before, strict=True) if a != b]
    assert differing == ["fetch-whisper-tiny"]


def test_unlocked_models_fetch_from_the_manifest_entry(tiny):
    manifest, _ = tiny
    text = render_models_dockerfile(manifest, None, "test")
    assert "NOT LOCKED" in text
    cmd = "python -m modelbake.fetch_entry --manifest /dev/stdin --model bart-map --dest /models <<'MANIFEST'"
    assert cmd in text
    entry = '[models.bart-map]\nfamily = "huggingface"\nrepo = "modelbake-tiny/bart"\nrevision = "main"\n'
    assert entry + 'task = "summarization"\nrole = "map"\nMANIFEST' in text


def test_unlocked_entry_parses_back_to_the_same_spec(tiny, tmp_path):
    import tomllib

    manifest, _ = tiny
    for spec in manifest.models.values():
        path = tmp_path / f"{spec.id}.toml"
        path.write_text(dockerfile.manifest_entry_toml(spec))
        assert load_manifest(path).models[spec.id] == spec
        tomllib.loads(path.read_text())


def test_the_app_dockerfile_starts_from_the_models_image_and_depends_on_no_manifest():
    """Models at the bottom: the app stage is FROM the models stage, the base's root filesystem and the venv are
    one layer each above it, and nothing in the file is generated (any models image fits it)."""
    text = (REPO / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith(("#", " "))]
    app = instructions[instructions.index("FROM models AS app") :]
    assert app[:3] == [
        "FROM models AS app",
        "COPY --link --from=base / /",
        "COPY --link --from=deps /opt/venv /opt/venv",
    ]
    assert "FROM ${MODELS_IMAGE} AS models" in instructions
    assert "USER 10001:10001" in app and app[-2:] == [
        'ENTRYPOINT ["/usr/local/bin/modelbake-entrypoint"]',
        'CMD ["verify"]',
    ]
    assert "generated" not in text.lower() and "--exclude" not in text


def test_the_models_image_says_where_its_spacy_pipelines_are(tiny):
    """The app's PYTHONPATH lists every pipeline through the models image's MODELBAKE_SPACY_PATH (the app
    inherits the models image's config); a models image without pipelines sets nothing."""
    manifest, lock = tiny
    text = render_models_dockerfile(manifest, lock, "test")
    models_stage = text[text.index("FROM scratch AS models") :]
    assert "ENV MODELBAKE_SPACY_PATH=/models/spacy/" in models_stage
    assert "${MODELBAKE_SPACY_PATH:+:${MODELBAKE_SPACY_PATH}}" in (REPO / "Dockerfile").read_text()
    whisper = next(s for s in manifest.models.values() if s.family == "whisper")
    path = manifest.path.with_name("whisper.toml")
    path.write_text(f'[models.{whisper.id}]\nfamily = "whisper"\nname = "{whisper.name}"\nsha256 = "{"a" * 64}"\n')
    assert "MODELBAKE_SPACY_PATH" not in render_models_dockerfile(load_manifest(path), None)


def test_layers_largest_locked_first_then_unlocked(tiny):
    """An image store unpacks again every layer above a changed one: big models go to the bottom, unlocked on top."""
    manifest, _ = tiny
    ids = [spec.id for spec in manifest.select("test")]
    assert len(ids) == 4
    sizes = {ids[0]: 5, ids[1]: 900, ids[3]: 900}  # ids[2] unlocked; ids[1] and ids[3] tie
    lock = _lock_for(manifest, sizes)
    expected = [ids[1], ids[3], ids[0], ids[2]]
    layers = plan_layers(manifest.select("test"), lock, None)
    assert [layer.model_id for layer in layers] == expected

    models_text = render_models_dockerfile(manifest, lock, "test")
    copies = [line for line in models_text.splitlines() if line.startswith("COPY --link --from=fetch-")]
    assert copies == [dockerfile.layer_copy_line(layer) for layer in layers]
    # the fetch stages keep manifest order (they are independent; only the layer stack has an order)
    stages = [line.split(" AS ")[1] for line in models_text.splitlines() if line.startswith("FROM fetch AS ")]
    assert stages == [dockerfile.stage_name(i) for i in ids]


def test_committed_dockerfiles_match_models_toml():
    """Drift check: regenerate from models.toml + models.lock and compare with the committed files."""
    proc = subprocess.run(
        [sys.executable, "-m", "modelbake.cli", "dockerfile", "--manifest", "models.toml", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_drift_is_detected(tmp_path):
    for name in ("models.toml", "Dockerfile", "Dockerfile.models"):
        shutil.copy(REPO / name, tmp_path / name)
    with open(tmp_path / "models.toml", "a") as f:
        f.write('\n[models.extra]\nfamily = "whisper"\nname = "small.en"\nsha256 = "%s"\n' % ("f" * 64))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelbake.cli",
            "dockerfile",
            "--manifest",
            str(tmp_path / "models.toml"),
            "--root",
            str(tmp_path),
            "--check",
        ],
        capture_output=True,
        text=True,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert (
        proc.returncode == 1
        and len(errors) == 1
        and errors[0].endswith(f"/Dockerfile.models: out of date with {tmp_path / 'models.toml'} and its lock")
    )
    assert "make dockerfile" in proc.stderr
    before = (tmp_path / "Dockerfile").read_text()
    # regenerating fixes it, and leaves the app Dockerfile alone
    argv = [sys.executable, "-m", "modelbake.cli", "dockerfile", "--manifest", str(tmp_path / "models.toml"),
            "--root", str(tmp_path)]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True)
    assert "fetch-extra" in (tmp_path / "Dockerfile.models").read_text()
    assert (tmp_path / "Dockerfile").read_text() == before


# --- build.py: argv assembly (dry run) ---------------------------------------------------------------


def dry_run(capsys, argv: list[str]) -> tuple[str, dict]:
    """build.py --dry-run: the bake command line, then the bake definition it would run (JSON)."""
    from modelbake.imagebuild import main

    assert main([*argv, "--dry-run"], root=REPO) == 0
    command, _, definition = capsys.readouterr().out.partition("\n")
    return command, json.loads(definition)["target"]


def test_dry_run_prints_one_bake_of_both_images_in_one_graph(tmp_path, capsys):
    manifest = tmp_path / "m" / "models.toml"
    manifest.parent.mkdir()
    manifest.write_text(TINY_MANIFEST)
    token = tmp_path / "token"
    token.write_text("hf_secret_value")
    command, targets = dry_run(
        capsys,
        ["--manifest", str(manifest), "--profile", "test", "--mirror", "whisper=http://127.0.0.1:9/whisper",
         "--network", "host", "--ca-bundle", str(token), "--hf-token-file", str(token), "--wheelhouse",
         str(tmp_path), "--tag", "me/app:1", "--base-image", "local/base:1"],
    )  # fmt: skip
    assert command.startswith("docker buildx bake --file BAKE.json --allow network.host ")
    assert f"--allow fs.read={token}" in command and command.endswith(" --progress rawjson models app")
    models, app = targets["models"], targets["app"]
    assert models["target"] == "models" and models["tags"][0].startswith("modelbake/models:test-unlocked-")
    assert models["args"]["SOURCE_DATE_EPOCH"] == "0"  # model layers and image identical across cold builds
    assert f"id=hf_token,src={token}" in models["secret"] and f"id=ca,src={token}" in models["secret"]
    assert any(s.startswith("id=mirrors,src=") for s in models["secret"])
    assert "127.0.0.1:9" not in json.dumps(targets)  # the mirror only via the secret
    assert models["network"] == "host" and models["entitlements"] == ["network.host"]
    assert models["args"]["BASE_IMAGE"] == "local/base:1"
    assert app["target"] == "app" and app["tags"] == ["me/app:1"]
    # one graph: the app's `models` stage IS the models target, nothing loaded in between
    assert app["contexts"]["models"] == "target:models"
    assert app["contexts"]["wheels"] == str(tmp_path) and "manifest" in app["contexts"]
    assert not any("hf_token" in s for s in app.get("secret", []))  # the app build gets no token
    assert "hf_secret_value" not in command + json.dumps(targets)
    # model weights barely compress: every layer uncompressed (forced), so the app's model layers are the models image's blobs
    assert models["output"] == ["type=image,compression=uncompressed,force-compression=true"]
    assert app["output"] == ["type=image,compression=uncompressed,force-compression=true"]
    assert models["attest"] == app["attest"] == ["type=provenance,disabled=true"]


def test_dry_run_what_another_builder_gets(tmp_path, capsys):
    """A docker-container (or remote) builder: the same one graph, pushed by the builder itself with --push,
    else loaded into the engine through the docker exporter; never the local image store in between."""
    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    base = ["--manifest", str(manifest), "--builder", "ci", "--tag", "reg.example/app:1", "--models-tag",
            "reg.example/models:1"]  # fmt: skip
    command, targets = dry_run(capsys, [*base, "--push"])
    assert command.startswith("docker buildx bake --builder ci --file BAKE.json ")
    assert targets["app"]["contexts"]["models"] == "target:models"
    assert targets["models"]["output"] == ["type=image,compression=uncompressed,force-compression=true,push=true"]
    assert targets["app"]["output"][0].endswith(",push=true")
    _, loaded = dry_run(capsys, base)
    assert loaded["models"]["output"][0].startswith("type=docker,")
    _, multi = dry_run(capsys, [*base, "--push", "--platform", "linux/amd64,linux/arm64"])
    assert multi["models"]["platforms"] == multi["app"]["platforms"] == ["linux/amd64", "linux/arm64"]


def test_dry_run_on_a_pushed_models_image_has_no_models_target(tmp_path, capsys):
    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    ref = "127.0.0.1:5000/team/models@sha256:" + "a" * 64
    command, targets = dry_run(capsys, ["--manifest", str(manifest), "--models-image", ref])
    assert list(targets) == ["app"] and command.endswith(" app")
    assert targets["app"]["contexts"]["models"] == f"docker-image://{ref}"


def test_dry_run_cache_blobs_follow_each_images_layer_compression(tmp_path, capsys):
    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    base = ["--manifest", str(manifest), "--cache", f"local:{tmp_path}/c"]
    _, targets = dry_run(capsys, base)
    assert "mode=max,compression=uncompressed,force-compression=true" in targets["models"]["cache-to"][0]
    assert "mode=min,compression=uncompressed,force-compression=true" in targets["app"]["cache-to"][0]
    _, targets = dry_run(capsys, [*base, "--cache-compression", "gzip", "--layer-compression", "zstd", "--push"])
    assert "compression=gzip,force-compression=true" in targets["models"]["cache-to"][0]
    assert "compression=gzip" in targets["app"]["cache-to"][0]
    assert targets["models"]["output"] == [
        "type=image,compression=zstd,force-compression=true,oci-mediatypes=true,push=true"
    ]


def test_output_spec_per_builder_and_push():
    spec = BuildSpec(context=Path("/c"), dockerfile=Path("/c/D"), layer_compression="gzip")
    assert output_spec(spec) == "type=image,compression=gzip"
    spec.builder = "ci"  # another builder's image lands in the engine through the docker exporter
    assert output_spec(spec) == "type=docker,compression=gzip"
    spec.push = True
    assert output_spec(spec) == "type=image,compression=gzip,push=true"
    assert output_spec(BuildSpec(context=Path("/c"), dockerfile=Path("/c/D"))) is None
    with pytest.raises(ValueError, match="brotli"):
        output_spec(BuildSpec(context=Path("/c"), dockerfile=Path("/c/D"), layer_compression="brotli"))


def test_dry_run_models_only(tmp_path, capsys):
    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    command, targets = dry_run(capsys, ["--manifest", str(manifest), "--models-only", "--refresh-models"])
    assert list(targets) == ["models"] and command.endswith(" models")
    assert sorted(targets["models"]["no-cache-filter"]) == [
        "fetch-bart-map",
        "fetch-led-reduce",
        "fetch-spacy-ner",
        "fetch-whisper-tiny",
    ]


def test_bad_option_values_are_one_line_errors(tmp_path, capsys):
    from modelbake.imagebuild import main

    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    assert main(["--manifest", str(manifest), "--ca-bundle", str(tmp_path / "nope"), "--dry-run"], root=REPO) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --ca-bundle ") and "no such file" in errors[0]
    assert main(["--manifest", str(manifest), "--mirror", "bogus", "--dry-run"], root=REPO) == 2
    assert main(["--manifest", str(manifest), "--profile", "nope", "--dry-run"], root=REPO) == 2


def test_bake_gets_each_value_as_one_argument_never_through_a_shell(tmp_path, monkeypatch):
    """What `docker` receives from run_bake: a stand-in `docker` on PATH records its argv and the bake definition
    it was given. A tag, build arg and secret path full of shell syntax arrive whole, and nothing of them ran."""
    from modelbake.image.bake import bake_argv, bake_definition, run_bake

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    stub = bin_dir / "docker"
    stub.write_text(
        f"#!{sys.executable}\nimport json, sys\nargv = sys.argv[1:]\n"
        f"definition = json.load(open(argv[argv.index('--file') + 1]))\n"
        f"open({str(record)!r}, 'w').write(json.dumps([argv, definition]))\n"
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    canary = tmp_path / "ran"
    evil = f"a b; touch {canary} $(touch {canary})"
    spec = BuildSpec(
        context=tmp_path / "ctx dir",
        dockerfile=Path("/ctx/Docker file"),
        tags=[evil],
        build_args={"X": evil},
        secrets={"ca": tmp_path / "my ca;.pem"},
    )
    run_bake({"x": spec})
    received, definition = json.loads(record.read_text())
    assert definition == bake_definition({"x": spec})
    for flag, stand_in in (("--file", "D"), ("--metadata-file", "M")):  # temp files of run_bake's own
        received[received.index(flag) + 1] = stand_in
    assert received == [str(a) for a in bake_argv({"x": spec}, Path("D"), Path("M"))][1:]
    assert definition["target"]["x"]["tags"] == [evil] and definition["target"]["x"]["args"] == {"X": evil}
    assert definition["target"]["x"]["secret"] == [f"id=ca,src={tmp_path / 'my ca;.pem'}"]
    assert not canary.exists()


# --- rawjson parsing and error mapping -----------------------------------------------------------------


def _raw(*docs) -> str:
    return "\n".join(json.dumps(d, indent=2) for d in docs)


def test_rawjson_steps_and_failed_model_message():
    logs = (
        "fetch whisper-tiny\nerror: model whisper-tiny: x.pt: sha256 mismatch: expected a, got b; file discarded "
        "(http://m/x.pt)\nhint: check models.toml: models.whisper-tiny.sha256\n"
    )
    text = (
        _raw(
            {
                "vertexes": [
                    {
                        "digest": "d1",
                        "name": "[fetch-whisper-tiny 1/1] RUN modelbake preload",
                        "started": "2026-01-01T00:00:00.5Z",
                        "completed": "2026-01-01T00:00:02.5Z",
                        "error": "process did not complete successfully: exit code: 1",
                    }
                ]
            },
            {
                "vertexes": [
                    {
                        "digest": "d2",
                        "name": "[fetch 2/4] RUN pip",
                        "cached": True,
                        "started": "2026-01-01T00:00:00Z",
                        "completed": "2026-01-01T00:00:00Z",
                    }
                ]
            },
            {"logs": [{"vertex": "d1", "stream": 2, "data": base64.b64encode(logs.encode()).decode()}]},
        )
        + "\nERROR: failed to solve: process did not complete\n"
    )
    steps, rest = parse_rawjson(text)
    by = {s.digest: s for s in steps}
    assert by["d1"].seconds == pytest.approx(2.0) and by["d1"].stage == "fetch-whisper-tiny"
    assert by["d2"].cached
    assert rest == ["ERROR: failed to solve: process did not complete"]
    err = bake_error(["models"], ["docker"], 1, steps, rest)
    assert type(err) is BuildxError  # a failed step, not mistaken for a network or secret problem (subclasses)
    assert err.message.startswith("models build: step fetch-whisper-tiny failed: model whisper-tiny: x.pt: sha256")
    assert "\n" not in err.message and err.hint == "check models.toml: models.whisper-tiny.sha256"


def test_an_existing_models_image_is_reused_only_as_shipped(tmp_path):
    """The lock-hash tag says which models, not how their layers were packed: another compression rebuilds."""
    from modelbake.image.plan import MODELS_BUILT, MODELS_REUSED
    from modelbake.lockfile import write_lock
    from plans import plan_of

    manifest = tmp_path / "models.toml"
    manifest.write_text(TINY_MANIFEST)
    write_lock(_lock_for(load_manifest(manifest)), manifest.with_name("models.lock"))

    def plan(*extra: str, present: bool = True):
        return plan_of(["--manifest", str(manifest), *extra], tmp_path / "work", models_image_present=present)

    reused = plan()
    assert reused.models_from == MODELS_REUSED and list(reused.targets) == ["app"]
    assert reused.targets["app"].build_contexts["models"] == f"docker-image://{reused.models_tag}"
    assert plan(present=False).models_from == MODELS_BUILT  # the positive control: not in the engine, built
    assert plan("--layer-compression", "zstd").models_from == MODELS_BUILT
    assert plan("--cache", f"local:{tmp_path}/c").models_from == MODELS_BUILT
    assert plan("--models-tag", "me/models:1").models_from == MODELS_BUILT


@pytest.mark.parametrize("first", ["app", "models"])
def test_a_vertex_two_bake_targets_share_is_a_step_of_each(first):
    """bake reports a shared vertex (a fetch step the app's graph also holds) under one digest, once per target,
    in whichever order the solves get to it: the models target keeps its fetch step either way."""
    order = [first, "models" if first == "app" else "app"]
    fetch = [
        {
            "digest": "d1",
            "name": f"[{target} fetch-whisper-tiny 1/1] RUN modelbake preload",
            "cached": True,
            "started": "2026-01-01T00:00:00Z",
            "completed": "2026-01-01T00:00:00Z",
        }
        for target in order
    ]
    log = {"logs": [{"vertex": "d1", "stream": 1, "data": base64.b64encode(b"fetch whisper-tiny\n").decode()}]}
    steps, _ = parse_rawjson(_raw({"vertexes": fetch}, log))
    by_target = {s.target: s for s in steps}
    assert sorted(by_target) == ["app", "models"]
    for step in by_target.values():
        assert step.stage == "fetch-whisper-tiny" and step.cached and step.logs == ["fetch whisper-tiny"]


@pytest.mark.parametrize("first", ["app", "models"])
def test_a_shared_failed_step_is_named_as_the_models_builds(first):
    """A fetch step that fails in a bake of both targets comes under each, in either order: the error names
    the models build (whose step it is), and a step cancelled because of it is never the one named."""
    from modelbake.image.bakeerrors import failed_step

    order = [first, "models" if first == "app" else "app"]
    vertexes = [
        {"digest": "d1", "name": f"[{target} fetch-whisper-tiny 1/1] RUN modelbake preload", "error": "exit code: 1"}
        for target in order
    ]
    vertexes.append({"digest": "d0", "name": "[app deps 2/2] RUN pip install", "error": "context canceled"})
    steps, _ = parse_rawjson(_raw({"vertexes": vertexes}))
    failed = failed_step(steps, ["models", "app"])
    assert failed is not None and failed.target == "models" and failed.stage == "fetch-whisper-tiny"
    assert failed_step([s for s in steps if s.digest == "d0"], ["models", "app"]) is None


def test_a_base_image_the_engine_cannot_get_names_it_and_the_offline_fix():
    """Seen offline without --base-image: BuildKit's metadata step fails on a DNS error; the line names the image
    and the hint the way out (a local base image), not a raw resolver message alone."""
    name = "[internal] load metadata for docker.io/library/python:3.11-slim-bookworm"
    reason = 'failed to do request: Head "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host'
    steps, rest = parse_rawjson(_raw({"vertexes": [{"digest": "m", "name": name, "error": reason}]}))
    err = bake_error(["models", "app"], ["docker"], 1, steps, rest)
    assert err.message == f"models build: cannot get the image docker.io/library/python:3.11-slim-bookworm: {reason}"
    assert "--base-image" in (err.hint or "") and "make-base-image.sh" in (err.hint or "")


def test_a_targets_seconds_count_only_the_steps_this_bake_ran():
    """Seen by a user: `models build 809.6s, app build 810.4s, total 3.6s`: a cached step can come with the times of
    the build that first ran it. A target's wall time counts the steps inside this bake's window only."""
    from datetime import UTC, datetime, timedelta

    from modelbake.image.bake import target_seconds
    from modelbake.image.rawjson import Step

    began = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    window = (began, began + timedelta(seconds=3.6))
    at = lambda s: began + timedelta(seconds=s)  # noqa: E731
    old = Step("a", "[models fetch-x 1/1] RUN fetch", cached=True, started=at(-806), completed=at(-805))
    ran = [
        Step("b", "[models models 1/4] COPY", started=at(0.2), completed=at(1.0)),
        Step("c", "[models] exporting to image", started=at(1.0), completed=at(3.0)),
    ]
    assert target_seconds(ran, window) == pytest.approx(2.8)
    assert target_seconds([old, *ran], window) == pytest.approx(2.8)  # the old step would make it 809 s
    assert target_seconds([old], window) == 0.0
    late = Step("d", "[app] exporting to image", started=at(0.5), completed=at(9.0))  # a clock a little off
    assert target_seconds([late], window) == 0.0 and target_seconds([*ran, late], window) <= 3.6
