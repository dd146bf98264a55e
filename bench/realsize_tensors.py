"""Tensors of the real-size models: their names and shapes (sizes computed without allocating anything, which
the unit tests check against the real sizes), the weights (seeded per tensor, so the bytes do not depend on
the order of work) and the streamed writers of Whisper checkpoints and safetensors files.

Weights: LayerNorms 1/0, biases 0, the rest N(0, 0.02); ``final_logits_bias`` suppresses ``</s>`` so
``generate()`` runs to its token budget instead of stopping at once (see :data:`EOS_LOGIT_BIAS`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.realsize_models import HFModel, WhisperModel

INIT_STD = 0.02
# final_logits_bias of </s>: with random weights and tied embeddings the residual stream makes the decoder
# predict its own input token, and the decoder starts from </s>, so generate() would stop at once. Suppressed,
# generate() runs to its token budget (max_new_tokens / max_length), like the real models' long summaries.
EOS_LOGIT_BIAS = -100.0

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
