"""A tiny English spaCy NER pipeline (PERSON), packaged as a real pip wheel by spaCy's own packager.

``spacy.blank("en")`` + ``ner`` trained briefly on a dozen sentences, then ``spacy package`` (its template
``setup.py``, ``meta.json``, ``spacy_models`` entry point) and a wheel built with ``python -m build
--wheel --no-isolation`` (the venv's own setuptools; no isolated env, no download from PyPI) under a
fixed ``SOURCE_DATE_EPOCH``, so the wheel is byte-identical across runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .files import copy_atomic, make_world_readable

SPACY_NAME = "en_tiny_ner"
SPACY_VERSION = "0.1.0"
LANG = "en"
# 2020-01-01T00:00:00Z: zip entry timestamps in the wheel (wheel/setuptools honour SOURCE_DATE_EPOCH).
SOURCE_DATE_EPOCH = "1577836800"

# (text, [(person name)...]): character spans are found by search, so the data stays readable.
_TRAIN: list[tuple[str, list[str]]] = [
    ("Alice Smith talked with Bob Jones about the budget.", ["Alice Smith", "Bob Jones"]),
    ("Bob Jones met Carol White at the station yesterday.", ["Bob Jones", "Carol White"]),
    ("Carol White said that David Brown would lead the project.", ["Carol White", "David Brown"]),
    ("Yesterday Emma Green called Alice Smith about the report.", ["Emma Green", "Alice Smith"]),
    ("David Brown and Emma Green wrote the final summary.", ["David Brown", "Emma Green"]),
    ("The manager, Frank Miller, thanked Grace Hall for her work.", ["Frank Miller", "Grace Hall"]),
    ("Grace Hall asked Henry Clark to review the transcript.", ["Grace Hall", "Henry Clark"]),
    ("Henry Clark talked with Alice Smith about the new school.", ["Henry Clark", "Alice Smith"]),
    ("According to Irene Lewis, the meeting went well.", ["Irene Lewis"]),
    ("Jack Turner visited the museum with Bob Jones.", ["Jack Turner", "Bob Jones"]),
    ("The city council approved the plan on Tuesday.", []),
    ("Sales grew by ten percent in the last quarter.", []),
    ("Karen Young interviewed Frank Miller for the newspaper.", ["Karen Young", "Frank Miller"]),
    ("Heavy rain caused flooding in several towns.", []),
]


# spaCy's default NER architecture, shrunk (defaults: width 96, depth 4, embed_size 2000, hidden_width 64)
# so the packed pipeline stays small.
_NER_MODEL = {
    "@architectures": "spacy.TransitionBasedParser.v2",
    "state_type": "ner",
    "extra_state_tokens": False,
    "hidden_width": 32,
    "maxout_pieces": 2,
    "use_upper": True,
    "nO": None,
    "tok2vec": {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": 32,
        "depth": 2,
        "embed_size": 500,
        "window_size": 1,
        "maxout_pieces": 2,
        "subword_features": True,
    },
}


def training_data() -> list[tuple[str, dict]]:
    """``(text, {"entities": [(start, end, "PERSON"), ...]})`` pairs the pipeline is trained on."""
    data = []
    for text, names in _TRAIN:
        spans = []
        for name in names:
            start = text.index(name)
            spans.append((start, start + len(name), "PERSON"))
        data.append((text, {"entities": sorted(spans)}))
    return data


def train_pipeline(seed: int = 0, iterations: int = 30):
    """Train and return the ``nlp`` object (deterministic for a given seed).

    ``fix_random_seed`` reseeds the process-wide random/numpy/torch generators; their states are
    restored afterwards so callers (tests) keep their own randomness.
    """
    import spacy  # noqa: F401  (imports thinc, which imports torch: its RNG is reseeded too)

    with preserved_global_rngs():
        return _train(seed, iterations)


@contextlib.contextmanager
def preserved_global_rngs():
    """Restore the process-wide random/numpy/torch generators afterwards (``fix_random_seed`` reseeds them)."""
    import random

    import numpy

    states = [(random.setstate, random.getstate()), (numpy.random.set_state, numpy.random.get_state())]
    torch = sys.modules.get("torch")
    if torch is not None:
        states.append((torch.set_rng_state, torch.get_rng_state()))
    try:
        yield
    finally:
        for restore, state in states:
            restore(state)


def _train(seed: int, iterations: int):
    import spacy
    from spacy.training import Example

    spacy.util.fix_random_seed(seed)
    nlp = spacy.blank(LANG)
    ner = nlp.add_pipe("ner", config={"model": _NER_MODEL})
    ner.add_label("PERSON")
    examples = [Example.from_dict(nlp.make_doc(text), ann) for text, ann in training_data()]
    optimizer = nlp.initialize(lambda: examples)
    update_in_batches(nlp, examples, optimizer, seed, iterations)
    return nlp


def update_in_batches(nlp, examples: Sequence, optimizer, seed: int, iterations: int) -> None:
    """``iterations`` passes over ``examples`` in batches of 4, shuffled by ``random.Random(seed)``, dropout 0.1."""
    import random

    rng = random.Random(seed)
    order = list(examples)
    for _ in range(iterations):
        rng.shuffle(order)
        for start in range(0, len(order), 4):
            nlp.update(order[start : start + 4], sgd=optimizer, drop=0.1)


def make_spacy_wheel(out_dir: Path, name: str = SPACY_NAME, version: str = SPACY_VERSION, seed: int = 0) -> Path:
    """Train, package and build ``<name>-<version>-py3-none-any.whl`` into ``out_dir``; return its path.

    ``name`` must be ``en_<identifier>`` (spaCy's package name is ``<lang>_<meta name>``).
    """
    if not name.startswith(f"{LANG}_") or not name.isidentifier() or "__" in name:
        raise ValueError(f"spaCy package name {name!r} must look like '{LANG}_tiny_ner'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel_name = f"{name}-{version}-py3-none-any.whl"

    nlp = train_pipeline(seed)
    nlp.meta.update(
        {
            "name": name[len(LANG) + 1 :],
            "version": version,
            "description": "Tiny random-ish English NER pipeline (PERSON) for modelbake tests",
            "author": "modelbake",
            "email": "",
            "url": "",
            "license": "MIT",
        }
    )
    with tempfile.TemporaryDirectory(prefix="modelbake-spacy-") as tmp:
        built = package_wheel(nlp, Path(tmp), name, version)
        target = out_dir / wheel_name
        copy_atomic(built, target)
    return target


def package_wheel(nlp, work: Path, name: str, version: str) -> Path:
    """Package ``nlp`` as ``<name>-<version>`` and build its wheel under ``work``; return the wheel's path.

    ``spacy package`` (its template ``setup.py``, ``meta.json``, entry point) into ``work/pkg``, fixed file
    modes, then ``python -m build --wheel --no-isolation`` under a fixed ``SOURCE_DATE_EPOCH``: the same
    pipeline gives the same bytes. ``nlp.meta`` should already carry the description, author and license.
    """
    from spacy.cli.package import package

    wheel_name = f"{name}-{version}-py3-none-any.whl"
    model_dir, pkg_root, dist = work / "model", work / "pkg", work / "dist"
    pkg_root.mkdir(parents=True)
    nlp.to_disk(model_dir)
    # spaCy's packager (what `spacy package DIR OUT --build none` runs): package dir with setup.py.
    package(
        model_dir,
        pkg_root,
        name=name[len(LANG) + 1 :],
        version=version,
        create_sdist=False,
        create_wheel=False,
        silent=True,
    )
    main_path = pkg_root / f"{name}-{version}"
    make_world_readable(main_path)  # the wheel records the modes
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PYTHONHASHSEED="0")
    # The packaging needs nothing of this repository, whose root (testkit's home, so often on PYTHONPATH) holds
    # build.py: that would shadow the `build` package that `python -m build` means.
    env.pop("PYTHONPATH", None)
    # What `spacy package --build wheel` runs, minus build isolation (which would create a venv and
    # download setuptools from PyPI on every call).
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), "."],
        cwd=main_path,
        env=env,
        capture_output=True,
        text=True,
        umask=0o022,  # the wheel records RECORD's mode as created
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"building the spaCy wheel {wheel_name} failed (exit {result.returncode}); needs the "
            f"'build' and 'setuptools' packages:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    built = dist / (re.sub("_+", "_", f"{name}-{version}") + "-py3-none-any.whl")
    if not built.is_file():
        raise RuntimeError(f"spaCy wheel not found after build: {sorted(os.listdir(dist))}")
    return built
