"""A byte-level BPE tokenizer with BART's/LED's real vocabulary size (50265), trained locally and offline.

Why: the real repos ship GPT-2 style ``vocab.json`` + ``merges.txt`` (+ ``tokenizer.json``) of about 50k
tokens; a tiny vocabulary would make those files (and the embedding matrices that depend on the vocabulary
size) unrealistically small. The Hub is unreachable, so the tokenizer is trained on a synthetic, seeded corpus
(the tiny models' English lines plus pseudo-English words in Zipf-like frequencies): same seed, same files.
BART's layout is kept: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, 256 byte tokens, 50004 merges, and
``<mask>`` last (50264; bart-large-cnn's and distilbart's embeddings have 50264 rows, like the real ones).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

VOCAB_SIZE = 50265  # len(tokenizer) of facebook/bart-* and allenai/led-*
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
MASK_TOKEN = "<mask>"

_ONSETS = "b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p ph pl pr qu r s sc sh sk sl sm sn sp st str sw t th tr tw v w wh wr y z".split()
_VOWELS = "a e i o u y ai au ea ee ei ie oa oo ou ue".split()
_CODAS = "b ck d ff g ght l ll lt m mp n nd ng nk nt p r rd rn rs rt s sh ss st t th x z".split()
_SUFFIXES = ["", "", "", "", *"s ed ing er ly tion ness ment able ful less ism ist 's".split()]
_N_WORDS = 60_000  # distinct pseudo-words: enough pair material for 50k merges (training stops early otherwise)


@dataclass(frozen=True)
class TokenizerFiles:
    """The tokenizer's files as bytes, keyed by file name (written into every HF snapshot)."""

    files: dict[str, bytes]
    vocab_size: int
    merges: int


def _pseudo_words(rng: random.Random, n: int) -> list[str]:
    onsets, codas = [*_ONSETS, *[""] * 6], [*_CODAS, *[""] * 8]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        syllables = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
        word = "".join(rng.choice(onsets) + rng.choice(_VOWELS) + rng.choice(codas) for _ in range(syllables))
        word += rng.choice(_SUFFIXES)
        if rng.random() < 0.15:
            word = word.capitalize()
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def corpus(seed: int = 0) -> Iterator[str]:
    """The training corpus, lazily: real English lines (weighted up), pseudo-words, numbers."""
    from testkit.tinymodels.hf_seq2seq import corpus_lines

    rng = random.Random(seed)
    for line in corpus_lines():
        yield (line + " ") * 50
    for rank, word in enumerate(_pseudo_words(rng, _N_WORDS), start=1):
        yield (" " + word) * max(2, 20_000 // rank)
    for _ in range(2000):
        yield " " + " ".join(str(rng.randrange(10 ** rng.randint(1, 5))) for _ in range(20))


def build_tokenizer_files(seed: int = 0, *, model_max_length: int = 1024, tokenizer_class: str = "BartTokenizer"):
    """Train the BPE and return :class:`TokenizerFiles` (vocab.json, merges.txt, tokenizer.json, tokenizer_config.json).

    Deterministic: tokenizers' BPE trainer counts pairs exactly and breaks ties by the pair itself.
    """
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        corpus(seed), vocab_size=VOCAB_SIZE - 1, min_frequency=2, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab[MASK_TOKEN] = len(vocab)
    return tokenizer_files(vocab, merges, model_max_length=model_max_length, tokenizer_class=tokenizer_class)


def tokenizer_files(
    vocab: dict[str, int], merges: list[tuple[str, ...]], *, model_max_length: int, tokenizer_class: str
) -> TokenizerFiles:
    """Serialise a trained vocabulary the way the real repos carry it (GPT-2 files + the fast tokenizer's)."""
    import tempfile
    from pathlib import Path

    from transformers import RobertaTokenizer

    tokenizer = RobertaTokenizer(vocab=vocab, merges=merges, add_prefix_space=False)
    tokenizer.model_max_length = model_max_length
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="realsize-tok-") as tmp:
        tokenizer.save_pretrained(tmp)
        for path in sorted(Path(tmp).iterdir()):
            if path.is_file() and path.name in ("tokenizer.json", "tokenizer_config.json"):
                files[path.name] = path.read_bytes()
    config = json.loads(files["tokenizer_config.json"])
    config["tokenizer_class"] = tokenizer_class
    files["tokenizer_config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    # Compact, merges as "a b" strings, like the real repos' tokenizer.json (older tokenizers wrote it so, and
    # every version reads it): transformers 5's indented form with merge pairs is 2.6x the size.
    fast = json.loads(files["tokenizer.json"])
    fast["model"]["merges"] = [" ".join(m) for m in fast["model"]["merges"]]
    files["tokenizer.json"] = json.dumps(fast, ensure_ascii=False, separators=(",", ":")).encode()
    # RoBERTa/BART's vocab.json: one JSON object, UTF-8 (GPT-2's ASCII-escaped encoder.json is 16% larger);
    # merges.txt with GPT-2's header line.
    files["vocab.json"] = json.dumps(vocab, ensure_ascii=False).encode()
    files["merges.txt"] = ("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges)).encode()
    return TokenizerFiles(files=files, vocab_size=len(vocab), merges=len(merges))


def with_tokenizer_config(base: TokenizerFiles, *, model_max_length: int, tokenizer_class: str) -> TokenizerFiles:
    """The same vocabulary with another ``tokenizer_config.json`` (LED: 16384 tokens), without retraining."""
    config = json.loads(base.files["tokenizer_config.json"])
    config["model_max_length"] = model_max_length
    config["tokenizer_class"] = tokenizer_class
    files = dict(base.files)
    files["tokenizer_config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    return TokenizerFiles(files=files, vocab_size=base.vocab_size, merges=base.merges)
