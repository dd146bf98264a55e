"""Tiny BART / LED summarisation models with random weights and a locally trained byte-level BPE.

``save_pretrained`` output (config.json, generation_config.json, model.safetensors, tokenizer files) that
``AutoTokenizer`` + ``AutoModelForSeq2SeqLM`` load and ``generate`` runs on. No network is used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

Seq2SeqArch = Literal["bart", "led"]
SEQ2SEQ_ARCHS: tuple[str, ...] = ("bart", "led")

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, BART's order
BOS_ID, PAD_ID, EOS_ID = 0, 1, 2
VOCAB_SIZE = 768
# Longest input each model takes (the tokenizer's model_max_length): LED is the long-input "reduce" model.
MAX_INPUT_TOKENS = {"bart": 256, "led": 1024}

_CORPUS = """\
The city council met on Tuesday to discuss the new budget for schools and roads.
After a long debate, the members agreed to raise spending on public transport.
Alice Smith talked with Bob Jones about the results of the quarterly report.
The report shows that sales grew by ten percent while costs stayed the same.
Scientists announced that the telescope had found a planet orbiting a nearby star.
The planet is slightly larger than the Earth and may have water on its surface.
In the morning the weather was cold and windy, but the afternoon was bright and warm.
Farmers in the valley expect a good harvest of wheat, apples and potatoes this year.
The football team won the final match after a dramatic penalty shootout.
Thousands of fans celebrated in the streets until late in the evening.
A new library opened downtown with a large collection of books, maps and old newspapers.
Children can borrow up to five books at a time and join reading groups every Saturday.
The company said it will hire two hundred engineers to build its next generation of software.
Investors welcomed the news, and the share price rose sharply during the day.
Doctors recommend regular exercise, a balanced diet and enough sleep for a healthy life.
The museum will display paintings and sculptures from artists across the country.
Heavy rain caused flooding in several towns, and the river reached its highest level in years.
Emergency services helped residents leave their homes and move to safer places.
The minister promised that the government would support families affected by the storm.
Students presented their projects on renewable energy, recycling and clean water.
The train to the coast was delayed by an hour because of a signal failure.
Passengers waited on the platform and drank coffee while they read the news.
In summary, the meeting produced a clear plan, a firm timetable and a shared budget.
This summary describes the main points of the discussion and the decisions that were made.
The interview covered the history of the project, the people involved and the next steps.
Please speak clearly, listen carefully and write down the important numbers and names.
Our team will review the transcript, highlight the key facts and send a short summary.
The conference brought together researchers, teachers and students from many countries.
Speakers shared ideas about language, music, mathematics and the future of computing.
Everyone agreed that the event was a success and that it should happen again next year.
"""


def corpus_lines() -> list[str]:
    """The small built-in English corpus the tokenizer is trained on (also handy as test input)."""
    return [line for line in _CORPUS.splitlines() if line.strip()]


def _train_tokenizer(model_max_length: int):
    """A RoBERTa/BART-style byte-level BPE tokenizer (transformers' tokenizers backend)."""
    import json

    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    # Pair counts are integers and ties between merges are broken by the pair itself: deterministic.
    bpe.train_from_iterator(
        corpus_lines() * 2,
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False)
    tokenizer.model_max_length = model_max_length
    return tokenizer


def _config(arch: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=EOS_ID,
        tie_word_embeddings=True,
    )
    if arch == "bart":
        from transformers import BartConfig

        return BartConfig(max_position_embeddings=MAX_INPUT_TOKENS["bart"], forced_eos_token_id=EOS_ID, **common)
    if arch == "led":
        from transformers import LEDConfig

        # LED pads encoder input to a multiple of attention_window (which must be even).
        return LEDConfig(
            max_encoder_position_embeddings=MAX_INPUT_TOKENS["led"],
            max_decoder_position_embeddings=128,
            attention_window=[16],
            **common,
        )
    raise ValueError(f"unknown seq2seq arch {arch!r}; expected one of {SEQ2SEQ_ARCHS}")


def _generation_config():
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=BOS_ID,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=EOS_ID,
        forced_bos_token_id=BOS_ID,
        forced_eos_token_id=EOS_ID,
        num_beams=1,
        do_sample=False,
    )


def _init_weights(model, seed: int) -> None:
    """Fill every parameter from ``seed`` explicitly (not via the library's init, which may change)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    norms = {name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    with torch.no_grad():
        # named_parameters() yields tied weights (shared embeddings / lm_head) once.
        for name, param in model.named_parameters():
            module, _, leaf = name.rpartition(".")
            if module in norms:
                value = torch.full(param.shape, 1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                value = torch.zeros(param.shape)
            else:
                value = 0.05 * torch.randn(param.shape, generator=generator)
            param.copy_(value.to(param.dtype))
        for name, buf in model.named_buffers():
            if name.endswith("final_logits_bias"):
                buf.zero_()


def make_seq2seq_model(out_dir: Path, arch: Seq2SeqArch, seed: int = 0) -> list[Path]:
    """Write a tiny ``arch`` ("bart" or "led") summarisation model to ``out_dir``; return its files, sorted.

    Same ``arch``/``seed`` -> byte-identical files.
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    out_dir = Path(out_dir)
    if arch not in SEQ2SEQ_ARCHS:
        raise ValueError(f"unknown seq2seq arch {arch!r}; expected one of {SEQ2SEQ_ARCHS}")
    tokenizer = _train_tokenizer(model_max_length=MAX_INPUT_TOKENS[arch])
    config = _config(arch, vocab_size=len(tokenizer))
    # The library's own init draws from the global RNG (overwritten below); keep the caller's RNG as it was.
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        model = AutoModelForSeq2SeqLM.from_config(config)
    _init_weights(model, seed)
    model.generation_config = _generation_config()
    model.eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_progress():
        model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    for path in files:
        # safetensors writes model.safetensors 0600; images run models as a non-root user.
        os.chmod(path, 0o644)
    return files


@contextlib.contextmanager
def _quiet_progress():
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
