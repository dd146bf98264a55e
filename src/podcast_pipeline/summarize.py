"""Map-reduce summarization with two seq2seq models, through `generate` (transformers 5 has no pipeline for it).

1. chunk: the transcript is cut into pieces that fit the MAP model's input limit, measured with its own
   tokenizer (cut preferably after a sentence end; optional token overlap);
2. map: each chunk is summarized by the `role = "map"` model;
3. reduce: the joined partial summaries are summarized by the `role = "reduce"` model. When they exceed its
   limit, they are chunked with the reduce model's tokenizer and reduced in rounds until they fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SENTENCE_END = ".!?"
UNBOUNDED = 1_000_000  # tokenizers without a real limit report model_max_length as a huge sentinel
MAX_REDUCE_ROUNDS = 8
DEFAULT_MAX_NEW_TOKENS = 128  # when neither the caller nor the model's generation_config bounds the output


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the chunked text
    end: int
    tokens: int  # input length the model sees, special tokens included


@dataclass
class SummaryResult:
    summary: str
    chunks: list[Chunk] = field(default_factory=list)
    map_calls: int = 0
    reduce_calls: int = 0
    reduce_rounds: int = 0
    truncated: bool = False  # a reduce round did not shrink its input and was cut to the limit

    def stats(self, mapper: Seq2Seq | None = None, reducer: Seq2Seq | None = None) -> dict:
        out = {
            "summary_chunks": len(self.chunks),
            "chunk_tokens": [c.tokens for c in self.chunks],
            "map_calls": self.map_calls,
            "reduce_calls": self.reduce_calls,
            "reduce_rounds": self.reduce_rounds,
            "truncated": self.truncated,
        }
        if mapper is not None:
            out["map_max_input_tokens"] = mapper.max_input_tokens
        if reducer is not None:
            out["reduce_max_input_tokens"] = reducer.max_input_tokens
        return out


def max_input_tokens(tokenizer, model_config=None) -> int:
    """The longest input the model takes: the tokenizer's model_max_length, capped by the position table."""
    limits = []
    length = getattr(tokenizer, "model_max_length", None)
    if isinstance(length, int) and 0 < length < UNBOUNDED:
        limits.append(length)
    for name in ("max_encoder_position_embeddings", "max_position_embeddings"):
        value = getattr(model_config, name, None) if model_config is not None else None
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    if not limits:
        raise ValueError("cannot tell the model's maximum input length (no model_max_length or position limit)")
    return min(limits)


def count_tokens(tokenizer, text: str) -> int:
    """Tokens the model sees for `text`, special tokens included."""
    return len(tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])


