"""One owner for every path of a model (issue 12, item 1): the caches, a `--dest` tree, /models in an image and
the layer root come from `modelbake.paths`, and each spaCy pipeline is a directory (so a layer) of its own."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from conftest import REPO, mirror_args, run_cli
from modelbake.cli import main
from modelbake.image.dockerfile import layer_copy_line, render_models_dockerfile
from modelbake.image.layers import model_layers
from modelbake.manifest import HuggingFaceSpec, SpacySpec, WhisperSpec, load_manifest
from modelbake.paths import Layout, image_env, image_paths, image_spacy_path, layer_paths, layer_root
from testkit.tinymodels import manifest_text, with_spacy_pipeline

WHISPER = WhisperSpec(id="w", name="tiny.en", sha256="a" * 64)
HF = HuggingFaceSpec(id="Bart-Map", repo="org/bart", revision="main")
NER = SpacySpec(id="spacy-ner", name="en_tiny_ner", version="0.1.0", sha256="b" * 64)
PEOPLE = SpacySpec(id="spacy-people", name="en_tiny_people", version="0.1.0", sha256="c" * 64)


@pytest.mark.unit
def test_each_context_asks_one_layout(tmp_path, monkeypatch):
    dest = Layout.dest(tmp_path / "d")
    assert dest.whisper_file(WHISPER) == tmp_path / "d/whisper/tiny.en.pt"
    assert dest.hf_snapshot_dir(HF, "c" * 40) == tmp_path / f"d/huggingface/hub/models--org--bart/snapshots/{'c' * 40}"
    assert dest.hf_ref_file(HF, "main") == tmp_path / "d/huggingface/hub/models--org--bart/refs/main"
    assert dest.spacy_target(NER) == tmp_path / "d/spacy/en_tiny_ner"
    assert dest.dest_root == tmp_path / "d" and dest.marker_path("w").parent == tmp_path / "d/.modelbake/verified"
    # the usual caches: where whisper and huggingface_hub look by default, spaCy in the environment
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("HF_HOME")
    cache = Layout.default()
    assert cache.whisper_file(WHISPER) == tmp_path / "xdg/whisper/tiny.en.pt"
    assert cache.hf_repo_dir(HF) == tmp_path / "xdg/huggingface/hub/models--org--bart"
    assert cache.spacy_target(NER) is None and cache.model_paths(NER) == [] and cache.dest_root is None
    monkeypatch.setenv("MODELBAKE_WHISPER_ROOT", "/models/whisper")
    monkeypatch.setenv("HF_HUB_CACHE", "/models/huggingface/hub")
    assert Layout.default().whisper_file(WHISPER) == Path("/models/whisper/tiny.en.pt")
    assert Layout.default().hf_hub_cache == Path(image_env()["HF_HUB_CACHE"])


@pytest.mark.unit
def test_the_image_and_the_layer_root_are_the_dest_tree_at_models():
    for spec in (WHISPER, HF, NER):
        assert image_paths(spec) == [p.as_posix() for p in Layout.dest("/models").model_paths(spec)]
        assert layer_paths(spec) == [layer_root(spec) + p for p in image_paths(spec)]
        (layer,) = model_layers(spec, None, None)
        assert (
            layer_copy_line(layer)
            == f"COPY --link --from=fetch-{layer_root(spec).removeprefix('/out/')} {layer_root(spec)}/ /"
        )
    assert image_paths(NER) == ["/models/spacy/en_tiny_ner"]
    assert layer_root(HF) == "/out/bart-map"
    assert image_spacy_path([WHISPER, NER, HF, PEOPLE]) == "/models/spacy/en_tiny_ner:/models/spacy/en_tiny_people"
    assert image_spacy_path([WHISPER]) == ""


@pytest.mark.unit
def test_two_spacy_pipelines_are_two_layers_both_on_the_pythonpath(tmp_path):
    """Before, both pipelines shared /models/spacy: two identical COPY lines, each holding both."""
    path = tmp_path / "models.toml"
    path.write_text(with_spacy_pipeline(manifest_text("a" * 64, "b" * 64), PEOPLE.id, PEOPLE.name, PEOPLE.sha256))
    manifest = load_manifest(path)
    models_text = render_models_dockerfile(manifest, None, "test")
    for spec in (NER, PEOPLE):
        root = layer_root(spec)
        assert f"&& mv /models/spacy/{spec.name} {root}/models/spacy/{spec.name} " in models_text
        assert f"COPY --link --from=fetch-{spec.id} {root}/ /\n" in models_text
    # both on the image's PYTHONPATH, after the app's code: the models image says where, the app FROM it reads it
    assert "ENV MODELBAKE_SPACY_PATH=/models/spacy/en_tiny_ner:/models/spacy/en_tiny_people\n" in models_text
    assert "PYTHONPATH=/app/src${MODELBAKE_SPACY_PATH:+:${MODELBAKE_SPACY_PATH}}" in (REPO / "Dockerfile").read_text()


@pytest.mark.unit
def test_the_app_dockerfile_points_the_libraries_where_paths_puts_the_models():
    text = (REPO / "Dockerfile").read_text()
    for name, value in image_env().items():
        assert f"    {name}={value} " in text, name


# Modules that serve or describe other trees (the mirror's directory), not a model's place in a context.
NOT_A_MODEL_CONTEXT = {"mirror"}


def _string_constants(path: Path) -> list[str]:
    return [
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


@pytest.mark.unit
def test_no_module_but_paths_spells_a_models_place():
    """Every model path is asked of modelbake.paths: no other module of the product or the app spells a hub
    folder, the image's /models tree or a family directory of a --dest tree (docstrings aside)."""
    offenders = []
    for path in sorted([*(REPO / "src/modelbake").rglob("*.py"), *(REPO / "src/podcast_pipeline").rglob("*.py")]):
        rel = path.relative_to(REPO / "src")
        if rel.as_posix() == "modelbake/paths.py" or NOT_A_MODEL_CONTEXT & set(rel.parts):
            continue
        for value in _string_constants(path):
            if "\n" in value or value.startswith(("`", "Where", "The ")):
                continue  # a docstring or a message
            if "models--" in value or value.startswith("/models") or value in ("whisper/", "huggingface/hub", "spacy/"):
                offenders.append(f"{rel}: {value!r}")
    assert offenders == []


