"""bench/realsize.py without generating gigabytes: shapes, sizes, manifest, writer and cache, on small inputs.

The expected file sizes are computed from the configs' shapes (nothing allocated) and compared with the real
files' sizes. What needs torch (the shape tables against the libraries' own models, the tensors the writer
streams) is in tests/test_realsize_libraries.py (`ml_models`). The full generation runs with
``python -m bench.realsize``, not here.
"""

from __future__ import annotations

import importlib
import json
import math
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.unit

if str(REPO) not in sys.path:  # `pytest` puts tests/ on sys.path, not the repo root where bench/ lives
    sys.path.insert(0, str(REPO))
realsize = importlib.import_module("bench.realsize")
realsize_models = importlib.import_module("bench.realsize_models")
realsize_set = importlib.import_module("bench.realsize_set")
realsize_tensors = importlib.import_module("bench.realsize_tensors")

HF_IDS = [m.key for m in realsize_models.HF_MODELS]
WHISPER_IDS = [m.key for m in realsize_models.WHISPER_MODELS]


def _hf(key: str):
    return next(m for m in realsize_models.HF_MODELS if m.key == key)


def _whisper(key: str):
    return next(m for m in realsize_models.WHISPER_MODELS if m.key == key)


def _params(shapes) -> int:
    return sum(math.prod(s) for _, s in shapes)


@pytest.mark.parametrize("key", HF_IDS)
def test_safetensors_size_from_config_is_within_2_percent_of_the_real_file(key):
    model = _hf(key)
    expected = realsize_tensors.safetensors_file_bytes(model.config)
    assert abs(expected - model.real.bytes) / model.real.bytes < 0.02, (expected, model.real.bytes)


def test_real_sizes_known_to_the_byte_match_to_a_tenth_of_a_percent():
    """bart-large-cnn's model.safetensors, LED's pytorch_model.bin and base.en.pt are known to the byte."""
    for key in ("bart-large-cnn", "led-base-16384"):
        model = _hf(key)
        assert model.real.exact
        expected = realsize_tensors.safetensors_file_bytes(model.config)
        assert abs(expected - model.real.bytes) / model.real.bytes < 0.001, (key, expected, model.real.bytes)
    base = _whisper("whisper-base-en")
    assert base.real.exact
    assert abs(realsize_tensors.whisper_file_bytes(base.dims) - base.real.bytes) / base.real.bytes < 0.001


@pytest.mark.parametrize("key", WHISPER_IDS)
def test_whisper_checkpoint_size_from_dims_is_within_2_percent_of_the_real_file(key):
    model = _whisper(key)
    expected = realsize_tensors.whisper_file_bytes(model.dims)
    assert abs(expected - model.real.bytes) / model.real.bytes < 0.02, (expected, model.real.bytes)


def test_parameter_counts_are_the_published_ones():
    """Millions of parameters as the model cards give them (tied embeddings once, buffers included)."""
    millions = {key: _params(realsize_tensors.seq2seq_tensor_shapes(_hf(key).config)) / 1e6 for key in HF_IDS}
    assert millions["bart-base"] == pytest.approx(139.5, abs=0.5)
    assert millions["bart-large-cnn"] == pytest.approx(406.3, abs=0.5)
    assert millions["distilbart-cnn-12-6"] == pytest.approx(305.6, abs=0.5)
    assert millions["led-base-16384"] == pytest.approx(161.9, abs=0.5)
    whisper = {key: _params(realsize_tensors.whisper_tensor_shapes(_whisper(key).dims)) / 1e6 for key in WHISPER_IDS}
    assert whisper["whisper-tiny-en"] == pytest.approx(37.8, abs=0.2)  # 39 M with the tied output, as published
    assert whisper["whisper-base-en"] == pytest.approx(72.6, abs=0.5)


def test_configs_carry_the_real_shapes():
    large = _hf("bart-large-cnn").config
    shape = (large["d_model"], large["encoder_layers"], large["decoder_layers"], large["vocab_size"])
    assert shape == (1024, 12, 12, 50264)
    distil = _hf("distilbart-cnn-12-6").config
    assert (distil["d_model"], distil["encoder_layers"], distil["decoder_layers"]) == (1024, 12, 6)
    led = _hf("led-base-16384").config
    assert led["max_encoder_position_embeddings"] == 16384 and led["attention_window"] == [1024] * 6
    assert _hf("bart-base").config["vocab_size"] == 50265


def test_manifest_has_the_projects_ids_names_repos_and_profiles(tmp_path):
    from modelbake.manifest import load_manifest

    generated = tmp_path / "models.toml"
    generated.write_text(realsize.manifest_text({"tiny.en": "a" * 64, "base.en": "b" * 64}, "c" * 64))
    ours, project = load_manifest(generated), load_manifest(REPO / "models.toml")
    assert ours.profiles == project.profiles
    assert ours.models.keys() == project.models.keys()
    for key, spec in project.models.items():
        mine = ours.models[key]
        fields = ("family", "name", "version", "repo", "revision", "task", "role")
        assert [getattr(mine, f, None) for f in fields] == [getattr(spec, f, None) for f in fields], key
        if spec.family == "huggingface":
            # model.safetensors everywhere; the project pins pytorch_model.bin for distilbart and LED
            assert mine.include == ("*.json", "*.txt", "model.safetensors")
            assert set(spec.include) - {"pytorch_model.bin", "model.safetensors"} == {"*.json", "*.txt"}
    assert ours.models["whisper-base-en"].sha256 == "b" * 64
    assert ours.models["spacy-en-core-web-sm"].sha256 == "c" * 64


def test_a_complete_tree_is_reused_without_generating(tmp_path, monkeypatch):
    """.complete with this generator's stamp and files of the recorded sizes -> returned as is, no hashing."""
    parts = {}
    for key, rel in [
        *((m.key, f"whisper/{m.filename}") for m in realsize_models.WHISPER_MODELS),
        ("spacy-en-core-web-sm", "spacy/en_core_web_sm-3.8.0-py3-none-any.whl"),
        *((m.key, f"huggingface/x/{m.key}/model.safetensors") for m in realsize_models.HF_MODELS),
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"xyz")
        parts[key] = {"files": [{"path": rel, "size": 3, "sha256": "0" * 64}], "commit": "1" * 40}
    (tmp_path / "models.toml").write_text("")
    stamp = realsize._stamp(realsize.SEED)
    (tmp_path / ".complete").write_text(json.dumps({"stamp": stamp, "parts": parts}))
    monkeypatch.setattr(realsize, "_generate", lambda *a: pytest.fail("regenerated a complete tree"))

    tree = realsize.build_realsize_tree(tmp_path)
    assert tree.cached and tree.total_bytes == 3 * len(parts)
    assert tree.hf_commits["facebook/bart-base"] == "1" * 40
    assert "| whisper-base-en | whisper/base.en.pt | 3 | 145,262,807 |" in tree.table()

    (tmp_path / "whisper" / "base.en.pt").write_bytes(b"xy")  # a file changed size: the tree is not complete
    assert realsize_set.read_complete(tmp_path, stamp) is None
