"""Manifest parsing and validation, mirror resolution: pure code, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from modelbake.cli import main
from modelbake.manifest import HuggingFaceSpec, SpacySpec, WhisperSpec, load_manifest
from modelbake.mirrors import resolve_mirrors, spacy_url, whisper_url

pytestmark = pytest.mark.unit

VALID = """
[models.w]
family = "whisper"
name = "tiny.en"
sha256 = "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03"

[profiles]
test = ["w"]
"""


def _whisper_model_table() -> dict[str, str]:
    """`whisper._MODELS` (name -> URL), a literal in whisper/__init__.py, without running that module."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("whisper")
    assert spec is not None and spec.origin, "openai-whisper is not installed"
    tree = ast.parse(Path(spec.origin).read_text())
    node = next(
        n
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "_MODELS" for t in n.targets)
    )
    return ast.literal_eval(node.value)


def test_repo_manifest_has_the_required_profiles():
    manifest = load_manifest(REPO / "models.toml")
    test = [manifest.models[i] for i in manifest.profiles["test"]]
    prod = [manifest.models[i] for i in manifest.profiles["prod"]]
    assert [(s.family, s.source) for s in test] == [
        ("whisper", "tiny.en"),
        ("spacy", "en_core_web_sm==3.8.0"),
        ("huggingface", "facebook/bart-base"),
        ("huggingface", "allenai/led-base-16384"),
    ]
    assert [(s.family, s.source) for s in prod] == [
        ("whisper", "base.en"),
        ("spacy", "en_core_web_sm==3.8.0"),
        ("huggingface", "facebook/bart-large-cnn"),
        ("huggingface", "allenai/led-base-16384"),
    ]
    assert any(s.source == "sshleifer/distilbart-cnn-12-6" for s in manifest.models.values())
    # Whisper pins come from openai-whisper's own model table, read from its source (importing whisper is
    # importing torch, which no unit test does).
    whisper_models = _whisper_model_table()
    for spec in manifest.models.values():
        if isinstance(spec, WhisperSpec):
            assert f"/{spec.sha256}/{spec.name}.pt" in whisper_models[spec.name]
        if isinstance(spec, HuggingFaceSpec):
            assert spec.include, f"{spec.id} should select one weight format"
    roles = {manifest.models[i].role for i in manifest.profiles["prod"] if manifest.models[i].family == "huggingface"}
    assert roles == {"map", "reduce"}


def test_parses_all_families(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(
        VALID
        + """
[models.s]
family = "spacy"
name = "en_core_web_sm"
version = "3.8.0"
sha256 = "1932429db727d4bff3deed6b34cfc05df17794f4a52eeb26cf8928f7c1a0fb85"

[models.h]
family = "huggingface"
repo = "facebook/bart-base"
revision = "main"
include = ["*.json", "model.safetensors"]
exclude = ["*.h5"]
task = "summarization"
role = "map"

[mirrors]
whisper = "http://127.0.0.1:9/whisper/"
"""
    )
    manifest = load_manifest(path)
    assert isinstance(manifest.models["s"], SpacySpec)
    h = manifest.models["h"]
    assert isinstance(h, HuggingFaceSpec) and h.include == ("*.json", "model.safetensors") and h.role == "map"
    assert manifest.mirrors == {"whisper": "http://127.0.0.1:9/whisper"}
    assert manifest.lock_path == tmp_path / "models.lock"
    assert [s.id for s in manifest.select()] == ["w", "s", "h"]
    assert [s.id for s in manifest.select("test")] == ["w"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[models.w\nfamily=", "malformed TOML"),
        (VALID.replace('"whisper"', '"onnx"', 1), "models.w.family: unknown family 'onnx'"),
        (VALID.replace('name = "tiny.en"\n', ""), "models.w.name: missing required field"),
        (VALID.replace("d3dd57d32acc", "XYZ"), "models.w.sha256: expected 64 lowercase hex digits"),
        (VALID.replace('name = "tiny.en"', 'name = "tiny.en"\nrevison = "x"'), "models.w.revison: unknown field"),
        (VALID.replace('test = ["w"]', 'test = ["nope"]'), "profiles.test: unknown model id 'nope'"),
    ],
)
def test_bad_manifest_exits_2_with_one_line_naming_file_model_and_field(tmp_path, capsys, text, needle):
    path = tmp_path / "models.toml"
    path.write_text(text)
    assert main(["preload", "--manifest", str(path), "--dest", str(tmp_path / "dest")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: {path}:"), err
    assert needle in err[0]
    assert not (tmp_path / "dest").exists()


def test_unknown_profile_and_model_exit_2(tmp_path, capsys):
    path = tmp_path / "models.toml"
    path.write_text(VALID)
    assert main(["preload", "--manifest", str(path), "--profile", "prod"]) == 2
    assert "unknown profile 'prod' (profiles: test)" in capsys.readouterr().err
    assert main(["verify", "--manifest", str(path), "--model", "x"]) == 2
    assert "unknown model id 'x'" in capsys.readouterr().err


def test_missing_manifest_and_bad_mirror_flag(tmp_path, capsys):
    assert main(["preload", "--manifest", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: manifest not found" in capsys.readouterr().err
    path = tmp_path / "models.toml"
    path.write_text(VALID)
    assert main(["preload", "--manifest", str(path), "--mirror", "pypi=http://x"]) == 2
    assert "--mirror 'pypi=http://x'" in capsys.readouterr().err


def test_mirror_precedence(monkeypatch, tmp_path):
    manifest = {"whisper": "http://manifest/w", "huggingface": "http://manifest/hf"}
    assert resolve_mirrors(None, manifest)["whisper"] == "http://manifest/w"
    assert resolve_mirrors(None, {})["spacy"] == "https://github.com/explosion/spacy-models/releases/download"
    secret = tmp_path / "mirrors.toml"
    secret.write_text('[mirrors]\nwhisper = "http://file/w"\n')
    monkeypatch.setenv("MODELBAKE_MIRRORS_FILE", str(secret))
    assert resolve_mirrors(None, manifest)["whisper"] == "http://file/w"
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-endpoint")
    assert resolve_mirrors(None, manifest)["huggingface"] == "http://hf-endpoint"
    monkeypatch.setenv("MODELBAKE_MIRROR_WHISPER", "http://env/w/")
    assert resolve_mirrors(None, manifest)["whisper"] == "http://env/w"
    assert resolve_mirrors({"whisper": "http://cli/w"}, manifest)["whisper"] == "http://cli/w"


def test_mirror_urls_keep_the_official_path():
    sha = "d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03"
    assert whisper_url("http://m/whisper", "tiny.en", sha) == f"http://m/whisper/{sha}/tiny.en.pt"
    assert (
        spacy_url("http://m/spacy", "en_core_web_sm", "3.8.0")
        == "http://m/spacy/en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl"
    )
    official = "https://openaipublic.azureedge.net/main/whisper/models"
    assert whisper_url(official, "custom", sha, "https://example.org/c.pt") == "https://example.org/c.pt"
    assert whisper_url("http://m/whisper", "custom", sha, "https://example.org/c.pt").startswith("http://m/whisper/")
