"""podcast_pipeline without model inference: WAV reading, chunking bounds, speaker merging, bad input."""

from __future__ import annotations

import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from podcast_pipeline import audio as audio_mod
from podcast_pipeline.cli import main
from podcast_pipeline.speakers import merge, normalize, split_text
from podcast_pipeline.summarize import chunk_text, count_tokens, max_input_tokens

pytestmark = pytest.mark.unit


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int) -> Path:
    """samples: float in [-1, 1], shape (frames,) or (frames, channels); PCM of `width` bytes via stdlib wave."""
    frames = samples if samples.ndim == 2 else samples[:, None]
    if width == 1:
        data = np.clip(frames * 127 + 128, 0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        data = (frames * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = (frames * 8388607).astype("<i4")
        data = ints.view(np.uint8).reshape(*ints.shape, 4)[..., :3].tobytes()
    else:
        data = (frames * 2147483647).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """IEEE float32 WAV (format tag 3), which the stdlib wave module cannot write."""
    data = samples.astype("<f4").tobytes()
    fmt = np.array([3, 1], "<u2").tobytes() + np.array([rate, rate * 4], "<u4").tobytes()
    fmt += np.array([4, 32], "<u2").tobytes()
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" + len(data).to_bytes(4, "little") + data
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    return path


def tone(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


# ---- audio ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_wav_widths_read_as_16k_float(tmp_path, width):
    path = write_wav(tmp_path / f"w{width}.wav", tone(16000), 16000, width)
    audio = audio_mod.load_audio(path)
    assert audio.samples.dtype == np.float32 and audio.sample_rate == 16000
    assert audio.source_format == f"wav pcm{8 * width}"
    assert len(audio.samples) == 16000
    assert np.max(np.abs(audio.samples - tone(16000))) < (0.02 if width == 1 else 1e-3)


def test_float_wav(tmp_path):
    audio = audio_mod.load_audio(write_float_wav(tmp_path / "f.wav", tone(16000), 16000))
    assert audio.source_format == "wav float32"
    assert np.allclose(audio.samples, tone(16000), atol=1e-6)


def test_stereo_44k1_becomes_16k_mono(tmp_path):
    left, right = tone(44100, 2.0, 440.0, 0.6), tone(44100, 2.0, 440.0, 0.2)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, 2)
    audio = audio_mod.load_audio(path)
    assert (audio.source_rate, audio.source_channels) == (44100, 2)
    assert audio.info()["duration"] == pytest.approx(2.0, abs=1e-3)
    assert len(audio.samples) == 32000
    assert peak_hz(audio.samples, 16000) == pytest.approx(440.0, abs=1.0)
    middle = audio.samples[1000:-1000]  # mono = mean of the channels: amplitude 0.4
    assert np.max(np.abs(middle)) == pytest.approx(0.4, abs=0.01)


def test_downsampling_removes_tones_above_the_new_nyquist(tmp_path):
    path = write_wav(tmp_path / "hi.wav", tone(44100, 1.0, 12000.0, 0.5) + tone(44100, 1.0, 300.0, 0.3), 44100, 2)
    audio = audio_mod.load_audio(path)
    spectrum = np.abs(np.fft.rfft(audio.samples[500:-500]))
    freqs = np.fft.rfftfreq(len(audio.samples) - 1000, 1 / 16000)
    alias = spectrum[np.abs(freqs - 4000) < 50].max()  # 12 kHz would fold to 4 kHz without the low-pass
    assert alias < 0.02 * spectrum[np.abs(freqs - 300) < 50].max()


# ---- chunking -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers():
    """The tiny map/reduce models' tokenizers (the RobertaTokenizer the tiny tree's models are saved with, from the
    same training), made without the models: `transformers.AutoTokenizer` and the weights import torch."""
    from testkit.tinymodels.hf_seq2seq import MAX_INPUT_TOKENS, _train_tokenizer

    return {arch: _train_tokenizer(model_max_length=MAX_INPUT_TOKENS[arch]) for arch in ("bart", "led")}


def long_text(repeat: int = 12) -> str:
    from testkit.tinymodels.hf_seq2seq import corpus_lines

    lines = corpus_lines()
    return " ".join(lines[(i * 7) % len(lines)] for i in range(len(lines) * repeat))


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("limit", [256, 64, 1024])
def test_chunks_fit_the_limit_and_cover_the_text_in_order(tokenizers, limit):
    tok = tokenizers["led" if limit == 1024 else "bart"]
    text = long_text()
    chunks = chunk_text(text, tok, limit)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.tokens == count_tokens(tok, chunk.text) <= limit
        assert text[chunk.start : chunk.end] == chunk.text
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert squash("".join(c.text for c in chunks)) == squash(text)
    # most chunks end after a sentence, and none is tiny (the window is used)
    assert sum(c.text.rstrip()[-1] in ".!?" for c in chunks) >= len(chunks) - 1
    assert all(c.tokens > limit // 3 for c in chunks[:-1])


def test_chunk_overlap_repeats_text_and_stays_bounded(tokenizers):
    tok = tokenizers["bart"]
    text = long_text(4)
    chunks = chunk_text(text, tok, 64, overlap=8)
    assert all(c.tokens <= 64 for c in chunks)
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))  # overlapping
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())


