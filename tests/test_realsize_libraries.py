"""bench/realsize.py against the libraries themselves: its shape tables are what transformers (on the meta
device) and openai-whisper build, and what its writer streams is what safetensors and torch read back.

`ml_models`, not `unit`: each of these imports torch. The rest of bench/realsize.py is tests/test_realsize.py's.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.ml_models

if str(REPO) not in sys.path:  # `pytest` puts tests/ on sys.path, not the repo root where bench/ lives
    sys.path.insert(0, str(REPO))
realsize = importlib.import_module("bench.realsize")
realsize_models = importlib.import_module("bench.realsize_models")
realsize_tensors = importlib.import_module("bench.realsize_tensors")

HF_IDS = [m.key for m in realsize_models.HF_MODELS]


def _hf(key: str):
    return next(m for m in realsize_models.HF_MODELS if m.key == key)


def _whisper(key: str):
    return next(m for m in realsize_models.WHISPER_MODELS if m.key == key)


@pytest.mark.parametrize("key", HF_IDS)
def test_shape_table_matches_what_transformers_builds(key):
    """The hand-written table == the tensors save_pretrained would write (model built on the meta device)."""
    tensors, norms = realsize_tensors.hf_tensors(_hf(key).config)
    assert sorted(tensors) == sorted(realsize_tensors.seq2seq_tensor_shapes(_hf(key).config))
    assert any(n.endswith("layernorm_embedding") for n in norms)


def test_whisper_shape_table_matches_openai_whisper():
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = _whisper("whisper-tiny-en").dims
    with torch.random.fork_rng(devices=[]):
        model = Whisper(ModelDimensions(**dims))
    library = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items())
    assert library == sorted(realsize_tensors.whisper_tensor_shapes(dims))


def test_streamed_safetensors_loads_with_the_safetensors_library(tmp_path):
    import torch
    from safetensors import safe_open

    tensors = [("b.weight", (3, 5)), ("a.bias", (7,)), ("c", (1, 2, 3))]

    def make(name, shape):
        return realsize_tensors._fill("test/repo", name, shape, frozenset({"a"}), 0)

    path = tmp_path / "model.safetensors"
    digest = realsize_tensors.write_safetensors(path, tensors, make)
    assert path.stat().st_size == len(realsize_tensors.safetensors_header(tensors)) + 4 * (15 + 7 + 6)
    assert digest == realsize._sha256(path)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert sorted(f.keys()) == ["a.bias", "b.weight", "c"]
        assert torch.equal(f.get_tensor("b.weight"), make("b.weight", (3, 5)))
        assert torch.equal(f.get_tensor("a.bias"), torch.zeros(7))


def test_fill_depends_on_the_tensor_not_on_the_order():
    import torch

    first = realsize_tensors._fill("m", "x.weight", (4, 4), frozenset(), 0)
    realsize_tensors._fill("m", "y.weight", (4, 4), frozenset(), 0)
    assert torch.equal(first, realsize_tensors._fill("m", "x.weight", (4, 4), frozenset(), 0))
    assert not torch.equal(first, realsize_tensors._fill("other", "x.weight", (4, 4), frozenset(), 0))
    assert torch.equal(realsize_tensors._fill("m", "ln.weight", (4,), frozenset({"ln"}), 0), torch.ones(4))


def test_a_sharded_checkpoint_loads_through_its_index(tmp_path):
    """bench/realsize_big.py's writer at a small size: shards + model.safetensors.index.json, as transformers reads
    them (`from_pretrained` finds the index, loads every shard, and gets the streamed values)."""
    import json

    import torch
    from transformers import AutoModelForSeq2SeqLM

    big = importlib.import_module("bench.realsize_big")
    config = realsize_models._bart_config(32, (2, 2), 2, 64, 50265, {}, "4.27.0.dev0")
    model = realsize_models.HFModel(
        "tiny-sharded", "test/tiny-sharded", config, {}, 1024, "BartTokenizer", big._UNKNOWN
    )
    sharded = big.BigModel(model, 2_000_000)
    part = big.make_big(tmp_path, sharded, 0, {})
    names = sorted(f["path"].rsplit("/", 1)[1] for f in part["files"])
    shards = [n for n in names if n.startswith("model-")]
    assert len(shards) > 1 and shards == big.shard_names(len(shards))
    assert "model.safetensors.index.json" in names and "model.safetensors" not in names
    snapshot = tmp_path / part["files"][0]["path"].rsplit("/", 1)[0]
    assert {n: (snapshot / n).stat().st_size for n in shards} == big.weight_files(sharded)
    index = json.loads((snapshot / "model.safetensors.index.json").read_text())
    loaded = AutoModelForSeq2SeqLM.from_pretrained(snapshot)
    state = loaded.state_dict()
    _, norms = realsize_tensors.hf_tensors(config)
    for name in index["weight_map"]:
        expected = realsize_tensors._hf_fill(model, name, tuple(state[name].shape), norms, 0)
        assert torch.equal(state[name], expected), name
