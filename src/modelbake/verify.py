"""Load every model with the real loaders, offline, and run one small inference each.

Why this exists: a model that is "in the cache" can still fail at run time (a missing tokenizer file, a ref
that does not resolve, a loader that phones home). Verify proves the image or laptop works with no network.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .constants import DEBUG_ENV, HF_HUB_CACHE_ENV, OFFLINE_ENV, QUIET_LIBRARIES_ENV
from .digests import sha256_file
from .errors import MissingDependencyError
from .fetchers.huggingface import COMMIT_RE
from .lockfile import LockedModel
from .manifest import HuggingFaceSpec, ModelSpec, SpacySpec, WhisperSpec
from .netguard import NetworkGuard
from .paths import Layout, installed_version

SMOKE_SENTENCE = "Alice Smith talked with Bob Jones about the weather in Paris."
SMOKE_TEXT = (
    "The hosts discussed how models are baked into container images, why builds should not download "
    "weights twice, and how offline verification catches missing files before deployment."
)


@dataclass
class VerifyResult:
    model_id: str
    family: str
    bytes: int = 0
    load_s: float = 0.0
    run_s: float = 0.0
    ok: bool = False
    detail: str = ""
    network: list[str] = field(default_factory=list)
    present: bool = True  # False: not where verify looked, so not loaded (`detail` says where)


# What each family's loader imports, and the distribution that provides a module when its name differs.
LOADER_MODULES = {
    "whisper": ("torch", "numpy", "whisper"),
    "spacy": ("spacy",),
    "huggingface": ("torch", "transformers"),
}
DISTRIBUTIONS = {"whisper": "openai-whisper"}
# openai-whisper without its dependencies: its metadata pulls ~1 GB of triton on x86_64, useless on CPU.
ML_INSTALL = "pip install 'modelbake[ml]' && pip install --no-deps openai-whisper"


def require_loaders(families: set[str]) -> None:
    """Raise MissingDependencyError, before anything loads, when a loader of these families is not installed
    (the fetch side and the Docker fetch stage do without the `ml` extra, so a plain install lacks them)."""
    missing = sorted(
        {DISTRIBUTIONS.get(m, m) for f in families for m in LOADER_MODULES[f] if importlib.util.find_spec(m) is None}
    )
    if missing:
        raise MissingDependencyError("modelbake verify", missing, ML_INSTALL)


def set_offline_environment(layout: Layout) -> None:
    """The offline variables, set before transformers/huggingface_hub are imported (they read them once)."""
    os.environ.update(OFFLINE_ENV)
    os.environ[HF_HUB_CACHE_ENV] = str(layout.hf_hub_cache)
    for name, value in QUIET_LIBRARIES_ENV.items():
        os.environ.setdefault(name, value)
    if "huggingface_hub" in sys.modules:  # imported earlier in this process: flip its constant too
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True


def use_spacy_pipelines(layout: Layout, specs: list[ModelSpec]) -> list[Path]:
    """Put each pipeline's directory on `sys.path` (first), so `spacy.load(<package>)` finds it; returns them.

    A `--dest` tree holds one pip `--target` directory per pipeline; `spacy.load` needs the package and its
    dist-info on `sys.path`. No `.pth` files: a `--target` directory is not a site directory.
    """
    dirs = layout.spacy_import_dirs(specs)
    for path in reversed(dirs):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    return dirs


def absence(spec: ModelSpec, entry: LockedModel | None, layout: Layout) -> str | None:
    """Where verify looked for a model that is not there, or None when it is there (its loader then says whether
    it works). Asked before any loader runs: a model that is not there otherwise surfaces as its loader's own
    error (spaCy's E050, transformers' "couldn't connect to huggingface.co"), which says nothing of the fix."""
    if isinstance(spec, WhisperSpec):
        path = layout.whisper_file(spec)
        return None if path.is_file() else f"no {path}"
    if isinstance(spec, SpacySpec):
        where = layout.spacy_import_dir(spec)
        if installed_version(spec.name, where) is not None:
            return None
        return f"no pipeline {spec.name} in {where or f'this Python environment ({sys.prefix})'}"
    revision = entry.revision if entry else spec.revision
    if not COMMIT_RE.match(revision):  # a branch or tag (no lock): the hub cache's ref names the commit
        ref = layout.hf_ref_file(spec, revision)
        if not ref.is_file():
            return f"no {ref}"
        revision = ref.read_text().strip()
    snapshot = layout.hf_snapshot_dir(spec, revision)
    return None if snapshot.is_dir() else f"no {snapshot}"


def verify_models(
    items: list[tuple[ModelSpec, LockedModel | None]], layout: Layout, guard: NetworkGuard | None = None
) -> list[VerifyResult]:
    """Verify each model in turn with the network blocked; never raises for a model's failure."""
    set_offline_environment(layout)
    use_spacy_pipelines(layout, [spec for spec, _ in items])
    guard = guard or NetworkGuard()
    results = []
    with guard.active():
        for spec, entry in items:
            guard.label = spec.id
            result = VerifyResult(model_id=spec.id, family=spec.family)
            where = absence(spec, entry, layout)
            if where is not None:
                result.present, result.detail = False, f"not present: {where}"
                results.append(result)
                continue
            try:
                _verify_model(spec, entry, layout, result)
                result.ok = True
            except Exception as exc:  # noqa: BLE001 - any loader failure is reported per model, not raised
                result.detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                if os.environ.get(DEBUG_ENV):
                    traceback.print_exc()
            result.network = guard.attempts_for(spec.id)
            if result.network:
                result.ok = False
                result.detail = (result.detail + "; " if result.detail else "") + (
                    f"tried the network: {result.network[0]}"
                )
            results.append(result)
    return results