def test_chunking_without_spaces_or_sentences_is_still_bounded(tokenizers):
    tok = tokenizers["bart"]
    text = "x" * 3000 + "é漢字" * 200
    chunks = chunk_text(text, tok, 40)
    assert all(c.tokens <= 40 for c in chunks)
    assert "".join(c.text for c in chunks) == text


def test_short_and_empty_text(tokenizers):
    tok = tokenizers["bart"]
    assert chunk_text("", tok, 256) == []
    assert chunk_text("   \n ", tok, 256) == []
    (only,) = chunk_text("Alice Smith talked with Bob Jones.", tok, 256)
    assert only.text == "Alice Smith talked with Bob Jones."


def test_max_input_tokens_from_tokenizer_and_config(tokenizers):
    class Config:
        max_position_embeddings = 128

    assert max_input_tokens(tokenizers["bart"]) == 256
    assert max_input_tokens(tokenizers["led"]) == 1024
    assert max_input_tokens(tokenizers["led"], Config()) == 128


# ---- speakers -----------------------------------------------------------------------------------------


def test_speakers_merge_case_insensitively_and_count():
    mentions = [
        ("title", "Alice Smith"),
        ("description", "alice smith"),
        ("transcript", "ALICE SMITH"),
        ("transcript", "Bob Jones"),
        ("transcript", "Smith"),  # only one full name has it: merged into Alice Smith
        ("transcript", "Carol"),
        ("transcript", "Jones"),
        ("transcript", "Dan Jones"),  # two full names end in Jones: the lone "Jones" stays apart
    ]
    speakers = {s.name: s for s in merge(mentions)}
    assert speakers["Alice Smith"].count == 4
    assert speakers["Alice Smith"].sources == ["title", "description", "transcript"]
    assert speakers["Bob Jones"].count == 1 and speakers["Dan Jones"].count == 1
    assert speakers["Jones"].count == 1  # two full names end in Jones: left alone
    assert speakers["Carol"].count == 1
    ordered = merge(mentions)
    assert ordered[0].name == "Alice Smith"
    assert [s.count for s in ordered] == sorted((s.count for s in ordered), reverse=True)


def test_speaker_names_are_normalized():
    assert normalize("  Alice\n Smith's ") == "Alice Smith"
    assert normalize('"Bob Jones,"') == "Bob Jones"
    assert merge([("t", "bob jones"), ("t", "Bob Jones"), ("t", "Bob Jones")])[0].name == "Bob Jones"


def test_long_texts_are_split_for_spacy():
    text = "Alice Smith spoke. " * 10000
    pieces = split_text(text, 50_000)
    assert all(len(p) <= 50_000 for p in pieces)
    assert squash("".join(pieces)) == squash(text)


# ---- bad input: exit 2, one line, nothing written ---------------------------------------------------


