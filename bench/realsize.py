"""Random-weight models at the REAL models' shapes and file sizes, as a mirror tree with the real names.

Why: benchmarks (preload, image layers, cold starts) must move and load the real bytes, and the hubs are
unreachable here. Every file is a real, loadable model: ``modelbake verify`` loads each with Whisper's loader,
``spacy.load`` and ``AutoModelForSeq2SeqLM`` and runs it. Layout as :func:`testkit.tinymodels.build_mirror_tree`
(``MirrorServer(root)`` serves it)::

    ROOT/whisper/{tiny.en,base.en}.pt                              fp16, the real ModelDimensions
    ROOT/spacy/en_core_web_sm-3.8.0-py3-none-any.whl                en_core_web_sm's components, ~12.8 MB
    ROOT/huggingface/models--<org>--<name>/{refs/main,snapshots/<commit>/*}
        facebook/bart-base, facebook/bart-large-cnn, sshleifer/distilbart-cnn-12-6, allenai/led-base-16384:
        the real config.json, generation_config.json, a 50265-token byte-level BPE (vocab.json, merges.txt,
        tokenizer.json, tokenizer_config.json) and model.safetensors (float32; also for distilbart and LED,
        whose real repos are pinned to pytorch_model.bin in the project's models.toml)
    ROOT/models.toml        the project's model ids, names, repos and profiles; generated sha256 pins
    ROOT/.parts/<id>.json   one per finished model (resume after an interruption)
    ROOT/.complete          written last: generator + library versions and what was written

Weights are filled tensor by tensor from a generator seeded by (seed, model, tensor name) and streamed to
disk, so a 1.6 GB model never sits in memory and the bytes do not depend on the order of work. LayerNorms are
1/0, biases 0, the rest N(0, 0.02); ``final_logits_bias`` suppresses ``</s>`` so ``generate()`` runs to its
token budget instead of stopping at once (see :data:`bench.realsize_tensors.EOS_LOGIT_BIAS`). The models'
shapes and sizes are `bench/realsize_models.py`'s, their tensors and file writers `bench/realsize_tensors.py`'s,
what a finished tree holds and how it is recognised `bench/realsize_set.py`'s; here, the generation. Run from
the repository root.

    python -m bench.realsize [--root DIR] [--force] [--big]

``--big`` adds the `big` profile: a sharded model and one model.safetensors over 2 GB (bench/realsize_big.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.realsize_models import HF_MODELS, PROFILES, ROLES, SPACY_KEY, WHISPER_MODELS, HFModel, WhisperModel
from bench.realsize_set import (
    COMPLETE_MARKER,
    MANIFEST_NAME,
    PARTS_DIR,
    RealSizeSet,
    describe,
    read_complete,
    read_part,
)
from bench.realsize_tensors import _hf_fill, _whisper_bytes, hf_tensors, write_safetensors
from testkit.tinymodels.files import library_versions, make_world_readable, write_atomic
from testkit.tinymodels.files import sha256_file as _sha256

GENERATOR_VERSION = 1
HF_REVISION = "main"
SEED = 0
DEFAULT_ROOT = Path(os.environ.get("MODELBAKE_REALSIZE_DIR", Path(tempfile.gettempdir()) / "modelbake-realsize"))

_STAMP_DISTRIBUTIONS = (
    "torch",
    "openai-whisper",
    "transformers",
    "tokenizers",
    "spacy",
    "thinc",
    "numpy",
    "setuptools",
    "build",
)


# ---------------------------------------------------------------------------------------------------------
# Generation.


def build_realsize_tree(root: Path, *, force: bool = False, seed: int = SEED, big: bool = False) -> RealSizeSet:
    """Generate (or reuse, when ``ROOT/.complete`` matches this generator and these libraries) the tree.

    ``big``: also the `big` profile's models (bench/realsize_big.py, 5.5 GB more), added to a complete tree."""
    from filelock import FileLock

    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        stamp = _stamp(seed)
        marker = root / COMPLETE_MARKER
        if not force:
            found = read_complete(root, stamp, big)
            if found is not None:
                return found
        marker.unlink(missing_ok=True)
        if force:
            for sub in ("whisper", "spacy", "huggingface", PARTS_DIR):
                shutil.rmtree(root / sub, ignore_errors=True)
        parts = _generate(root, stamp, seed, big)
        whisper_sha = {m.name: parts[m.key]["files"][0]["sha256"] for m in WHISPER_MODELS}
        spacy = parts[SPACY_KEY]
        text = manifest_text(whisper_sha, spacy["files"][0]["sha256"])
        if big:
            from .realsize_big import manifest_with_big

            text = manifest_with_big(text)
        write_atomic(root / MANIFEST_NAME, text.encode())
        make_world_readable(root)
        record = {"stamp": stamp, "parts": parts}
        write_atomic(marker, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        os.chmod(marker, 0o644)
        return describe(root, parts, cached=False)


def _generate(root: Path, stamp: dict, seed: int, big: bool = False) -> dict[str, dict]:
    """Each model in turn, reusing a model whose part record matches (an interrupted run resumes)."""
    parts: dict[str, dict] = {}
    tokenizers: dict[str, object] = {}
    jobs: list[tuple[str, Callable[[], dict]]] = [
        *((m.key, lambda m=m: _make_whisper(root, m, seed)) for m in WHISPER_MODELS),
        (SPACY_KEY, lambda: _make_spacy(root, seed)),
        *((m.key, lambda m=m: _make_hf(root, m, seed, tokenizers)) for m in HF_MODELS),
    ]
    if big:
        from .realsize_big import BIG_MODELS, make_big

        jobs += [(b.key, lambda b=b: make_big(root, b, seed, tokenizers)) for b in BIG_MODELS]
    for key, job in jobs:
        part = read_part(root, key, stamp)
        if part is None:
            started = time.monotonic()
            part = job()
            part["seconds"] = round(time.monotonic() - started, 2)
            part["stamp"] = stamp
            write_atomic(root / PARTS_DIR / f"{key}.json", (json.dumps(part, indent=1, sort_keys=True) + "\n").encode())
            print(f"realsize: {key} generated in {part['seconds']:.1f} s", file=sys.stderr, flush=True)
        parts[key] = part
    return parts


def _make_whisper(root: Path, model: WhisperModel, seed: int) -> dict:
    data = _whisper_bytes(model, seed)
    rel = f"whisper/{model.filename}"
    write_atomic(root / rel, data)
    return {"files": [{"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}


def add_whisper_variant(root: Path, key: str = "whisper-tiny-en", seed: int = SEED + 1) -> str:
    """Another checkpoint of one Whisper model (same real shape, other weights) at ``ROOT/whisper/<sha256>/<name>.pt``
    (the mirror serves it for that sha256 only); return its sha256. For benchmarks that change one model's pin."""
    model = next(m for m in WHISPER_MODELS if m.key == key)
    data = _whisper_bytes(model, seed)
    digest = hashlib.sha256(data).hexdigest()
    target = Path(root) / "whisper" / digest / model.filename
    if not (target.is_file() and target.stat().st_size == len(data)):
        write_atomic(target, data)
    os.chmod(target.parent, 0o755)
    os.chmod(target, 0o644)
    return digest


def _make_spacy(root: Path, seed: int) -> dict:
    from .realsize_spacy import make_wheel

    wheel, rows = make_wheel(root / "spacy", seed=seed)
    rel = wheel.relative_to(root).as_posix()
    return {"files": [{"path": rel, "size": wheel.stat().st_size, "sha256": _sha256(wheel)}], "vector_rows": rows}


def _make_hf(root: Path, model: HFModel, seed: int, tokenizers: dict[str, object]) -> dict:
    from testkit.tinymodels.mirrorset import hub_repo_dir, publish_snapshot

    from .realsize_tokenizer import build_tokenizer_files, with_tokenizer_config

    if "base" not in tokenizers:
        tokenizers["base"] = build_tokenizer_files(seed)  # ~4 s, shared by the four repos
    tok = with_tokenizer_config(
        tokenizers["base"],  # type: ignore[arg-type]
        model_max_length=model.model_max_length,
        tokenizer_class=model.tokenizer_class,
    )
    repo_dir = hub_repo_dir(root, model.repo)
    if repo_dir.exists():
        shutil.rmtree(repo_dir)  # stale snapshots of an older generator
    staging = repo_dir / f".staging{os.getpid()}"
    staging.mkdir(parents=True)
    texts = {
        "config.json": json.dumps(model.config, indent=2, sort_keys=True) + "\n",
        "generation_config.json": json.dumps(model.generation, indent=2, sort_keys=True) + "\n",
    }
    for name, text in texts.items():
        (staging / name).write_text(text)
    for name, data in tok.files.items():
        (staging / name).write_bytes(data)
    tensors, norms = hf_tensors(model.config)
    write_safetensors(
        staging / "model.safetensors", tensors, lambda name, shape: _hf_fill(model, name, shape, norms, seed)
    )
    commit, digests = publish_snapshot(repo_dir, model.repo, staging, HF_REVISION)
    snapshot = repo_dir / "snapshots" / commit
    files = [
        {
            "path": (snapshot / name).relative_to(root).as_posix(),
            "size": (snapshot / name).stat().st_size,
            "sha256": sha,
        }
        for name, sha in digests.items()
    ]
    return {"files": files, "commit": commit}


def manifest_text(whisper_sha256: dict[str, str], spacy_sha256: str) -> str:
    """The project's models.toml with generated pins, and model.safetensors for every Hugging Face repo."""
    from .realsize_spacy import NAME, VERSION

    out = [
        f"# Random-weight models at the real sizes, from `python -m bench.realsize` (generator {GENERATOR_VERSION}).",
        "# Same ids, names, repos and profiles as the project's models.toml; the Whisper and spaCy pins are the",
        "# generated files' sha256. Every Hugging Face repo carries model.safetensors here: distilbart-cnn-12-6 and",
        "# led-base-16384 are pinned to pytorch_model.bin in the project's manifest.",
        "",
    ]
    for m in WHISPER_MODELS:
        out += [
            f"[models.{m.key}]",
            'family = "whisper"',
            f'name = "{m.name}"',
            f'sha256 = "{whisper_sha256[m.name]}"',
            "",
        ]
    out += [f"[models.{SPACY_KEY}]", 'family = "spacy"', f'name = "{NAME}"', f'version = "{VERSION}"']
    out += [f'sha256 = "{spacy_sha256}"', ""]
    for h in HF_MODELS:
        include = json.dumps(list(h.include))  # a JSON array of strings is a TOML array
        out += [f"[models.{h.key}]", 'family = "huggingface"', f'repo = "{h.repo}"', f'revision = "{HF_REVISION}"']
        if h.include != h.real_include:
            out.append(f"# the project's models.toml: include = {json.dumps(list(h.real_include))}")
        out += [f"include = {include}", 'task = "summarization"', f'role = "{ROLES[h.key]}"', ""]
    out.append("[profiles]")
    out += [f"{name} = {json.dumps(list(ids))}" for name, ids in PROFILES.items()]
    return "\n".join(out) + "\n"


def _stamp(seed: int) -> dict:
    return {"generator": GENERATOR_VERSION, "seed": seed, "versions": library_versions(_STAMP_DISTRIBUTIONS)}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.realsize [--root DIR] [--force]``: build (or reuse) the tree, print its files and sizes."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.realsize", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"mirror directory (default {DEFAULT_ROOT})")
    parser.add_argument("--force", action="store_true", help="regenerate even if ROOT/.complete matches")
    parser.add_argument(
        "--big", action="store_true", help="also profile `big`: a sharded model and one over 2 GB (5.5 GB more)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    tree = build_realsize_tree(args.root, force=args.force, big=args.big)
    elapsed = time.monotonic() - started
    print(tree.table())
    print()
    if not tree.cached:
        print("generation seconds per model: " + ", ".join(f"{k} {v:.1f}" for k, v in tree.seconds.items()))
    print(f"{tree.summary()} ({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