@contextmanager
def _timed(result: VerifyResult, phase: str) -> Iterator[None]:
    """Add the block's duration to `result.<phase>` (`load_s`, `run_s`), whether it raises or not."""
    start = time.perf_counter()
    try:
        yield
    finally:
        setattr(result, phase, getattr(result, phase) + time.perf_counter() - start)


def _verify_model(spec: ModelSpec, entry: LockedModel | None, layout: Layout, result: VerifyResult) -> None:
    if isinstance(spec, WhisperSpec):
        _verify_whisper(spec, entry, layout, result)
    elif isinstance(spec, SpacySpec):
        _verify_spacy(spec, entry, layout, result)
    else:
        _verify_huggingface(spec, entry, layout, result)


def _verify_whisper(spec: WhisperSpec, entry: LockedModel | None, layout: Layout, result: VerifyResult) -> None:
    import numpy as np
    import whisper

    path = layout.whisper_file(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    result.bytes = path.stat().st_size
    expected = entry.files[0].sha256 if entry else spec.sha256
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(f"{path}: sha256 {actual} != pinned {expected}")
    with _timed(result, "load_s"):
        model = whisper.load_model(str(path), device="cpu")  # by path: custom checkpoints work too
    with _timed(result, "run_s"):
        audio = np.zeros(16000, dtype=np.float32)  # 1 s of 16 kHz audio; no ffmpeg needed
        out = model.transcribe(
            audio, fp16=False, temperature=0.0, condition_on_previous_text=False, language="en", sample_len=16
        )
    if "text" not in out:
        raise ValueError("transcribe returned no text field")
    result.detail = f"transcribed 1 s ({len(out.get('segments', []))} segments)"


def _verify_spacy(spec: SpacySpec, entry: LockedModel | None, layout: Layout, result: VerifyResult) -> None:
    import importlib

    import spacy

    importlib.invalidate_caches()
    with _timed(result, "load_s"):
        nlp = spacy.load(spec.name)
    version = nlp.meta.get("version")
    if version != spec.version:
        raise ValueError(f"loaded {spec.name} {version}, pinned {spec.version}")
    package_dir = Path(nlp.path) if getattr(nlp, "path", None) else None
    if package_dir is not None and package_dir.exists():
        result.bytes = sum(p.stat().st_size for p in package_dir.rglob("*") if p.is_file())
    with _timed(result, "run_s"):
        doc = nlp(SMOKE_SENTENCE)
    result.detail = f"{len(doc.ents)} entities"


def _verify_huggingface(spec: HuggingFaceSpec, entry: LockedModel | None, layout: Layout, result: VerifyResult) -> None:
    import torch
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    revision = entry.revision if entry else spec.revision
    cache_dir = str(layout.hf_hub_cache)
    if entry:
        result.bytes = entry.total_bytes
    with _timed(result, "load_s"):
        tokenizer = AutoTokenizer.from_pretrained(spec.repo, revision=revision, cache_dir=cache_dir)
        model_cls = (
            AutoModelForSeq2SeqLM
            if spec.task in ("summarization", "translation", "text2text-generation")
            else AutoModel
        )
        model = model_cls.from_pretrained(spec.repo, revision=revision, cache_dir=cache_dir)
        model.eval()
    with _timed(result, "run_s"), torch.no_grad():
        inputs = tokenizer(SMOKE_TEXT, return_tensors="pt", truncation=True, max_length=256)
        if model_cls is AutoModelForSeq2SeqLM:
            output = model.generate(**inputs, max_new_tokens=8, num_beams=1, do_sample=False)
            result.detail = f"generated {output.shape[-1]} tokens"
        else:
            output = model(**inputs)
            result.detail = "forward pass"