@pytest.fixture
def setup(tmp_path):
    """A valid WAV and a manifest (not needed to be baked: these cases fail before models are loaded)."""
    from testkit.tinymodels import manifest_text

    manifest = tmp_path / "models.toml"
    manifest.write_text(manifest_text("a" * 64, "b" * 64))
    wav = write_wav(tmp_path / "ep.wav", tone(16000, 2.0), 16000, 2)
    return {"dir": tmp_path, "wav": wav, "manifest": manifest, "out": tmp_path / "result.json"}


def run_bad(capsys, argv: list[str], expect: str, out: Path) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]
    assert captured.out == ""
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _args(s: dict, audio: Path, *extra: str) -> list[str]:
    return ["process", str(audio), "--manifest", str(s["manifest"]), "--models", str(s["dir"]), *extra]


def test_missing_file(setup, capsys):
    run_bad(capsys, _args(setup, setup["dir"] / "nope.wav", "--out", str(setup["out"])), "file not found", setup["out"])


def test_text_file_named_wav(setup, capsys):
    fake = setup["dir"] / "notes.wav"
    fake.write_text("these are show notes, not audio\n")
    expect = "not a WAV file" if shutil.which("ffmpeg") is None else "not audio"
    run_bad(capsys, _args(setup, fake, "--out", str(setup["out"])), expect, setup["out"])


@pytest.mark.skipif(shutil.which("ffmpeg") is not None, reason="ffmpeg installed: MP3 would be decoded")
def test_other_format_without_ffmpeg_says_so(setup, capsys):
    mp3 = setup["dir"] / "ep.mp3"
    mp3.write_bytes(b"ID3\x04\x00\x00" + b"\x00" * 200)
    run_bad(capsys, _args(setup, mp3, "--out", str(setup["out"])), "needs ffmpeg", setup["out"])


def test_empty_file(setup, capsys):
    empty = setup["dir"] / "empty.wav"
    empty.write_bytes(b"")
    run_bad(capsys, _args(setup, empty, "--out", str(setup["out"])), "empty file", setup["out"])


def test_wav_without_frames(setup, capsys):
    path = write_wav(setup["dir"] / "zero.wav", np.zeros(0), 16000, 2)
    run_bad(capsys, _args(setup, path, "--out", str(setup["out"])), "duration 0", setup["out"])


def test_silent_wav(setup, capsys):
    rng = np.random.default_rng(0)
    path = write_wav(setup["dir"] / "silent.wav", rng.uniform(-2e-4, 2e-4, 32000), 16000, 2)  # +-1..6 LSB
    run_bad(capsys, _args(setup, path, "--out", str(setup["out"])), "silent audio", setup["out"])


def test_out_directory_missing(setup, capsys):
    out = setup["dir"] / "no-such-dir" / "result.json"
    code = main(_args(setup, setup["wav"], "--out", str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
    assert not out.parent.exists()


def test_out_is_a_directory(setup, capsys):
    out = setup["dir"] / "taken"
    out.mkdir()
    code = main(_args(setup, setup["wav"], "--out", str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a directory" in err[0]
    assert list(out.iterdir()) == []


def test_out_parent_is_a_file(setup, capsys):
    out = setup["wav"] / "result.json"
    code = main(_args(setup, setup["wav"], "--out", str(out)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]


def test_out_checked_before_audio(setup, capsys):
    """An unwritable --out is reported first: nothing expensive (not even decoding) runs."""
    code = main(_args(setup, setup["dir"] / "nope.wav", "--out", str(setup["dir"] / "x" / "r.json")))
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err and "nope.wav" not in err


def test_unknown_profile(setup, capsys):
    run_bad(
        capsys,
        _args(setup, setup["wav"], "--profile", "nope", "--out", str(setup["out"])),
        "unknown profile 'nope'",
        setup["out"],
    )


def test_usage_error_is_one_line(capsys):
    assert main(["process"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_missing_models_dir_is_exit_3(setup, capsys):
    code = main(_args(setup, setup["wav"], "--profile", "test", "--out", str(setup["out"])))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("error: ")
    assert not setup["out"].exists()
