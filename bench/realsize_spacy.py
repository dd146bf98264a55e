"""An ``en_core_web_sm``-shaped spaCy pipeline with random-ish weights, packed as a wheel of the real one's size.

Why: benchmarks of preload and image layers must move the real wheel's bytes (~12.8 MB) and load a pipeline of
the real one's structure. The components and model widths follow en_core_web_sm 3.8's config (a shared
``tok2vec`` of width 96 / depth 4 feeding ``tagger`` and ``parser``, an ``ner`` with its own tok2vec, an
``attribute_ruler`` and a rule ``lemmatizer``), the labels are the real tag / dependency / OntoNotes sets; the
pipeline is trained briefly on the tiny models' dozen PERSON sentences with heuristic tags and a flat tree (so
the parser's sentence boundaries do not hide every entity). The
real wheel also carries large lemmatizer tables and vocabulary strings that cannot be reproduced offline, so the
remaining bytes are made up with a static vectors table (random, seeded; no component reads it), sized so the
wheel lands within 1% of the real one. Packaging is spaCy's own (``spacy package``) plus ``python -m build``
under a fixed ``SOURCE_DATE_EPOCH`` (the tiny pipeline's :func:`testkit.tinymodels.spacy_pipeline.package_wheel`):
byte-identical.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from testkit.tinymodels.files import copy_atomic
from testkit.tinymodels.spacy_pipeline import package_wheel

NAME = "en_core_web_sm"
VERSION = "3.8.0"
REAL_WHEEL_BYTES = 12_800_000  # en_core_web_sm-3.8.0-py3-none-any.whl: "12.8 MB" (exact bytes unverifiable offline)
VECTOR_WIDTH = 96
WIDTH = 96  # en_core_web_sm: tok2vec width 96, depth 4, MaxoutWindowEncoder window 1, 3 pieces

TAGS = (
    "$ '' , -LRB- -RRB- . : ADD AFX CC CD DT EX FW HYPH IN JJ JJR JJS LS MD NFP NN NNP NNPS NNS PDT POS PRP PRP$ "
    "RB RBR RBS RP SYM TO UH VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB XX _SP ``"
).split()
DEPS = (
    "ROOT acl acomp advcl advmod agent amod appos attr aux auxpass case cc ccomp compound conj csubj csubjpass "
    "dative dep det dobj expl intj mark meta neg nmod npadvmod nsubj nsubjpass nummod oprd parataxis pcomp pobj "
    "poss preconj predet prep prt punct quantmod relcl xcomp"
).split()
ENTS = (
    "CARDINAL DATE EVENT FAC GPE LANGUAGE LAW LOC MONEY NORP ORDINAL ORG PERCENT PERSON PRODUCT QUANTITY TIME "
    "WORK_OF_ART"
).split()
# The attribute_ruler's job in en_core_web_sm: fine-grained tag -> coarse POS.
TAG_POS = {
    "$": "SYM", "''": "PUNCT", ",": "PUNCT", "-LRB-": "PUNCT", "-RRB-": "PUNCT", ".": "PUNCT", ":": "PUNCT",
    "ADD": "X", "AFX": "ADJ", "CC": "CCONJ", "CD": "NUM", "DT": "DET", "EX": "PRON", "FW": "X", "HYPH": "PUNCT",
    "IN": "ADP", "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "LS": "X", "MD": "AUX", "NFP": "PUNCT", "NN": "NOUN",
    "NNP": "PROPN", "NNPS": "PROPN", "NNS": "NOUN", "PDT": "DET", "POS": "PART", "PRP": "PRON", "PRP$": "PRON",
    "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "RP": "ADP", "SYM": "SYM", "TO": "PART", "UH": "INTJ", "VB": "VERB",
    "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB", "WDT": "PRON", "WP": "PRON",
    "WP$": "PRON", "WRB": "ADV", "XX": "X", "_SP": "SPACE", "``": "PUNCT",
}  # fmt: skip
LEMMA_RULES = {
    "noun": [["s", ""], ["ses", "s"], ["ves", "f"], ["xes", "x"], ["zes", "z"], ["ches", "ch"], ["shes", "sh"],
             ["men", "man"], ["ies", "y"]],
    "verb": [["s", ""], ["ies", "y"], ["es", "e"], ["es", ""], ["ed", ""], ["ed", "e"], ["ing", ""], ["ing", "e"]],
    "adj": [["er", ""], ["est", ""], ["er", "e"], ["est", "e"]],
    "punct": [["“", "\""], ["”", "\""], ["‘", "'"], ["’", "'"]],
}  # fmt: skip


def _embed(attrs: list[str], rows: list[int]) -> dict:
    return {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": WIDTH,
        "attrs": attrs,
        "rows": rows,
        "include_static_vectors": False,
    }


_ENCODE = {
    "@architectures": "spacy.MaxoutWindowEncoder.v2",
    "width": WIDTH,
    "depth": 4,
    "window_size": 1,
    "maxout_pieces": 3,
}
_LISTENER = {"@architectures": "spacy.Tok2VecListener.v1", "width": WIDTH, "upstream": "tok2vec"}


def _parser_model(state_type: str, tok2vec: dict) -> dict:
    return {
        "@architectures": "spacy.TransitionBasedParser.v2",
        "state_type": state_type,
        "extra_state_tokens": False,
        "hidden_width": 64,
        "maxout_pieces": 2,
        "use_upper": True,
        "nO": None,
        "tok2vec": tok2vec,
    }


_PREPOSITIONS = frozenset("with about at for on in to of by from after according".split())


def _syntax(doc) -> dict:
    """Heuristic tags and a flat projective tree (every token attached to the first verb) for training.

    Why: an untrained parser marks every token as a sentence of its own, and the NER then finds nothing.
    """
    tags = []
    for i, token in enumerate(doc):
        text = token.text
        if text in (".", ","):
            tag = text
        elif text.lower() in ("the", "a", "an"):
            tag = "DT"
        elif text.lower() in _PREPOSITIONS:
            tag = "IN"
        elif text.lower() in ("and", "or", "but"):
            tag = "CC"
        elif text[:1].isupper() and i > 0:
            tag = "NNP"
        elif text.endswith("ed") or text in ("met", "said", "wrote", "asked", "went"):
            tag = "VBD"
        else:
            tag = "NN"
        tags.append(tag)
    root = tags.index("VBD") if "VBD" in tags else 0
    deps = {".": "punct", ",": "punct", "DT": "det", "IN": "prep", "CC": "cc", "NNP": "compound"}
    return {
        "tags": tags,
        "heads": [root] * len(tags),
        "deps": ["ROOT" if i == root else deps.get(tag, "dep") for i, tag in enumerate(tags)],
    }


def build_pipeline(seed: int = 0, iterations: int = 30):
    """The ``nlp`` object: en_core_web_sm's components, widths and labels; trained briefly (deterministic)."""
    import spacy
    from spacy.lookups import Lookups
    from spacy.training import Example

    from testkit.tinymodels.spacy_pipeline import preserved_global_rngs, training_data, update_in_batches

    with preserved_global_rngs():
        spacy.util.fix_random_seed(seed)
        nlp = spacy.blank("en")
        nlp.add_pipe(
            "tok2vec",
            config={
                "model": {
                    "@architectures": "spacy.Tok2Vec.v2",
                    "embed": _embed(
                        ["NORM", "PREFIX", "SUFFIX", "SHAPE", "SPACY", "IS_SPACE"], [5000, 1000, 2500, 2500, 50, 50]
                    ),
                    "encode": _ENCODE,
                }
            },
        )
        tagger = nlp.add_pipe(
            "tagger",
            config={
                "model": {"@architectures": "spacy.Tagger.v2", "nO": None, "normalize": False, "tok2vec": _LISTENER}
            },
        )
        parser = nlp.add_pipe("parser", config={"model": _parser_model("parser", _LISTENER)})
        ruler = nlp.add_pipe("attribute_ruler")
        nlp.add_pipe("lemmatizer", config={"mode": "rule"})
        ner_tok2vec = {
            "@architectures": "spacy.Tok2Vec.v2",
            "embed": _embed(["NORM", "PREFIX", "SUFFIX", "SHAPE"], [5000, 1000, 2500, 2500]),
            "encode": _ENCODE,
        }
        ner = nlp.add_pipe("ner", config={"model": _parser_model("ner", ner_tok2vec)})
        for label in TAGS:
            tagger.add_label(label)
        for label in DEPS:
            parser.add_label(label)
        for label in ENTS:
            ner.add_label(label)

        examples = [
            Example.from_dict(nlp.make_doc(text), {**ann, **_syntax(nlp.make_doc(text))})
            for text, ann in training_data()
        ]
        with nlp.select_pipes(disable=["lemmatizer"]):
            optimizer = nlp.initialize(lambda: examples)
        for tag, pos in TAG_POS.items():  # after initialize, which clears the ruler
            ruler.add(patterns=[[{"TAG": tag}]], attrs={"POS": pos})
        lookups = Lookups()
        lookups.add_table("lemma_rules", LEMMA_RULES)
        lookups.add_table("lemma_exc", {"noun": {"people": ["person"]}, "verb": {"was": ["be"], "were": ["be"]}})
        lookups.add_table("lemma_index", {"noun": [], "verb": [], "adj": [], "adv": []})
        nlp.get_pipe("lemmatizer").initialize(lookups=lookups)

        with nlp.select_pipes(disable=["attribute_ruler", "lemmatizer"]):
            update_in_batches(nlp, examples, optimizer, seed, iterations)
    nlp.meta.update(
        {
            "name": NAME[len("en_") :],
            "version": VERSION,
            "description": "Random weights in en_core_web_sm's shape and wheel size (modelbake bench/realsize.py)",
            "author": "modelbake",
            "email": "",
            "url": "",
            "license": "MIT",
        }
    )
    return nlp


