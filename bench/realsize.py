"""Random-weight models at the REAL models' shapes and file sizes, as a mirror tree with the real names.

Why: benchmarks (preload, image layers, cold starts) must move and load the real bytes, and the hubs are
unreachable here. Every file is a real, loadable model: ``modelbake verify`` loads each with Whisper's loader,
``spacy.load`` and ``AutoModelForSeq2SeqLM`` and runs it. Layout as :func:`testkit.tinymodels.build_mirror_tree`
(``MirrorServer(root)`` serves it)::

    ROOT/whisper/{tiny.en,base.en}.pt                              fp16, the real ModelDimensions
    ROOT/spacy/en_core_web_sm-3.8.0-py3-none-any.whl                en_core_web_sm's components, ~12.8 MB
    ROOT/huggingface/models--<org>--<name>/{refs/main,snapshots/<commit>/*}
        facebook/bart-base, facebook/bart-large-cnn, sshleifer/distilbart-cnn-12-6, allenai/led-base-16384:
        the real config.json, generation_config.json, a 50265-token byte-level BPE (vocab.json, merges.txt,
        tokenizer.json, tokenizer_config.json) and model.safetensors (float32; also for distilbart and LED,
        whose real repos are pinned to pytorch_model.bin in the project's models.toml)
    ROOT/models.toml        the project's model ids, names, repos and profiles; generated sha256 pins
    ROOT/.parts/<id>.json   one per finished model (resume after an interruption)
    ROOT/.complete          written last: generator + library versions and what was written

Weights are filled tensor by tensor from a generator seeded by (seed, model, tensor name) and streamed to
disk, so a 1.6 GB model never sits in memory and the bytes do not depend on the order of work. LayerNorms are
1/0, biases 0, the rest N(0, 0.02); ``final_logits_bias`` suppresses ``</s>`` so ``generate()`` runs to its
token budget instead of stopping at once (see :data:`EOS_LOGIT_BIAS`). Run from the repository root.

    python -m bench.realsize [--root DIR] [--force] [--big]

``--big`` adds the `big` profile: a sharded model and one model.safetensors over 2 GB (bench/realsize_big.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from testkit.tinymodels.files import library_versions, make_world_readable, write_atomic
from testkit.tinymodels.files import sha256_file as _sha256
from testkit.tinymodels.whisper_ckpt import english_dims

GENERATOR_VERSION = 1
COMPLETE_MARKER = ".complete"
PARTS_DIR = ".parts"
MANIFEST_NAME = "models.toml"
HF_REVISION = "main"
SEED = 0
DEFAULT_ROOT = Path(os.environ.get("MODELBAKE_REALSIZE_DIR", Path(tempfile.gettempdir()) / "modelbake-realsize"))
INIT_STD = 0.02
# final_logits_bias of </s>: with random weights and tied embeddings the residual stream makes the decoder
# predict its own input token, and the decoder starts from </s>, so generate() would stop at once. Suppressed,
# generate() runs to its token budget (max_new_tokens / max_length), like the real models' long summaries.
EOS_LOGIT_BIAS = -100.0

_STAMP_DISTRIBUTIONS = (
    "torch",
    "openai-whisper",
    "transformers",
    "tokenizers",
    "spacy",
    "thinc",
    "numpy",
    "setuptools",
    "build",
)

# ---------------------------------------------------------------------------------------------------------
# The models: real shapes, real configs, real sizes. ``exact`` says whether a real size is a byte count we
# know (from the Hub listing, as bench/preload_rerun.py records them) or a rounded figure ("558 MB").


@dataclass(frozen=True)
class RealSize:
    """A real file's size; ``exact`` False when only the rounded figure the Hub/pip shows is known."""

    file: str
    bytes: int
    exact: bool


@dataclass(frozen=True)
class WhisperModel:
    key: str
    name: str
    dims: dict[str, int]
    real: RealSize

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


@dataclass(frozen=True)
class HFModel:
    key: str
    repo: str
    config: dict
    generation: dict
    model_max_length: int
    tokenizer_class: str
    real: RealSize  # the real repo's weight file (pytorch_model.bin for distilbart and LED)
    include: tuple[str, ...] = ("*.json", "*.txt", "model.safetensors")
    real_include: tuple[str, ...] = ("*.json", "*.txt", "model.safetensors")


WHISPER_MODELS = (
    WhisperModel("whisper-tiny-en", "tiny.en", english_dims(384, 6, 4), RealSize("tiny.en.pt", 75_570_000, False)),
    WhisperModel("whisper-base-en", "base.en", english_dims(512, 8, 6), RealSize("base.en.pt", 145_262_807, True)),
)

