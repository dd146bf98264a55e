"""Tiny real models: deterministic bytes, and the real loaders load and run each of them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from testkit.tinymodels import (
    BART_REPO,
    LED_REPO,
    MODEL_KEYS,
    SMOKE_TRANSCRIBE_KWARGS,
    SPACY_NAME,
    SPACY_VERSION,
    TinySet,
    add_whisper_variant,
    build_mirror_tree,
    hub_repo_dir,
    main,
    make_seq2seq_model,
    make_spacy_wheel,
    make_whisper_checkpoint,
    whisper_checkpoint_bytes,
)

pytestmark = pytest.mark.ml_models


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinySet:
    return build_mirror_tree(tmp_path_factory.mktemp("tiny-mirror"))


def test_import_is_light() -> None:
    code = (
        "import sys, testkit.tinymodels\n"
        "heavy = [m for m in ('torch', 'transformers', 'spacy', 'whisper', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_tree_layout_and_manifest(tiny: TinySet) -> None:
    root = tiny.root
    assert not tiny.cached
    assert tiny.whisper_path == root / "whisper" / "tiny-random.en.pt"
    assert tiny.spacy_wheel == root / "spacy" / f"{SPACY_NAME}-{SPACY_VERSION}-py3-none-any.whl"
    assert _sha256(tiny.whisper_path) == tiny.whisper_sha256
    assert _sha256(tiny.spacy_wheel) == tiny.spacy_sha256
    for repo, commit, snapshot in (
        (BART_REPO, tiny.bart_commit, tiny.bart_snapshot),
        (LED_REPO, tiny.led_commit, tiny.led_snapshot),
    ):
        repo_dir = hub_repo_dir(root, repo)
        assert (repo_dir / "refs" / "main").read_text() == commit
        assert len(commit) == 40 and int(commit, 16) >= 0
        names = sorted(p.name for p in snapshot.iterdir())
        assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= set(names)
        assert all((snapshot / n).stat().st_mode & 0o044 == 0o044 for n in names)  # world-readable
    assert tiny.bart_commit != tiny.led_commit
    assert 5_000_000 < tiny.total_bytes < 12_000_000
    assert (root / ".complete").is_file()

    manifest = tomllib.loads(tiny.manifest.read_text())
    assert manifest["profiles"] == {"test": list(MODEL_KEYS)}
    models = manifest["models"]
    assert models["whisper-tiny"] == {
        "family": "whisper",
        "name": "tiny-random.en",
        "sha256": tiny.whisper_sha256,
    }
    assert models["spacy-ner"] == {
        "family": "spacy",
        "name": "en_tiny_ner",
        "version": "0.1.0",
        "sha256": tiny.spacy_sha256,
    }
    assert models["bart-map"] == {
        "family": "huggingface",
        "repo": "modelbake-tiny/bart",
        "revision": "main",
        "task": "summarization",
        "role": "map",
    }
    assert models["led-reduce"]["repo"] == "modelbake-tiny/led"
    assert models["led-reduce"]["role"] == "reduce"


def test_rebuild_is_skipped_when_complete(tiny: TinySet, capsys: pytest.CaptureFixture[str]) -> None:
    again = build_mirror_tree(tiny.root)
    assert again.cached
    assert again.whisper_sha256 == tiny.whisper_sha256
    assert again.hf_commits == tiny.hf_commits
    assert main([str(tiny.root)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and tiny.whisper_sha256[:12] in line and "reused" in line


def test_whisper_bytes_are_deterministic(tmp_path: Path) -> None:
    first = make_whisper_checkpoint(tmp_path / "a" / "x.pt", seed=0)
    second = make_whisper_checkpoint(tmp_path / "b" / "other-name.pt", seed=0)
    assert first == second  # the file name is not recorded in the zip
    assert (tmp_path / "a" / "x.pt").read_bytes() == (tmp_path / "b" / "other-name.pt").read_bytes()
    assert hashlib.sha256(whisper_checkpoint_bytes(1)).hexdigest() != first


def test_whisper_matches_tree(tiny: TinySet) -> None:
    assert hashlib.sha256(whisper_checkpoint_bytes(0)).hexdigest() == tiny.whisper_sha256


def test_add_whisper_variant(tiny: TinySet) -> None:
    digest = add_whisper_variant(tiny.root, seed=3)
    path = tiny.root / "whisper" / digest / "tiny-random.en.pt"
    assert digest != tiny.whisper_sha256
    assert _sha256(path) == digest
    assert add_whisper_variant(tiny.root, seed=3) == digest


@pytest.mark.parametrize("arch", ["bart", "led"])
def test_seq2seq_bytes_are_deterministic(tiny: TinySet, arch: str, tmp_path: Path) -> None:
    make_seq2seq_model(tmp_path, arch)
    snapshot = tiny.bart_snapshot if arch == "bart" else tiny.led_snapshot
    assert _tree_bytes(tmp_path) == _tree_bytes(snapshot)


def test_spacy_wheel_is_deterministic(tiny: TinySet, tmp_path: Path) -> None:
    wheel = make_spacy_wheel(tmp_path)
    assert wheel.name == tiny.spacy_wheel.name
    assert _sha256(wheel) == tiny.spacy_sha256


def test_whisper_loads_and_transcribes(tiny: TinySet) -> None:
    import numpy as np
    import whisper

    model = whisper.load_model(str(tiny.whisper_path), device="cpu")
    assert model.is_multilingual is False
    result = model.transcribe(np.zeros(16000, dtype=np.float32), **SMOKE_TRANSCRIBE_KWARGS)
    assert isinstance(result["text"], str)


@pytest.mark.parametrize("arch", ["bart", "led"])
def test_seq2seq_loads_and_generates(tiny: TinySet, arch: str) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    repo = BART_REPO if arch == "bart" else LED_REPO
    # As a hub cache (what preload --dest / the mirror serve): by repo id, offline.
    cache_dir = tiny.root / "huggingface"
    tokenizer = AutoTokenizer.from_pretrained(repo, cache_dir=cache_dir, local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(repo, cache_dir=cache_dir, local_files_only=True)
    assert model.config.model_type == arch
    inputs = tokenizer("The city council met on Tuesday to discuss the budget.", return_tensors="pt")
    assert inputs["input_ids"][0, 0].item() == tokenizer.bos_token_id
    out = model.generate(**inputs, max_new_tokens=8)
    assert 1 < out.shape[1] <= 9
    assert isinstance(tokenizer.decode(out[0], skip_special_tokens=True), str)


def test_spacy_wheel_installs_and_finds_person(tiny: TinySet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spacy

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--no-index",
            "--target",
            str(target),
            str(tiny.spacy_wheel),
        ],
        check=True,
    )
    assert (target / SPACY_NAME).is_dir()
    assert (target / f"{SPACY_NAME}-{SPACY_VERSION}.dist-info").is_dir()
    monkeypatch.syspath_prepend(str(target))
    nlp = spacy.load(SPACY_NAME)
    assert nlp.pipe_names == ["ner"]
    doc = nlp("Alice Smith talked with Bob Jones about the new library.")
    assert ("Alice Smith", "PERSON") in [(ent.text, ent.label_) for ent in doc.ents]
