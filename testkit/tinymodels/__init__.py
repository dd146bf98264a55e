"""Tiny REAL models (random weights, the libraries' real file layouts) for tests and the offline demo.

Importing this package is cheap: torch, transformers, spaCy and whisper are imported inside the
generating functions only.

- :func:`make_whisper_checkpoint` -- English-only Whisper ``.pt`` (2 layers, width 64, ~7 MB)
- :func:`make_seq2seq_model` -- tiny BART / LED summariser + byte-level BPE tokenizer (``save_pretrained``)
- :func:`make_spacy_wheel` -- ``en_tiny_ner`` PERSON NER pipeline as a pip wheel (``spacy package``)
- :func:`build_mirror_tree` -- all of them as a mirror directory with ``models.toml``
- :func:`add_spacy_pipeline`, :func:`with_spacy_pipeline` -- a second pipeline, and a manifest naming it
"""

from .hf_seq2seq import SEQ2SEQ_ARCHS, make_seq2seq_model
from .mirrorset import (
    BART_REPO,
    LED_REPO,
    MODEL_KEYS,
    PROFILE,
    TinySet,
    add_spacy_pipeline,
    add_whisper_variant,
    build_mirror_tree,
    hub_repo_dir,
    main,
    manifest_text,
    publish_revision,
    snapshot_commit,
    with_spacy_pipeline,
)
from .spacy_pipeline import SPACY_NAME, SPACY_VERSION, make_spacy_wheel
from .whisper_ckpt import (
    SMOKE_TRANSCRIBE_KWARGS,
    WHISPER_DIMS,
    WHISPER_FILENAME,
    WHISPER_NAME,
    make_whisper_checkpoint,
    whisper_checkpoint_bytes,
)

__all__ = [
    "BART_REPO",
    "LED_REPO",
    "MODEL_KEYS",
    "PROFILE",
    "SEQ2SEQ_ARCHS",
    "SMOKE_TRANSCRIBE_KWARGS",
    "SPACY_NAME",
    "SPACY_VERSION",
    "WHISPER_DIMS",
    "WHISPER_FILENAME",
    "WHISPER_NAME",
    "TinySet",
    "add_spacy_pipeline",
    "add_whisper_variant",
    "build_mirror_tree",
    "hub_repo_dir",
    "main",
    "make_seq2seq_model",
    "make_spacy_wheel",
    "make_whisper_checkpoint",
    "manifest_text",
    "publish_revision",
    "snapshot_commit",
    "whisper_checkpoint_bytes",
    "with_spacy_pipeline",
]