_LABELS = {
    "id2label": {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"},
    "label2id": {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2},
}
_SPECIAL_IDS = {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2}
_SUMMARIZATION_CNN = {"length_penalty": 2.0, "max_length": 142, "min_length": 56, "num_beams": 4}


def _bart_config(
    d_model: int, layers: tuple[int, int], heads: int, ffn: int, vocab: int, extra: dict, version: str
) -> dict:
    """A BART config.json as the real repos carry it (their generation keys included)."""
    config = {
        "activation_dropout": 0.0,
        "activation_function": "gelu",
        "architectures": ["BartForConditionalGeneration"],
        "attention_dropout": 0.0,
        "classif_dropout": 0.0,
        "classifier_dropout": 0.0,
        "d_model": d_model,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": ffn,
        "decoder_layerdrop": 0.0,
        "decoder_layers": layers[1],
        "dropout": 0.1,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": ffn,
        "encoder_layerdrop": 0.0,
        "encoder_layers": layers[0],
        "forced_eos_token_id": 2,
        "init_std": 0.02,
        "is_encoder_decoder": True,
        "max_position_embeddings": 1024,
        "model_type": "bart",
        "normalize_before": False,
        "num_hidden_layers": layers[0],
        "scale_embedding": False,
        "transformers_version": version,
        "use_cache": True,
        "vocab_size": vocab,
        **_LABELS,
        **_SPECIAL_IDS,
    }
    config.update(extra)
    return config


def _generation(config: dict, keys: Iterable[str]) -> dict:
    """generation_config.json as transformers derives it from such a config (``_from_model_config``)."""
    out = {"_from_model_config": True, **{k: config[k] for k in keys if k in config}}
    out["transformers_version"] = "4.27.0.dev0"
    return out


_GEN_KEYS = (
    "bos_token_id",
    "decoder_start_token_id",
    "early_stopping",
    "eos_token_id",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "length_penalty",
    "max_length",
    "min_length",
    "no_repeat_ngram_size",
    "num_beams",
    "pad_token_id",
)

_BART_BASE = _bart_config(
    768,
    (6, 6),
    12,
    3072,
    50265,
    {
        "_name_or_path": "bart-base",
        "activation_dropout": 0.1,
        "add_bias_logits": False,
        "add_final_layer_norm": False,
        "architectures": ["BartModel"],
        "attention_dropout": 0.1,
        "classif_dropout": 0.1,
        "early_stopping": True,
        "forced_bos_token_id": 0,
        "gradient_checkpointing": False,
        "no_repeat_ngram_size": 3,
        "normalize_embedding": True,
        "num_beams": 4,
        "task_specific_params": {
            "summarization": {"length_penalty": 1.0, "max_length": 128, "min_length": 12, "num_beams": 4},
            "summarization_cnn": _SUMMARIZATION_CNN,
            "summarization_xsum": {"length_penalty": 1.0, "max_length": 62, "min_length": 11, "num_beams": 6},
        },
        "torch_dtype": "float32",
    },
    "4.12.0.dev0",
)
_CNN_EXTRA = {
    "_num_labels": 3,
    "add_final_layer_norm": False,
    "early_stopping": True,
    "force_bos_token_to_be_generated": True,
    "forced_bos_token_id": 0,
    "gradient_checkpointing": False,
    "length_penalty": 2.0,
    "max_length": 142,
    "min_length": 56,
    "no_repeat_ngram_size": 3,
    "num_beams": 4,
    "output_past": True,
    "prefix": " ",
    "task_specific_params": {
        "summarization": {"early_stopping": True, "no_repeat_ngram_size": 3, **_SUMMARIZATION_CNN}
    },
}
_BART_LARGE_CNN = _bart_config(1024, (12, 12), 16, 4096, 50264, _CNN_EXTRA, "4.7.0.dev0")
_DISTILBART = _bart_config(
    1024,
    (12, 6),
    16,
    4096,
    50264,
    {
        **_CNN_EXTRA,
        "add_bias_logits": False,
        "extra_pos_embeddings": 2,
        "normalize_embedding": True,
        "replacing_rate": 0,
        "static_position_embeddings": False,
        "student_decoder_layers": None,
        "student_encoder_layers": None,
    },
    "4.7.0.dev0",
)
_DISTILBART.pop("forced_bos_token_id")
_LED_BASE = {
    "_name_or_path": "./",
    "activation_dropout": 0.0,
    "activation_function": "gelu",
    "architectures": ["LEDForConditionalGeneration"],
    "attention_dropout": 0.0,
    "attention_window": [1024] * 6,
    "classif_dropout": 0.0,
    "d_model": 768,
    "decoder_attention_heads": 12,
    "decoder_ffn_dim": 3072,
    "decoder_layerdrop": 0.0,
    "decoder_layers": 6,
    "dropout": 0.1,
    "encoder_attention_heads": 12,
    "encoder_ffn_dim": 3072,
    "encoder_layerdrop": 0.0,
    "encoder_layers": 6,
    "gradient_checkpointing": False,
    "init_std": 0.02,
    "is_encoder_decoder": True,
    "max_decoder_position_embeddings": 1024,
    "max_encoder_position_embeddings": 16384,
    "model_type": "led",
    "num_hidden_layers": 6,
    "transformers_version": "4.2.0.dev0",
    "use_cache": True,
    "vocab_size": 50265,
    **_LABELS,
    **_SPECIAL_IDS,
}

HF_MODELS = (
    HFModel(
        "bart-base",
        "facebook/bart-base",
        _BART_BASE,
        _generation(_BART_BASE, _GEN_KEYS),
        1024,
        "BartTokenizer",
        RealSize("model.safetensors", 558_000_000, False),
    ),
    HFModel(
        "bart-large-cnn",
        "facebook/bart-large-cnn",
        _BART_LARGE_CNN,
        _generation(_BART_LARGE_CNN, _GEN_KEYS),
        1024,
        "BartTokenizer",
        RealSize("model.safetensors", 1_625_270_765, True),
    ),
    HFModel(
        "distilbart-cnn-12-6",
        "sshleifer/distilbart-cnn-12-6",
        _DISTILBART,
        _generation(_DISTILBART, _GEN_KEYS),
        1024,
        "BartTokenizer",
        RealSize("pytorch_model.bin", 1_222_000_000, False),
        real_include=("*.json", "*.txt", "pytorch_model.bin"),
    ),
    HFModel(
        "led-base-16384",
        "allenai/led-base-16384",
        _LED_BASE,
        _generation(_LED_BASE, _GEN_KEYS),
        16384,
        "LEDTokenizer",
        RealSize("pytorch_model.bin", 647_678_513, True),
        real_include=("*.json", "*.txt", "pytorch_model.bin"),
    ),
)
# Tokenizer files of the real BART/LED repos (same GPT-2 vocabulary in all four).
REAL_TOKENIZER_SIZES = {
    "vocab.json": RealSize("vocab.json", 898_822, True),
    "merges.txt": RealSize("merges.txt", 456_318, True),
    "tokenizer.json": RealSize("tokenizer.json", 1_355_863, True),
}
SPACY_KEY = "spacy-en-core-web-sm"
PROFILES = {
    "test": ("whisper-tiny-en", "spacy-en-core-web-sm", "bart-base", "led-base-16384"),
    "prod": ("whisper-base-en", "spacy-en-core-web-sm", "bart-large-cnn", "led-base-16384"),
    "fast": ("whisper-tiny-en", "spacy-en-core-web-sm", "distilbart-cnn-12-6", "led-base-16384"),
}
ROLES = {"bart-base": "map", "bart-large-cnn": "map", "distilbart-cnn-12-6": "map", "led-base-16384": "reduce"}

# ---------------------------------------------------------------------------------------------------------
# Sizes from shapes, without allocating anything (the unit tests check these against the real sizes).

Shape = tuple[int, ...]


def whisper_tensor_shapes(dims: dict[str, int]) -> list[tuple[str, Shape]]:
    """``Whisper(dims).state_dict()``'s names and shapes, from openai-whisper's model.py."""
    a, t = dims["n_audio_state"], dims["n_text_state"]
    out: list[tuple[str, Shape]] = [
        ("encoder.positional_embedding", (dims["n_audio_ctx"], a)),
        ("encoder.conv1.weight", (a, dims["n_mels"], 3)),
        ("encoder.conv1.bias", (a,)),
        ("encoder.conv2.weight", (a, a, 3)),
        ("encoder.conv2.bias", (a,)),
    ]

    def attention(prefix: str, n: int) -> list[tuple[str, Shape]]:
        return [
            (f"{prefix}.query.weight", (n, n)),
            (f"{prefix}.query.bias", (n,)),
            (f"{prefix}.key.weight", (n, n)),  # no bias
            (f"{prefix}.value.weight", (n, n)),
            (f"{prefix}.value.bias", (n,)),
            (f"{prefix}.out.weight", (n, n)),
            (f"{prefix}.out.bias", (n,)),
        ]

    def block(prefix: str, n: int, cross: bool) -> list[tuple[str, Shape]]:
        parts = [*attention(f"{prefix}.attn", n), (f"{prefix}.attn_ln.weight", (n,)), (f"{prefix}.attn_ln.bias", (n,))]
        if cross:
            parts += attention(f"{prefix}.cross_attn", n)
            parts += [(f"{prefix}.cross_attn_ln.weight", (n,)), (f"{prefix}.cross_attn_ln.bias", (n,))]
        parts += [
            (f"{prefix}.mlp.0.weight", (4 * n, n)),
            (f"{prefix}.mlp.0.bias", (4 * n,)),
            (f"{prefix}.mlp.2.weight", (n, 4 * n)),
            (f"{prefix}.mlp.2.bias", (n,)),
            (f"{prefix}.mlp_ln.weight", (n,)),
            (f"{prefix}.mlp_ln.bias", (n,)),
        ]
        return parts

    for i in range(dims["n_audio_layer"]):
        out += block(f"encoder.blocks.{i}", a, cross=False)
    out += [("encoder.ln_post.weight", (a,)), ("encoder.ln_post.bias", (a,))]
    out += [
        ("decoder.positional_embedding", (dims["n_text_ctx"], t)),
        ("decoder.token_embedding.weight", (dims["n_vocab"], t)),
    ]
    for i in range(dims["n_text_layer"]):
        out += block(f"decoder.blocks.{i}", t, cross=True)
    out += [("decoder.ln.weight", (t,)), ("decoder.ln.bias", (t,))]
    return out


# torch.save's zip: per tensor a 64-byte aligned record with local + central headers, plus data.pkl (~130 B
# per tensor of pickled names/shapes); calibrated on the generated files (within 0.01%).
_TORCH_SAVE_PER_TENSOR = 300
_TORCH_SAVE_FIXED = 1_500


def whisper_file_bytes(dims: dict[str, int]) -> int:
    """Expected size of the fp16 checkpoint, from the shapes (no allocation)."""
    shapes = whisper_tensor_shapes(dims)
    return 2 * sum(math.prod(s) for _, s in shapes) + _TORCH_SAVE_PER_TENSOR * len(shapes) + _TORCH_SAVE_FIXED


def seq2seq_tensor_shapes(config: dict) -> list[tuple[str, Shape]]:
    """The tensors ``save_pretrained`` writes for BART/LED ForConditionalGeneration (tied embeddings once).

    From transformers' modeling_bart.py / modeling_led.py: BART's learned positions have 2 extra rows, LED's
    encoder self-attention has separate global query/key/value projections.
    """
    arch = config["model_type"]
    d, vocab = config["d_model"], config["vocab_size"]
    prefix = {"bart": "model", "led": "led"}[arch]
    if arch == "bart":
        enc_pos = dec_pos = config["max_position_embeddings"] + 2
    else:
        enc_pos, dec_pos = config["max_encoder_position_embeddings"], config["max_decoder_position_embeddings"]

    def linear(name: str, n_out: int, n_in: int) -> list[tuple[str, Shape]]:
        return [(f"{name}.weight", (n_out, n_in)), (f"{name}.bias", (n_out,))]

    def norm(name: str) -> list[tuple[str, Shape]]:
        return [(f"{name}.weight", (d,)), (f"{name}.bias", (d,))]

    def attention(name: str, projections: Iterable[str]) -> list[tuple[str, Shape]]:
        return [t for p in projections for t in linear(f"{name}.{p}", d, d)]

    out: list[tuple[str, Shape]] = [(f"{prefix}.shared.weight", (vocab, d))]
    for side, n_pos in (("encoder", enc_pos), ("decoder", dec_pos)):
        base = f"{prefix}.{side}"
        out.append((f"{base}.embed_positions.weight", (n_pos, d)))
        ffn = config[f"{side}_ffn_dim"]
        for i in range(config[f"{side}_layers"]):
            layer = f"{base}.layers.{i}"
            if side == "encoder" and arch == "led":
                projections = ("query", "key", "value", "query_global", "key_global", "value_global")
                out += attention(f"{layer}.self_attn.longformer_self_attn", projections)
                out += linear(f"{layer}.self_attn.output", d, d)
            else:
                out += attention(f"{layer}.self_attn", ("k_proj", "v_proj", "q_proj", "out_proj"))
            out += norm(f"{layer}.self_attn_layer_norm")
            if side == "decoder":
                out += attention(f"{layer}.encoder_attn", ("k_proj", "v_proj", "q_proj", "out_proj"))
                out += norm(f"{layer}.encoder_attn_layer_norm")
            out += linear(f"{layer}.fc1", ffn, d) + linear(f"{layer}.fc2", d, ffn) + norm(f"{layer}.final_layer_norm")
        out += norm(f"{base}.layernorm_embedding")
    out.append(("final_logits_bias", (1, vocab)))
    return out


def safetensors_header(tensors: Iterable[tuple[str, Shape]], dtype: str = "F32", itemsize: int = 4) -> bytes:
    """The 8-byte length + JSON header this module writes (tensors in name order, padded to 8 bytes)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in sorted(tensors):
        size = math.prod(shape) * itemsize
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def safetensors_file_bytes(config: dict) -> int:
    """Exact size of the model.safetensors this module writes for ``config`` (float32)."""
    shapes = seq2seq_tensor_shapes(config)
    return len(safetensors_header(shapes)) + 4 * sum(math.prod(s) for _, s in shapes)


# ---------------------------------------------------------------------------------------------------------
# What was generated.


@dataclass(frozen=True)
class GeneratedFile:
    model_id: str
    path: str  # relative to the tree's root
    size: int
    sha256: str
    real: RealSize | None = None


@dataclass(frozen=True)
class RealSizeSet:
    """What :func:`build_realsize_tree` wrote (or found complete)."""

    root: Path
    manifest: Path
    files: tuple[GeneratedFile, ...]
    whisper_sha256: dict[str, str]  # name -> sha256
    spacy_wheel: Path
    spacy_sha256: str
    hf_commits: dict[str, str]  # repo -> commit
    spacy_vector_rows: int
    seconds: dict[str, float] = field(default_factory=dict)  # per model id, of the generation that wrote it
    cached: bool = False
    profiles: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PROFILES))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def snapshot(self, repo: str) -> Path:
        """``ROOT/huggingface/models--org--name/snapshots/<commit>`` of a Hugging Face repo."""
        from testkit.tinymodels.mirrorset import hub_repo_dir

        return hub_repo_dir(self.root, repo) / "snapshots" / self.hf_commits[repo]

    def profile_bytes(self, profile: str) -> int:
        ids = set(self.profiles[profile])
        return sum(f.size for f in self.files if f.model_id in ids)

    def table(self) -> str:
        """Markdown table: every file, generated vs real size."""
        lines = ["| model | file | generated bytes | real bytes | diff |", "| --- | --- | ---: | ---: | ---: |"]
        for f in self.files:
            if f.real is None:
                real, diff = "-", ""
            else:
                real = f"{'' if f.real.exact else '~'}{f.real.bytes:,}" + (
                    "" if f.real.file == Path(f.path).name else f" ({f.real.file})"
                )
                diff = f"{100 * (f.size - f.real.bytes) / f.real.bytes:+.2f}%"
            lines.append(f"| {f.model_id} | {f.path} | {f.size:,} | {real} | {diff} |")
        lines.append(f"| total | | {self.total_bytes:,} | | |")
        return "\n".join(lines)

    def summary(self) -> str:
        how = "reused" if self.cached else "built"
        sizes = ", ".join(f"{p} {self.profile_bytes(p) / 1e9:.2f} GB" for p in self.profiles)
        return f"{how} real-size models in {self.root}: {self.total_bytes / 1e9:.2f} GB ({sizes}); manifest {self.manifest}"


# ---------------------------------------------------------------------------------------------------------
# Generation.


def build_realsize_tree(root: Path, *, force: bool = False, seed: int = SEED, big: bool = False) -> RealSizeSet:
    """Generate (or reuse, when ``ROOT/.complete`` matches this generator and these libraries) the tree.

    ``big``: also the `big` profile's models (bench/realsize_big.py, 5.5 GB more), added to a complete tree."""
    from filelock import FileLock

    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        stamp = _stamp(seed)
        marker = root / COMPLETE_MARKER
        if not force:
            found = _read_complete(root, stamp, big)
            if found is not None:
                return found
        marker.unlink(missing_ok=True)
        if force:
            for sub in ("whisper", "spacy", "huggingface", PARTS_DIR):
                shutil.rmtree(root / sub, ignore_errors=True)
        parts = _generate(root, stamp, seed, big)
        whisper_sha = {m.name: parts[m.key]["files"][0]["sha256"] for m in WHISPER_MODELS}
        spacy = parts[SPACY_KEY]
        text = manifest_text(whisper_sha, spacy["files"][0]["sha256"])
        if big:
            from .realsize_big import manifest_with_big

            text = manifest_with_big(text)
        write_atomic(root / MANIFEST_NAME, text.encode())
        make_world_readable(root)
        record = {"stamp": stamp, "parts": parts}
        write_atomic(marker, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        os.chmod(marker, 0o644)
        return _describe(root, parts, cached=False)


def _generate(root: Path, stamp: dict, seed: int, big: bool = False) -> dict[str, dict]:
    """Each model in turn, reusing a model whose part record matches (an interrupted run resumes)."""
    parts: dict[str, dict] = {}
    tokenizers: dict[str, object] = {}
    jobs: list[tuple[str, Callable[[], dict]]] = [
        *((m.key, lambda m=m: _make_whisper(root, m, seed)) for m in WHISPER_MODELS),
        (SPACY_KEY, lambda: _make_spacy(root, seed)),
        *((m.key, lambda m=m: _make_hf(root, m, seed, tokenizers)) for m in HF_MODELS),
    ]
    if big:
        from .realsize_big import BIG_MODELS, make_big

        jobs += [(b.key, lambda b=b: make_big(root, b, seed, tokenizers)) for b in BIG_MODELS]
    for key, job in jobs:
        part = _read_part(root, key, stamp)
        if part is None:
            started = time.monotonic()
            part = job()
            part["seconds"] = round(time.monotonic() - started, 2)
            part["stamp"] = stamp
            write_atomic(root / PARTS_DIR / f"{key}.json", (json.dumps(part, indent=1, sort_keys=True) + "\n").encode())
            print(f"realsize: {key} generated in {part['seconds']:.1f} s", file=sys.stderr, flush=True)
        parts[key] = part
    return parts


def _tensor_generator(seed: int, model: str, name: str):
    """A torch.Generator seeded by (seed, model, tensor): bytes independent of the order of generation."""
    import torch

    digest = hashlib.sha256(f"modelbake-realsize\0{seed}\0{model}\0{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _fill(model: str, name: str, shape: Shape, norms: frozenset[str], seed: int):
    """LayerNorm weights 1, biases 0, everything else N(0, 0.02) from the tensor's own generator (float32)."""
    import torch

    module, _, leaf = name.rpartition(".")
    if module in norms:
        return torch.full(shape, 1.0 if leaf == "weight" else 0.0)
    if leaf == "bias" or name == "final_logits_bias":
        return torch.zeros(shape)
    return torch.empty(shape).normal_(0.0, INIT_STD, generator=_tensor_generator(seed, model, name))


def _hf_fill(model: HFModel, name: str, shape: Shape, norms: frozenset[str], seed: int):
    """:func:`_fill`, with </s> suppressed in ``final_logits_bias`` (see :data:`EOS_LOGIT_BIAS`)."""
    tensor = _fill(model.repo, name, shape, norms, seed)
    if name == "final_logits_bias":
        tensor[..., model.config["eos_token_id"]] = EOS_LOGIT_BIAS
    return tensor


def _whisper_bytes(model: WhisperModel, seed: int) -> bytes:
    """The fp16 checkpoint ``whisper.load_model`` reads, the tiny model's writer with :func:`_fill`'s values."""
    from testkit.tinymodels.whisper_ckpt import whisper_checkpoint_bytes

    return whisper_checkpoint_bytes(
        seed, dims=model.dims, fill=lambda name, shape, norms: _fill(model.name, name, shape, norms, seed)
    )


def _make_whisper(root: Path, model: WhisperModel, seed: int) -> dict:
    data = _whisper_bytes(model, seed)
    rel = f"whisper/{model.filename}"
    write_atomic(root / rel, data)
    return {"files": [{"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}


def add_whisper_variant(root: Path, key: str = "whisper-tiny-en", seed: int = SEED + 1) -> str:
    """Another checkpoint of one Whisper model (same real shape, other weights) at ``ROOT/whisper/<sha256>/<name>.pt``
    (the mirror serves it for that sha256 only); return its sha256. For benchmarks that change one model's pin."""
    model = next(m for m in WHISPER_MODELS if m.key == key)
    data = _whisper_bytes(model, seed)
    digest = hashlib.sha256(data).hexdigest()
    target = Path(root) / "whisper" / digest / model.filename
    if not (target.is_file() and target.stat().st_size == len(data)):
        write_atomic(target, data)
    os.chmod(target.parent, 0o755)
    os.chmod(target, 0o644)
    return digest


def _make_spacy(root: Path, seed: int) -> dict:
    from .realsize_spacy import make_wheel

    wheel, rows = make_wheel(root / "spacy", seed=seed)
    rel = wheel.relative_to(root).as_posix()
    return {"files": [{"path": rel, "size": wheel.stat().st_size, "sha256": _sha256(wheel)}], "vector_rows": rows}


def hf_tensors(config: dict) -> tuple[list[tuple[str, Shape]], frozenset[str]]:
    """(name, shape) of what ``save_pretrained`` would write, and the LayerNorm module names, from the library.

    The model is built on the meta device: shapes only, nothing allocated or initialised.
    """
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    with tempfile.TemporaryDirectory(prefix="realsize-config-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        cfg = AutoConfig.from_pretrained(tmp)  # parsed as from_pretrained will parse the real file
    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(cfg)
    params = dict(model.named_parameters())  # tied weights once, under their first name (model.shared.weight)
    all_params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    tensors = [(k, tuple(v.shape)) for k, v in model.state_dict().items() if k in params or k not in all_params]
    norms = frozenset(n for n, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm))
    return tensors, norms


def write_safetensors(path: Path, tensors: list[tuple[str, Shape]], make: Callable[[str, Shape], object]) -> str:
    """Stream a float32 safetensors file, one tensor in memory at a time; return its sha256.

    safetensors' own ``save_file`` needs every tensor at once (1.6 GB for bart-large-cnn); the format is a
    length-prefixed JSON header and the raw little-endian data, so writing it directly is simple.
    """
    if sys.byteorder != "little":
        raise RuntimeError("safetensors data is little-endian")
    digest = hashlib.sha256()
    header = safetensors_header(tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(header)
        digest.update(header)
        for name, shape in sorted(tensors):
            tensor = make(name, shape)
            data = memoryview(tensor.contiguous().numpy()).cast("B")  # type: ignore[attr-defined]
            f.write(data)
            digest.update(data)
            del data, tensor
    os.replace(tmp, path)
    return digest.hexdigest()


def _make_hf(root: Path, model: HFModel, seed: int, tokenizers: dict[str, object]) -> dict:
    from testkit.tinymodels.mirrorset import hub_repo_dir, publish_snapshot

    from .realsize_tokenizer import build_tokenizer_files, with_tokenizer_config

    if "base" not in tokenizers:
        tokenizers["base"] = build_tokenizer_files(seed)  # ~4 s, shared by the four repos
    tok = with_tokenizer_config(
        tokenizers["base"],  # type: ignore[arg-type]
        model_max_length=model.model_max_length,
        tokenizer_class=model.tokenizer_class,
    )
    repo_dir = hub_repo_dir(root, model.repo)
    if repo_dir.exists():
        shutil.rmtree(repo_dir)  # stale snapshots of an older generator
    staging = repo_dir / f".staging{os.getpid()}"
    staging.mkdir(parents=True)
    texts = {
        "config.json": json.dumps(model.config, indent=2, sort_keys=True) + "\n",
        "generation_config.json": json.dumps(model.generation, indent=2, sort_keys=True) + "\n",
    }
    for name, text in texts.items():
        (staging / name).write_text(text)
    for name, data in tok.files.items():
        (staging / name).write_bytes(data)
    tensors, norms = hf_tensors(model.config)
    write_safetensors(
        staging / "model.safetensors", tensors, lambda name, shape: _hf_fill(model, name, shape, norms, seed)
    )
    commit, digests = publish_snapshot(repo_dir, model.repo, staging, HF_REVISION)
    snapshot = repo_dir / "snapshots" / commit
    files = [
        {
            "path": (snapshot / name).relative_to(root).as_posix(),
            "size": (snapshot / name).stat().st_size,
            "sha256": sha,
        }
        for name, sha in digests.items()
    ]
    return {"files": files, "commit": commit}


def manifest_text(whisper_sha256: dict[str, str], spacy_sha256: str) -> str:
    """The project's models.toml with generated pins, and model.safetensors for every Hugging Face repo."""
    from .realsize_spacy import NAME, VERSION

    out = [
        f"# Random-weight models at the real sizes, from `python -m bench.realsize` (generator {GENERATOR_VERSION}).",
        "# Same ids, names, repos and profiles as the project's models.toml; the Whisper and spaCy pins are the",
        "# generated files' sha256. Every Hugging Face repo carries model.safetensors here: distilbart-cnn-12-6 and",
        "# led-base-16384 are pinned to pytorch_model.bin in the project's manifest.",
        "",
    ]
    for m in WHISPER_MODELS:
        out += [
            f"[models.{m.key}]",
            'family = "whisper"',
            f'name = "{m.name}"',
            f'sha256 = "{whisper_sha256[m.name]}"',
            "",
        ]
    out += [f"[models.{SPACY_KEY}]", 'family = "spacy"', f'name = "{NAME}"', f'version = "{VERSION}"']
    out += [f'sha256 = "{spacy_sha256}"', ""]
    for h in HF_MODELS:
        include = json.dumps(list(h.include))  # a JSON array of strings is a TOML array
        out += [f"[models.{h.key}]", 'family = "huggingface"', f'repo = "{h.repo}"', f'revision = "{HF_REVISION}"']
        if h.include != h.real_include:
            out.append(f"# the project's models.toml: include = {json.dumps(list(h.real_include))}")
        out += [f"include = {include}", 'task = "summarization"', f'role = "{ROLES[h.key]}"', ""]
    out.append("[profiles]")
    out += [f"{name} = {json.dumps(list(ids))}" for name, ids in PROFILES.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Caching and small helpers.


def _stamp(seed: int) -> dict:
    return {"generator": GENERATOR_VERSION, "seed": seed, "versions": library_versions(_STAMP_DISTRIBUTIONS)}


def _files_present(root: Path, files: list[dict]) -> bool:
    for f in files:
        path = root / f["path"]
        if not path.is_file() or path.stat().st_size != f["size"]:
            return False
    return True


def _read_part(root: Path, key: str, stamp: dict) -> dict | None:
    try:
        part = json.loads((root / PARTS_DIR / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if part.get("stamp") != stamp or not _files_present(root, part.get("files", [])):
        return None
    return part


def _read_complete(root: Path, stamp: dict, big: bool = False) -> RealSizeSet | None:
    """The recorded tree when the marker matches and every file has its recorded size (stat only, no hashing)."""
    try:
        record = json.loads((root / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    if record.get("stamp") != stamp or not (root / MANIFEST_NAME).is_file():
        return None
    parts = record["parts"]
    if not all(_files_present(root, p["files"]) for p in parts.values()):
        return None
    if big and not set(_big_keys()) <= set(parts):
        return None
    return _describe(root, parts, cached=True)


def _real_size(model_id: str, path: str) -> RealSize | None:
    name = Path(path).name
    for w in WHISPER_MODELS:
        if w.key == model_id:
            return w.real
    if model_id == SPACY_KEY:
        from .realsize_spacy import REAL_WHEEL_BYTES

        return RealSize(name, REAL_WHEEL_BYTES, False)
    for h in HF_MODELS:
        if h.key == model_id:
            return h.real if name == "model.safetensors" else REAL_TOKENIZER_SIZES.get(name)
    return None


def _big_keys() -> tuple[str, ...]:
    from .realsize_big import BIG_KEYS

    return BIG_KEYS


def _describe(root: Path, parts: dict[str, dict], *, cached: bool) -> RealSizeSet:
    big = [key for key in _big_keys() if key in parts]
    order = [*(m.key for m in WHISPER_MODELS), SPACY_KEY, *(m.key for m in HF_MODELS), *big]
    files = tuple(
        GeneratedFile(key, f["path"], f["size"], f["sha256"], _real_size(key, f["path"]))
        for key in order
        for f in parts[key]["files"]
    )
    spacy = parts[SPACY_KEY]
    return RealSizeSet(
        root=root,
        manifest=root / MANIFEST_NAME,
        files=files,
        whisper_sha256={m.name: parts[m.key]["files"][0]["sha256"] for m in WHISPER_MODELS},
        spacy_wheel=root / spacy["files"][0]["path"],
        spacy_sha256=spacy["files"][0]["sha256"],
        hf_commits={m.repo: parts[m.key]["commit"] for m in [*HF_MODELS, *_big_models(big)]},
        spacy_vector_rows=spacy.get("vector_rows", 0),
        seconds={key: parts[key].get("seconds", 0.0) for key in order},
        cached=cached,
        profiles={**PROFILES, **({"big": tuple(big)} if big else {})},
    )


def _big_models(keys: list[str]) -> list[HFModel]:
    from .realsize_big import BIG_MODELS

    return [b.model for b in BIG_MODELS if b.key in keys]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.realsize [--root DIR] [--force]``: build (or reuse) the tree, print its files and sizes."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.realsize", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"mirror directory (default {DEFAULT_ROOT})")
    parser.add_argument("--force", action="store_true", help="regenerate even if ROOT/.complete matches")
    parser.add_argument(
        "--big", action="store_true", help="also profile `big`: a sharded model and one over 2 GB (5.5 GB more)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    tree = build_realsize_tree(args.root, force=args.force, big=args.big)
    elapsed = time.monotonic() - started
    print(tree.table())
    print()
    if not tree.cached:
        print("generation seconds per model: " + ", ".join(f"{k} {v:.1f}" for k, v in tree.seconds.items()))
    print(f"{tree.summary()} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