def add_padding_vectors(nlp, rows: int, seed: int = 0) -> None:
    """A static vectors table of ``rows`` x 96 float32 (random, seeded); no component reads it (size only)."""
    import numpy

    from testkit.tinymodels.hf_seq2seq import corpus_lines

    nlp.vocab.reset_vectors(width=VECTOR_WIDTH)  # replaces the table of an earlier call
    if rows <= 0:
        return
    words = sorted({w.strip(".,").lower() for line in corpus_lines() for w in line.split()} - {""})
    keys = [*words, *(f"pad{i:06d}" for i in range(max(0, rows - len(words))))][:rows]
    data = numpy.random.default_rng(seed).standard_normal((rows, VECTOR_WIDTH), dtype=numpy.float32)
    for row, key in enumerate(keys):
        nlp.vocab.set_vector(key, data[row])


def make_wheel(out_dir: Path, *, target_bytes: int = REAL_WHEEL_BYTES, seed: int = 0) -> tuple[Path, int]:
    """Build ``en_core_web_sm-3.8.0-py3-none-any.whl`` in ``out_dir`` of about ``target_bytes``; return (path, rows).

    Packs once without padding, then sizes the vectors table from the measured shortfall (random float32
    deflates to ~92%), repacking up to three times until within 0.5%. Deterministic: same inputs, same rows.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = 0
    nlp = build_pipeline(seed)
    with tempfile.TemporaryDirectory(prefix="realsize-spacy-") as tmp:
        built = package_wheel(nlp, Path(tmp) / "0", NAME, VERSION)
        size = built.stat().st_size
        for attempt in range(1, 4):
            if abs(size - target_bytes) <= target_bytes * 0.005 or size > target_bytes and rows == 0:
                break
            row_bytes = VECTOR_WIDTH * 4 * 0.93 + 12  # deflated float32 row + its key/string
            rows = max(0, rows + round((target_bytes - size) / row_bytes))
            add_padding_vectors(nlp, rows, seed)
            built = package_wheel(nlp, Path(tmp) / str(attempt), NAME, VERSION)
            size = built.stat().st_size
        target = out_dir / built.name
        copy_atomic(built, target)
    return target, rows
