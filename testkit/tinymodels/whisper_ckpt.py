"""A tiny English-only Whisper checkpoint with random weights and the real ``.pt`` layout.

The file is what ``whisper.load_model(path)`` expects: ``torch.save`` of
``{"dims": asdict(ModelDimensions(...)), "model_state_dict": ...}``, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .files import write_atomic

WHISPER_NAME = "tiny-random.en"
WHISPER_FILENAME = f"{WHISPER_NAME}.pt"


def english_dims(state: int, heads: int, layers: int) -> dict[str, int]:
    """``ModelDimensions`` of an English-only Whisper (the vocabulary/audio shapes its tokenizer and log-mel
    front end require) with ``layers`` blocks of width ``state`` on each side."""
    return {
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": state,
        "n_audio_head": heads,
        "n_audio_layer": layers,
        "n_vocab": 51864,
        "n_text_ctx": 448,
        "n_text_state": state,
        "n_text_head": heads,
        "n_text_layer": layers,
    }


# A 2-layer, width-64 transformer so the file (float16, like the official checkpoints) stays around 7 MB,
# most of it the 51864 x 64 token embedding.
WHISPER_DIMS = english_dims(64, 2, 2)

# fill(name, shape, layer_norm_module_names) -> a float tensor: the values of one checkpoint tensor.
Fill = Callable[[str, tuple[int, ...], frozenset[str]], Any]

# What a smoke test should pass to ``model.transcribe`` so random weights decode quickly: greedy at a
# single temperature (the default temperature ladder re-decodes up to 6 times when the garbage output
# fails the compression-ratio / logprob checks: ~4 s instead of ~0.5 s for 1 s of audio), no
# conditioning on earlier windows, fp32 on CPU. A decode is capped at n_text_ctx // 2 = 224 tokens.
SMOKE_TRANSCRIBE_KWARGS = {
    "fp16": False,
    "temperature": 0.0,
    "condition_on_previous_text": False,
}


def whisper_checkpoint_bytes(
    seed: int = 0, *, dims: Mapping[str, int] | None = None, fill: Fill | None = None
) -> bytes:
    """The checkpoint's bytes; the same ``seed`` (``dims``, ``fill``) gives the same bytes.

    ``dims`` defaults to :data:`WHISPER_DIMS`. ``fill`` makes every tensor but the encoder's fixed sinusoid
    table, in state-dict order; by default LayerNorms are 1 (weights) or 0 (biases) + N(0, 0.01) and everything
    else N(0, 0.02), drawn in turn from one generator seeded with ``seed``.
    """
    from dataclasses import asdict

    import torch
    from whisper.model import ModelDimensions, Whisper

    model_dims = ModelDimensions(**(WHISPER_DIMS if dims is None else dims))
    # Instantiated for its names, shapes and norm modules only; its init draws from the global RNG (all
    # overwritten below): leave the caller's RNG alone.
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        skeleton = Whisper(model_dims)
    norms = frozenset(name for name, module in skeleton.named_modules() if isinstance(module, torch.nn.LayerNorm))
    skeleton_state = skeleton.state_dict()
    names = [(key, tuple(tensor.shape)) for key, tensor in skeleton_state.items()]
    # A fixed sinusoid table in the real model; kept (it is deterministic already).
    sinusoids = skeleton_state["encoder.positional_embedding"].detach().clone()
    del skeleton, skeleton_state  # a large model's random init need not sit in memory while filling
    if fill is None:
        fill = _default_fill(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in names:
        value = sinusoids if key == "encoder.positional_embedding" else fill(key, shape, norms)
        # Stored as float16 like the official checkpoints (load_state_dict casts to the model's fp32).
        state[key] = value.to(torch.float16).contiguous()
    buffer = io.BytesIO()
    # Saving to a BytesIO names the archive "archive/" whatever the target file is called, so the bytes
    # depend on the seed only (a path would put its stem in every zip entry name).
    torch.save({"dims": asdict(model_dims), "model_state_dict": state}, buffer)
    return buffer.getvalue()


def _default_fill(seed: int) -> Fill:
    import torch

    generator = torch.Generator().manual_seed(seed)

    def fill(name: str, shape: tuple[int, ...], norms: frozenset[str]) -> torch.Tensor:
        module, _, leaf = name.rpartition(".")
        if module in norms:
            base = 1.0 if leaf == "weight" else 0.0
            return base + 0.01 * torch.randn(shape, generator=generator)
        # Everything else, including decoder.positional_embedding (torch.empty in the real model).
        return 0.02 * torch.randn(shape, generator=generator)

    return fill


def make_whisper_checkpoint(path: Path, seed: int = 0) -> str:
    """Write a tiny random English-only Whisper checkpoint to ``path``; return its sha256 (hex)."""
    path = Path(path)
    data = whisper_checkpoint_bytes(seed)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()
