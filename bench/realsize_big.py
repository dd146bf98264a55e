"""Two big Hugging Face models for the real-size tree (profile `big`): a sharded one and one file over 2 GB.

Why: file layers (src/modelbake/layers.py) split a model by its files, and the two shapes that matter at scale
are a checkpoint in shards (`model-0000N-of-0000M.safetensors` + `model.safetensors.index.json`, as
`save_pretrained(max_shard_size=...)` writes it and `from_pretrained` reads it through the index) and one file
past 2^31 bytes (where 32-bit sizes and offsets break: tar headers, HTTP ranges, registries). Both are BART-large
variants, loadable with `AutoModelForSeq2SeqLM` and run by `modelbake verify`:

- `bart-large-24l` (`modelbake-bench/bart-large-24l`): BART-large twice as deep, 24 encoder + 24 decoder
  layers, float32, 3.03 GB in four shards of at most 1 GB (transformers' `max_shard_size="1GB"`).
- `bart-large-250k` (`modelbake-bench/bart-large-250k`): BART-large with mBART-50's 250,054-token vocabulary,
  float32, one model.safetensors of 2.44 GB (mBART-50's own checkpoint is that size).

Both carry the bench's 50,265-token byte-level BPE (its ids are all within either vocabulary). Weights are
streamed tensor by tensor as in bench/realsize.py (the largest tensor, the 250k x 1024 embedding, is 1 GB).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.realsize import HF_REVISION
from bench.realsize_models import _CNN_EXTRA, _GEN_KEYS, HFModel, RealSize, _bart_config, _generation
from bench.realsize_tensors import (
    Shape,
    _hf_fill,
    hf_tensors,
    safetensors_header,
    seq2seq_tensor_shapes,
    write_safetensors,
)

BIG_PROFILE = "big"
SHARD_BYTES = 1_000_000_000  # max_shard_size="1GB": transformers reads "GB" as 10^9
ROLES = {"bart-large-24l": "map", "bart-large-250k": "reduce"}


@dataclass(frozen=True)
class BigModel:
    model: HFModel  # key, repo, config, generation, tokenizer settings (realsize's writer takes it as is)
    shard_bytes: int | None  # None: one model.safetensors

    @property
    def key(self) -> str:
        return self.model.key


def _config(layers: int, vocab: int, name: str) -> dict:
    config = _bart_config(1024, (layers, layers), 16, 4096, vocab, dict(_CNN_EXTRA), "4.27.0.dev0")
    config["_name_or_path"] = name
    return config


_DEEP = _config(24, 50265, "bart-large-24l")
_WIDE = _config(12, 250054, "bart-large-250k")
_UNKNOWN = RealSize("model.safetensors", 0, False)  # no real repo to compare with: the table shows "-"

BIG_MODELS = (
    BigModel(
        HFModel(
            "bart-large-24l",
            "modelbake-bench/bart-large-24l",
            _DEEP,
            _generation(_DEEP, _GEN_KEYS),
            1024,
            "BartTokenizer",
            _UNKNOWN,
            include=("*.json", "*.txt", "*.safetensors"),
            real_include=("*.json", "*.txt", "*.safetensors"),
        ),
        SHARD_BYTES,
    ),
    BigModel(
        HFModel(
            "bart-large-250k",
            "modelbake-bench/bart-large-250k",
            _WIDE,
            _generation(_WIDE, _GEN_KEYS),
            1024,
            "BartTokenizer",
            _UNKNOWN,
        ),
        None,
    ),
)
BIG_KEYS = tuple(m.key for m in BIG_MODELS)


def shard_plan(tensors: list[tuple[str, Shape]], max_bytes: int, itemsize: int = 4) -> list[list[tuple[str, Shape]]]:
    """Tensors in name order, cut greedily into shards of at most `max_bytes` of data (a tensor larger than that
    is a shard of its own), as `save_pretrained`'s `max_shard_size` does."""
    shards: list[list[tuple[str, Shape]]] = [[]]
    size = 0
    for name, shape in sorted(tensors):
        n = math.prod(shape) * itemsize
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    return shards


