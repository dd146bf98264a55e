"""A tiny English-only Whisper checkpoint with random weights and the real ``.pt`` layout.

The file is what ``whisper.load_model(path)`` expects: ``torch.save`` of
``{"dims": asdict(ModelDimensions(...)), "model_state_dict": ...}``, loadable with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

WHISPER_NAME = "tiny-random.en"
WHISPER_FILENAME = f"{WHISPER_NAME}.pt"

# English-only vocabulary/audio shapes (what whisper's tokenizer and log-mel front end require),
# with a 2-layer, width-64 transformer so the file
# (float16, like the official checkpoints) stays around 7 MB, most of it the 51864 x 64 token embedding.
WHISPER_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 64,
    "n_audio_head": 2,
    "n_audio_layer": 2,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 64,
    "n_text_head": 2,
    "n_text_layer": 2,
}

# What a smoke test should pass to ``model.transcribe`` so random weights decode quickly: greedy at a
# single temperature (the default temperature ladder re-decodes up to 6 times when the garbage output
# fails the compression-ratio / logprob checks: ~4 s instead of ~0.5 s for 1 s of audio), no
# conditioning on earlier windows, fp32 on CPU. A decode is capped at n_text_ctx // 2 = 224 tokens.
SMOKE_TRANSCRIBE_KWARGS = {
    "fp16": False,
    "temperature": 0.0,
    "condition_on_previous_text": False,
}


def whisper_checkpoint_bytes(seed: int = 0) -> bytes:
    """The checkpoint's bytes; the same ``seed`` gives the same bytes."""
    from dataclasses import asdict

    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(**WHISPER_DIMS)
    # Whisper's own init draws from the global RNG (all overwritten below); leave the caller's RNG alone.
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        model = Whisper(dims)
    layer_norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if key == "encoder.positional_embedding":
            # A fixed sinusoid table in the real model; keep it (it is deterministic already).
            value = tensor.detach().clone()
        elif module in layer_norms:
            base = 1.0 if leaf == "weight" else 0.0
            value = base + 0.01 * torch.randn(tensor.shape, generator=generator)
        else:
            # Everything else, including decoder.positional_embedding (torch.empty in the real model).
            value = 0.02 * torch.randn(tensor.shape, generator=generator)
        # Stored as float16 like the official checkpoints (load_state_dict casts to the model's fp32).
        state[key] = value.to(torch.float16).contiguous()
    buffer = io.BytesIO()
    # Saving to a BytesIO names the archive "archive/" whatever the target file is called, so the bytes
    # depend on the seed only (a path would put its stem in every zip entry name).
    torch.save({"dims": asdict(dims), "model_state_dict": state}, buffer)
    return buffer.getvalue()


def make_whisper_checkpoint(path: Path, seed: int = 0) -> str:
    """Write a tiny random English-only Whisper checkpoint to ``path``; return its sha256 (hex)."""
    path = Path(path)
    data = whisper_checkpoint_bytes(seed)
    _write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
