"""podcast_pipeline end to end with the real libraries and the tiny models, baked like an image's /models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from conftest import mirror_args

pytestmark = pytest.mark.ml_models

TITLE = "Alice Smith talked with Bob Jones"
DESCRIPTION = "Carol White joins Alice Smith in the studio."


@pytest.fixture(scope="module")
def baked(tiny_locked, mirror, tmp_path_factory):
    """`modelbake preload --dest` of the test profile: the tree an image has under /models."""
    from modelbake.cli import main

    dest = tmp_path_factory.mktemp("baked-models")
    args = ["preload", "--manifest", str(tiny_locked), "--profile", "test", "--dest", str(dest)]
    assert main([*args, *mirror_args(mirror)]) == 0
    return dest


@pytest.fixture
def episode(tmp_path) -> Path:
    """2.5 s of a tone plus noise, 44.1 kHz stereo 16-bit (decoded and resampled by the app).

    The random Whisper decodes this one quickly (what it decodes depends on the audio; some inputs make it
    emit the full 224 tokens per window).
    """
    rate = 44100
    t = np.arange(int(rate * 2.5)) / rate
    rng = np.random.default_rng(0)
    signal = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    frames = np.stack([signal, 0.5 * signal], axis=1)
    path = tmp_path / "ep.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((frames * 32767).astype("<i2").tobytes())
    return path


def test_process_episode_in_a_fresh_process(baked, tiny_locked, tiny_tree, episode, tmp_path):
    """As the image runs it: `python -m podcast_pipeline process ...`, env vars for models and manifest."""
    out = tmp_path / "result.json"
    env = {
        **os.environ,
        "MODELBAKE_MODELS_DIR": str(baked),
        "MODELBAKE_MANIFEST": str(tiny_locked),
        "MODELBAKE_PROFILE": "test",
    }
    argv = ["process", str(episode), "--title", TITLE, "--description", DESCRIPTION, "--out", str(out)]
    argv += ["--max-new-tokens", "16"]  # random weights never stop early: bound the generate calls
    proc = subprocess.run(
        [sys.executable, "-m", "podcast_pipeline", *argv], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    result = json.loads(out.read_text())

    for key in ("transcript", "segments", "speakers", "summary", "models", "timings", "audio", "summary_stats"):
        assert key in result, key
    assert result["audio"]["sample_rate"] == 44100 and result["audio"]["channels"] == 2
    assert result["audio"]["duration"] == pytest.approx(2.5, abs=0.01)
    for segment in result["segments"]:
        assert set(segment) == {"start", "end", "text"}
        assert 0 <= segment["start"] <= segment["end"] <= 2.5

    used = {m["id"]: m for m in result["models"]}
    assert set(used) == {"whisper-tiny", "spacy-ner", "bart-map", "led-reduce"}
    assert used["whisper-tiny"]["name"] == tiny_tree.whisper_name
    assert used["whisper-tiny"]["revision"] == tiny_tree.whisper_sha256
    assert used["spacy-ner"]["revision"] == tiny_tree.spacy_version
    assert used["bart-map"]["repo"] == tiny_tree.bart_repo and used["bart-map"]["revision"] == tiny_tree.bart_commit
    assert used["led-reduce"]["revision"] == tiny_tree.led_commit and used["led-reduce"]["role"] == "reduce"

    speakers = {s["name"]: s for s in result["speakers"]}
    assert "Alice Smith" in speakers, result["speakers"]
    assert speakers["Alice Smith"]["count"] >= 2 and {"title", "description"} <= set(speakers["Alice Smith"]["sources"])

    stats = result["summary_stats"]
    if result["transcript"]:
        assert stats["map_calls"] == stats["summary_chunks"] >= 1
        assert stats["reduce_calls"] == 1
        assert all(n <= stats["map_max_input_tokens"] == 256 for n in stats["chunk_tokens"])
    for stage in ("audio", "transcribe", "speakers", "summarize", "total"):
        assert result["timings"][stage] >= 0


@pytest.fixture(scope="module")
def summarizers(baked, tiny_locked):
    """The map and reduce models loaded offline from the baked hub cache at their locked commits."""
    import huggingface_hub

    from podcast_pipeline.models import resolve
    from podcast_pipeline.summarize import Seq2Seq

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_const = huggingface_hub.constants.HF_HUB_OFFLINE
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        models = resolve(tiny_locked, "test", baked)
        mapper = Seq2Seq.load(models.map.source, models.map.revision, models.map.path, max_new_tokens=8)
        reducer = Seq2Seq.load(models.reduce.source, models.reduce.revision, models.reduce.path, max_new_tokens=8)
        yield mapper, reducer
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = saved_const
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def long_transcript(lines: int = 120) -> str:
    from testkit.tinymodels.hf_seq2seq import corpus_lines

    corpus = corpus_lines()
    return " ".join(corpus[(i * 11) % len(corpus)] for i in range(lines))


def test_map_per_chunk_then_one_reduce(summarizers):
    from podcast_pipeline.summarize import summarize

    mapper, reducer = summarizers
    result = summarize(long_transcript(60), mapper, reducer)
    assert mapper.max_input_tokens == 256 and reducer.max_input_tokens == 1024
    assert len(result.chunks) >= 3
    assert all(c.tokens <= 256 for c in result.chunks)
    assert result.map_calls == len(result.chunks)
    assert (result.reduce_calls, result.reduce_rounds, result.truncated) == (1, 1, False)
    assert isinstance(result.summary, str)


def test_reduce_is_hierarchical_when_partials_exceed_its_limit(summarizers):
    from podcast_pipeline.summarize import Seq2Seq, summarize

    mapper, reducer = summarizers
    small = Seq2Seq(reducer.tokenizer, reducer.model, name="led-small", max_new_tokens=4)
    small.max_input_tokens = 24  # 8-token partials of several chunks no longer fit in one reduce call
    result = summarize(long_transcript(60), mapper, small)
    assert result.map_calls == len(result.chunks) >= 3
    assert result.reduce_rounds >= 2
    assert result.reduce_calls > result.reduce_rounds  # several calls in the first round, one at the end
    assert not result.truncated


def test_empty_transcript_gives_empty_summary(summarizers):
    from podcast_pipeline.summarize import summarize

    mapper, reducer = summarizers
    result = summarize("  ", mapper, reducer)
    assert (result.summary, result.map_calls, result.reduce_calls) == ("", 0, 0)