@pytest.mark.ml_models  # the tiny models (torch, spaCy) and a real spacy.load
def test_a_tree_of_the_flat_spacy_layout_still_loads_and_is_migrated(manifest_copy, mirror, tmp_path):
    """A --dest tree written before one directory per pipeline (all in `spacy/`, e.g. a CI cache) is found by
    verify and the app as it is, and the next preload moves the pipeline into its own directory."""
    dest = tmp_path / "dest"
    cmd = [
        "preload",
        "--manifest",
        str(manifest_copy),
        "--model",
        "spacy-ner",
        "--dest",
        str(dest),
        *mirror_args(mirror),
    ]
    assert main(cmd) == 0
    layout = Layout.dest(dest)
    spec = load_manifest(manifest_copy).models["spacy-ner"]
    target = layout.spacy_target(spec)
    assert sorted(p.name for p in target.iterdir()) == ["en_tiny_ner", "en_tiny_ner-0.1.0.dist-info"]
    assert layout.spacy_import_dir(spec) == target
    # the old layout: package and dist-info side by side in spacy/
    flat = tmp_path / "flat"
    shutil.move(target, flat)
    shutil.move(flat / "en_tiny_ner", dest / "spacy/en_tiny_ner")
    shutil.move(flat / "en_tiny_ner-0.1.0.dist-info", dest / "spacy/en_tiny_ner-0.1.0.dist-info")
    assert layout.spacy_import_dir(spec) == dest / "spacy"
    mirror.clear_requests()
    assert main(cmd) == 0
    assert mirror.requests  # the marker alone no longer counts: the pipeline is installed again, in its place
    assert sorted(p.name for p in (dest / "spacy").iterdir()) == ["en_tiny_ner"]
    assert sorted(p.name for p in target.iterdir()) == ["en_tiny_ner", "en_tiny_ner-0.1.0.dist-info"]
    mirror.clear_requests()
    assert main(cmd) == 0 and mirror.requests == []
    clean = ["clean-cache", "--manifest", str(manifest_copy), "--dest", str(dest)]
    assert main(clean) == 0 and list((dest / "spacy").iterdir()) == []


@pytest.mark.ml_models
def test_two_pipelines_in_one_tree_each_in_its_own_directory_and_both_verify(tiny_tree, mirror, tmp_path):
    """Preload puts each pipeline in a directory of its own; verify (which puts each on sys.path) loads both."""
    from testkit.tinymodels import add_spacy_pipeline

    sha = add_spacy_pipeline(tiny_tree.root, PEOPLE.name)
    manifest = tmp_path / "m/models.toml"
    manifest.parent.mkdir()
    manifest.write_text(with_spacy_pipeline(tiny_tree.manifest.read_text(), PEOPLE.id, PEOPLE.name, sha))
    assert main(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    dest = tmp_path / "dest"
    preload = ["preload", "--manifest", str(manifest), "--dest", str(dest), "--model", "spacy-ner"]
    assert main([*preload, "--model", PEOPLE.id, *mirror_args(mirror)]) == 0
    assert sorted(p.name for p in (dest / "spacy").iterdir()) == ["en_tiny_ner", "en_tiny_people"]
    for name in ("en_tiny_ner", "en_tiny_people"):
        assert sorted(p.name for p in (dest / "spacy" / name).iterdir()) == [name, f"{name}-0.1.0.dist-info"]
    proc = run_cli(
        "verify", "--manifest", str(manifest), "--model", "spacy-ner", "--model", PEOPLE.id, "--models", str(dest)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verify: 2 models load and run offline" in proc.stdout