def shard_names(count: int) -> list[str]:
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def index_json(shards: list[list[tuple[str, Shape]]], itemsize: int = 4) -> dict:
    """model.safetensors.index.json: `total_size` (tensor bytes) and which shard holds each tensor."""
    names = shard_names(len(shards))
    weight_map = {name: names[i] for i, shard in enumerate(shards) for name, _ in shard}
    total = sum(math.prod(shape) * itemsize for shard in shards for _, shape in shard)
    return {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}


def weight_files(big: BigModel, tensors: list[tuple[str, Shape]] | None = None) -> dict[str, int]:
    """File name -> exact bytes of the weights this module writes (from the config's shapes, nothing allocated)."""
    shapes = tensors if tensors is not None else seq2seq_tensor_shapes(big.model.config)
    if big.shard_bytes is None:
        return {"model.safetensors": len(safetensors_header(shapes)) + 4 * sum(math.prod(s) for _, s in shapes)}
    shards = shard_plan(shapes, big.shard_bytes)
    return {
        name: len(safetensors_header(shard)) + 4 * sum(math.prod(s) for _, s in shard)
        for name, shard in zip(shard_names(len(shards)), shards, strict=True)
    }


def make_big(root: Path, big: BigModel, seed: int, tokenizers: dict[str, object]) -> dict:
    """Write one big model as a hub-cache repo of the mirror tree; return its part record (files, commit)."""
    from testkit.tinymodels.mirrorset import hub_repo_dir, publish_snapshot

    from .realsize_tokenizer import build_tokenizer_files, with_tokenizer_config

    model = big.model
    if "base" not in tokenizers:
        tokenizers["base"] = build_tokenizer_files(seed)
    tok = with_tokenizer_config(
        tokenizers["base"],  # type: ignore[arg-type]
        model_max_length=model.model_max_length,
        tokenizer_class=model.tokenizer_class,
    )
    repo_dir = hub_repo_dir(root, model.repo)
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    staging = repo_dir / f".staging{os.getpid()}"
    staging.mkdir(parents=True)
    (staging / "config.json").write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
    (staging / "generation_config.json").write_text(json.dumps(model.generation, indent=2, sort_keys=True) + "\n")
    for name, data in tok.files.items():
        (staging / name).write_bytes(data)
    tensors, norms = hf_tensors(model.config)
    if weight_files(big, tensors) != weight_files(big):
        raise RuntimeError(f"{model.key}: transformers' tensors differ from bench.realsize's shape table")

    def make(name: str, shape: Shape):
        return _hf_fill(model, name, shape, norms, seed)

    if big.shard_bytes is None:
        write_safetensors(staging / "model.safetensors", tensors, make)
    else:
        shards = shard_plan(tensors, big.shard_bytes)
        for name, shard in zip(shard_names(len(shards)), shards, strict=True):
            write_safetensors(staging / name, shard, make)
        index = json.dumps(index_json(shards), indent=2, sort_keys=True) + "\n"
        (staging / "model.safetensors.index.json").write_text(index)
    commit, digests = publish_snapshot(repo_dir, model.repo, staging, HF_REVISION)
    snapshot = repo_dir / "snapshots" / commit
    files = [
        {"path": (snapshot / n).relative_to(root).as_posix(), "size": (snapshot / n).stat().st_size, "sha256": sha}
        for n, sha in digests.items()
    ]
    return {"files": files, "commit": commit}


def manifest_with_big(text: str) -> str:
    """The realsize manifest with the big models' tables before `[profiles]` and the `big` profile appended."""
    head, marker, profiles = text.partition("[profiles]\n")
    if not marker:
        raise ValueError("not a realsize manifest: no [profiles] table")
    tables = []
    for big in BIG_MODELS:
        m = big.model
        tables += [f"[models.{m.key}]", 'family = "huggingface"', f'repo = "{m.repo}"', f'revision = "{HF_REVISION}"']
        tables += [f"include = {json.dumps(list(m.include))}", 'task = "summarization"', f'role = "{ROLES[m.key]}"', ""]
    comment = "# `big` (bench/realsize_big.py): a sharded model and one file over 2 GB, for file layers.\n"
    return (
        head
        + comment
        + "\n".join(tables)
        + "\n"
        + marker
        + profiles
        + f"{BIG_PROFILE} = {json.dumps(list(BIG_KEYS))}\n"
    )
