"""`python -m bench.filelayers`'s pure parts: the big models' shapes and shards, the manifest, and the results text
(bench/results-filelayers.md and its block in bench/results.md), without generating gigabytes or an engine."""

from __future__ import annotations

import importlib
import json
import sys
from types import SimpleNamespace

import pytest

from conftest import REPO

pytestmark = pytest.mark.unit

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
big = importlib.import_module("bench.realsize_big")
report = importlib.import_module("bench.filelayers_report")
filelayers = importlib.import_module("bench.filelayers")
realsize = importlib.import_module("bench.realsize")
realsize_set = importlib.import_module("bench.realsize_set")
realsize_tensors = importlib.import_module("bench.realsize_tensors")


def test_a_sharded_model_of_3_gb_and_one_file_over_2_gib():
    deep, wide = (next(b for b in big.BIG_MODELS if b.key == k) for k in ("bart-large-24l", "bart-large-250k"))
    shards = big.weight_files(deep)
    assert list(shards) == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    assert all(size <= big.SHARD_BYTES + 200_000 for size in shards.values())  # the data at most 1 GB, + header
    assert 3.0e9 < sum(shards.values()) < 3.1e9
    (single,) = big.weight_files(wide).values()
    assert single > 2**31  # past what 32-bit sizes and offsets hold
    assert wide.model.config["vocab_size"] == 250054 and deep.model.config["encoder_layers"] == 24


def test_the_index_maps_every_tensor_to_its_shard_and_counts_the_data():
    tensors = realsize_tensors.seq2seq_tensor_shapes(big.BIG_MODELS[0].model.config)
    shards = big.shard_plan(tensors, big.SHARD_BYTES)
    index = big.index_json(shards)
    assert set(index["weight_map"]) == {name for name, _ in tensors}
    assert set(index["weight_map"].values()) == set(big.shard_names(len(shards)))
    assert index["metadata"]["total_size"] == 4 * sum(realsize_tensors.math.prod(s) for _, s in tensors)
    # names in order, cut greedily: a tensor never straddles two shards, each shard's names sorted
    flat = [name for shard in shards for name, _ in shard]
    assert flat == sorted(flat)
    assert big.shard_plan([("a", (10,)), ("b", (300,)), ("c", (10,))], 100) == [
        [("a", (10,))],
        [("b", (300,))],
        [("c", (10,))],
    ]


def test_the_big_profile_joins_the_manifest_and_leaves_the_others_alone():
    base = realsize.manifest_text({"tiny.en": "a" * 64, "base.en": "b" * 64}, "c" * 64)
    text = big.manifest_with_big(base)
    assert text.startswith(base.split("[profiles]")[0])
    assert text.endswith(base.split("[profiles]\n")[1] + f"big = {json.dumps(list(big.BIG_KEYS))}\n")
    for b in big.BIG_MODELS:
        assert f'[models.{b.key}]\nfamily = "huggingface"\nrepo = "{b.model.repo}"' in text
    assert 'include = ["*.json", "*.txt", "*.safetensors"]' in text


def _step(label: str, wall: float, fetched: int, pushed: dict[str, int], layers: list[str], built: list[str]) -> object:
    stages = [{"build": "models", "stage": s, "status": "built", "seconds": 1.5} for s in built]
    stages.append({"build": "models", "stage": "fetch", "status": "cached", "seconds": 0.0})
    models = [{"id": "bart-large-24l", "files_bytes": 3_036_000_000, "layer": layers[-1], "files": []}]
    doc = {"stages": stages, "models_image": {"layers": layers}, "models": models}
    return filelayers.Step(label, wall, fetched, pushed, doc)


