"""The real models the benchmarks stand in for: their shapes, configs, file sizes, ids and profiles.

``RealSize.exact`` says whether a real size is a byte count we know (from the Hub listing, as
bench/preload_rerun.py records them) or a rounded figure ("558 MB"). Data only: `bench.realsize` generates
random-weight models of these, `bench.realsize_tensors` computes their tensors and file sizes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from testkit.tinymodels.whisper_ckpt import english_dims


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