def chunk_text(text: str, tokenizer, max_tokens: int, overlap: int = 0, margin: int | None = None) -> list[Chunk]:
    """Cut `text` into pieces of at most `max_tokens` tokens each (special tokens included), in order.

    Token windows of `max_tokens - specials - margin` tokens, each ended at the last sentence end in its
    second half when there is one. The margin absorbs tokenization differences at the cut (a byte-level
    BPE token can change when its leading space is cut off); every chunk is re-counted and shrunk if still
    too long, so the bound holds whatever the tokenizer. `overlap` repeats that many tokens of a chunk's
    end at the start of the next.
    """
    specials = tokenizer.num_special_tokens_to_add()
    budget = max_tokens - specials
    if budget < 8:
        raise ValueError(f"max_tokens {max_tokens} leaves no room for text")
    if margin is None:
        margin = max(2, budget // 32)
    window = max(4, budget - margin)
    if not 0 <= overlap < window // 2:
        raise ValueError(f"overlap must be between 0 and {window // 2 - 1} tokens, got {overlap}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    n = len(offsets)
    chunks: list[Chunk] = []
    i = 0
    while i < n:
        j = min(i + window, n)
        if j < n:
            for k in range(j, i + window // 2, -1):  # prefer ending after a sentence
                end_char = offsets[k - 1][1]
                if end_char > 0 and text[end_char - 1] in SENTENCE_END:
                    j = k
                    break
        while True:
            # byte-level tokens can split one character: never cut between tokens that share a character
            while i + 1 < j < n and offsets[j][0] < offsets[j - 1][1]:
                j -= 1
            start, end = offsets[i][0], max(offsets[j - 1][1], offsets[i][0])
            piece = text[start:end]
            tokens = count_tokens(tokenizer, piece)
            if tokens <= max_tokens or j - i <= 1:
                break
            j = max(i + 1, j - max(1, tokens - max_tokens))
        if piece.strip():
            chunks.append(Chunk(text=piece, start=start, end=end, tokens=tokens))
        i = j if j >= n else max(i + 1, j - overlap)
    return chunks


class Seq2Seq:
    """A tokenizer + seq2seq model pair, loaded offline from a hub cache at a pinned commit."""

    def __init__(self, tokenizer, model, name: str = "", max_new_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.model = model
        self.name = name
        config = getattr(model, "generation_config", None)
        if (
            max_new_tokens is None
            and getattr(config, "max_length", None) is None
            and getattr(config, "max_new_tokens", None) is None
        ):
            max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens(tokenizer, model.config)

    @classmethod
    def load(cls, repo: str, revision: str, cache_dir: Path, max_new_tokens: int | None = None) -> Seq2Seq:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision, cache_dir=str(cache_dir))
        model = AutoModelForSeq2SeqLM.from_pretrained(repo, revision=revision, cache_dir=str(cache_dir))
        model.eval()
        return cls(tokenizer, model, name=repo, max_new_tokens=max_new_tokens)

    def count(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def chunk(self, text: str, overlap: int = 0) -> list[Chunk]:
        return chunk_text(text, self.tokenizer, self.max_input_tokens, overlap=overlap)

    def generate(self, text: str) -> str:
        import torch

        inputs = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=self.max_input_tokens)
        kwargs = {"do_sample": False}
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if getattr(self.model.config, "model_type", "") == "led":  # LED wants global attention on <s>
            global_mask = torch.zeros_like(inputs["input_ids"])
            global_mask[:, 0] = 1
            kwargs["global_attention_mask"] = global_mask
        with torch.no_grad():
            output = self.model.generate(**inputs, **kwargs)
        return self.tokenizer.decode(output[0], skip_special_tokens=True).strip()


def summarize(text: str, mapper: Seq2Seq, reducer: Seq2Seq, overlap: int = 0) -> SummaryResult:
    """Map every chunk of `text` with `mapper`, then reduce the partials with `reducer` (at least once)."""
    result = SummaryResult(summary="")
    result.chunks = mapper.chunk(text, overlap=overlap)
    if not result.chunks:
        return result
    partials = []
    for chunk in result.chunks:
        partials.append(mapper.generate(chunk.text))
        result.map_calls += 1
    result.summary = reduce(partials, reducer, result)
    return result


def reduce(partials: list[str], reducer: Seq2Seq, result: SummaryResult) -> str:
    """One reduce call when the joined partials fit; otherwise hierarchical rounds until they do."""
    joined = "\n".join(p for p in partials if p)
    for _ in range(MAX_REDUCE_ROUNDS):
        result.reduce_rounds += 1
        size = reducer.count(joined)
        if size <= reducer.max_input_tokens:
            result.reduce_calls += 1
            return reducer.generate(joined)
        outputs = []
        for chunk in reducer.chunk(joined):
            outputs.append(reducer.generate(chunk.text))
            result.reduce_calls += 1
        merged = "\n".join(o for o in outputs if o)
        if reducer.count(merged) >= size:  # not converging (the model echoes its input): cut and finish
            break
        joined = merged
    result.truncated = True
    result.reduce_calls += 1
    return reducer.generate(joined)  # generate() truncates the input to the model's limit