def _modes() -> list:
    one = filelayers.Mode(
        "one layer",
        "off",
        _step("first", 90.0, 3_036_000_000, {"sha256:a": 3_036_000_000}, ["sha256:a"], ["fetch-bart-large-24l"]),
        _step(
            "bump",
            88.0,
            3_036_000_000,
            {"sha256:b": 3_036_000_000, "sha256:c": 500},
            ["sha256:b"],
            ["fetch-bart-large-24l"],
        ),
        [filelayers.Step("pull", w, report={"already": 0, "complete": 1}) for w in (30.0, 31.0, 29.0)],
        layers=1,
    )
    shards = [f"sha256:s{i}" for i in range(4)]
    split = filelayers.Mode(
        "file layers",
        "64",
        _step("first", 95.0, 3_036_000_000, {d: 1 for d in shards}, [*shards, "sha256:r"], ["fetch-bart-large-24l"]),
        _step(
            "bump",
            6.0,
            2_800_000,
            {"sha256:r2": 2_900_000, "sha256:c2": 500},
            [*shards, "sha256:r2"],
            ["fetch-bart-large-24l"],
        ),
        [filelayers.Step("pull", w, report={"already": 0, "complete": 5}) for w in (25.0, 24.0, 26.0)],
        layers=5,
    )
    return [one, split]


def _run() -> SimpleNamespace:
    gen = realsize_set.GeneratedFile
    snap = "huggingface/models--modelbake-bench--bart-large-24l/snapshots/c/"
    files = [gen("bart-large-24l", snap + f"model-0000{i}-of-00004.safetensors", 750_000_000, "x") for i in range(1, 5)]
    files += [
        gen("bart-large-24l", snap + "tokenizer.json", 1_371_003, "y"),
        gen("bart-large-24l", snap + "config.json", 1_623, "z"),
    ]
    return SimpleNamespace(
        tree=SimpleNamespace(files=files), mirror=SimpleNamespace(faults=SimpleNamespace(bandwidth=None)), repo=REPO
    )


def test_results_text_from_the_numbers(monkeypatch):
    import bench.enginecache as enginecache

    monkeypatch.setattr(enginecache, "machine", lambda: "2 cores, 23 GiB RAM")
    monkeypatch.setattr(enginecache, "load_average", lambda: "1.0")
    text = report.render("python -m bench.filelayers", _run(), None, _modes(), 600.0)
    assert "| one layer (`--file-layers-over off`) | 1 | 30.0, 31.0, 29.0 s | **30.0 s** |" in text
    assert "| file layers (`--file-layers-over 64`) | 5 | 25.0, 24.0, 26.0 s | **25.0 s** |" in text
    assert "| one layer (`--file-layers-over off`) | **3,036.0 MB** | **3,036.0 MB** | 2 | 88.0 s |" in text
    assert (
        "| file layers (`--file-layers-over 64`) | **2.8 MB** | **2.9 MB** | 2 | 6.0 s | `fetch-bart-large-24l` | 4 of 5 |"
        in text
    )
    assert "took **1.5 s**" in text and "buys **150.0 MB**" in text  # 1.5 s at 100 MB/s
    assert "changed a pull by -1.25 s" in text  # (25 - 30) / 4 more layers
    assert "the largest that holds no weights is 1.4 MB (`tokenizer.json`" in text
    block = report.results_block(_run(), _modes())
    assert block.startswith(report.BLOCK_START) and block.endswith(report.BLOCK_END)
    assert "| before: one layer per model | 30.0 s | 3,036.0 MB | 3,036.0 MB |" in block
    assert "| after: file layers over 64 MiB | 25.0 s | 2.8 MB | 2.9 MB |" in block


def test_the_block_is_replaced_appended_and_carried_over():
    block = f"{report.BLOCK_START}\nnew\n{report.BLOCK_END}"
    old = f"# results\n\n{report.BLOCK_START}\nold\n{report.BLOCK_END}\ntail\n"
    assert report.with_block(old, block) == f"# results\n\n{block}\ntail\n"
    assert report.with_block("# results\n", block) == f"# results\n\n{block}\n"
    assert report.carried_block(old) == f"{report.BLOCK_START}\nold\n{report.BLOCK_END}"
    assert report.carried_block("# results\n") is None
    # python -m bench rewrites results.md: the block it carries over lands at the end, once
    rewritten = report.with_block("# new run\n", report.carried_block(old) or "")
    assert rewritten.count(report.BLOCK_START) == 1 and rewritten.startswith("# new run\n")
