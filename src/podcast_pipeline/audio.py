"""Read an episode into what Whisper takes: 16 kHz mono float32 samples in [-1, 1].

WAV (PCM 8/16/24/32-bit, IEEE float 32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE) is parsed here with numpy,
so the image needs no ffmpeg for it. Any other format goes through ffmpeg when it is on PATH; without it
the error says so.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

TARGET_RATE = 16000
SILENCE_PEAK = 1e-3  # -60 dBFS: a recording whose loudest sample is below this is treated as silent

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE

# Magic bytes of formats that are audio but need ffmpeg (so the error can say "needs ffmpeg", not "not audio").
_OTHER_AUDIO_MAGIC = (
    (b"ID3", "MP3"),
    (b"\xff\xfb", "MP3"),
    (b"\xff\xf3", "MP3"),
    (b"\xff\xf2", "MP3"),
    (b"fLaC", "FLAC"),
    (b"OggS", "Ogg"),
    (b"FORM", "AIFF"),
    (b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
)


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, mono, TARGET_RATE
    source_rate: int
    source_channels: int
    source_format: str  # e.g. "wav pcm16", "wav float32", "ffmpeg"

    @property
    def sample_rate(self) -> int:
        return TARGET_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / TARGET_RATE

    def info(self) -> dict:
        return {
            "duration": round(self.duration, 3),
            "sample_rate": self.source_rate,
            "channels": self.source_channels,
            "format": self.source_format,
            "decoded_sample_rate": TARGET_RATE,
        }


def load_audio(path: str | Path) -> Audio:
    """Decode, downmix, resample and check the episode; raises InputError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an audio file")
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(head) == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        audio = read_wav(path)
    else:
        audio = _decode_with_ffmpeg(path, head)
    check_not_silent(audio, path)
    return audio


def check_not_silent(audio: Audio, path: Path | str) -> None:
    if audio.samples.size == 0:
        raise InputError(f"{path}: empty audio (duration 0 s)")
    peak = float(np.max(np.abs(audio.samples)))
    if peak < SILENCE_PEAK:
        raise InputError(f"{path}: silent audio ({audio.duration:.1f} s, peak {peak:.1e}, below -60 dBFS)")


def read_wav(path: str | Path) -> Audio:
    """Parse a RIFF/WAVE file with the stdlib and numpy; raises InputError for what it cannot read."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InputError(f"{path}: not a RIFF/WAVE file (only little-endian RIFF WAV is read without ffmpeg)")
    fmt: tuple[int, int, int, int] | None = None
    pcm: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise InputError(f"{path}: malformed WAV (fmt chunk of {len(body)} bytes)")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body, 0)
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            pcm = body  # a truncated file keeps what is there
            if fmt is not None:
                break
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    if fmt is None:
        raise InputError(f"{path}: malformed WAV (no fmt chunk)")
    tag, channels, rate, bits = fmt
    if pcm is None:
        raise InputError(f"{path}: malformed WAV (no data chunk)")
    if channels < 1 or rate < 1:
        raise InputError(f"{path}: malformed WAV ({channels} channels at {rate} Hz)")
    samples, kind = _decode_samples(pcm, tag, bits, path)
    frames = len(samples) // channels
    samples = samples[: frames * channels].reshape(frames, channels)
    mono = samples.mean(axis=1, dtype=np.float64) if channels > 1 else samples[:, 0].astype(np.float64)
    return Audio(
        samples=resample(mono, rate, TARGET_RATE).astype(np.float32),
        source_rate=rate,
        source_channels=channels,
        source_format=f"wav {kind}",
    )


def _decode_samples(pcm: bytes, tag: int, bits: int, path: Path) -> tuple[np.ndarray, str]:
    """Interleaved samples as float64 in [-1, 1]."""
    if tag == _PCM:
        width = bits // 8 if bits % 8 == 0 else (bits + 7) // 8
        usable = len(pcm) - len(pcm) % width
        raw = np.frombuffer(pcm[:usable], dtype=np.uint8)
        if width == 1:  # 8-bit WAV is unsigned, centred on 128
            return (raw.astype(np.float64) - 128.0) / 128.0, "pcm8"
        if width == 2:
            return raw.view("<i2").astype(np.float64) / 32768.0, "pcm16"
        if width == 3:  # packed 24-bit: widen to int32 by putting the 3 bytes in the top of each word
            triples = raw.reshape(-1, 3).astype(np.int32)
            values = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
            return values.astype(np.float64) / 2147483648.0, "pcm24"
        if width == 4:
            return raw.view("<i4").astype(np.float64) / 2147483648.0, "pcm32"
    elif tag == _FLOAT and bits in (32, 64):
        dtype = "<f4" if bits == 32 else "<f8"
        width = bits // 8
        usable = len(pcm) - len(pcm) % width
        values = np.frombuffer(pcm[:usable], dtype=dtype).astype(np.float64)
        return np.clip(np.nan_to_num(values), -1.0, 1.0), f"float{bits}"
    what = {_PCM: f"{bits}-bit PCM", _FLOAT: f"{bits}-bit float"}.get(tag, f"format tag 0x{tag:04x}")
    raise InputError(f"{path}: unsupported WAV encoding ({what}); convert to 16-bit PCM or install ffmpeg")


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling: a windowed-sinc low-pass below the new Nyquist, then linear interpolation.

    numpy only (no scipy in the image). Good enough for speech recognition, which ignores phase detail.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if source_rate == target_rate or samples.size == 0:
        return samples
    if target_rate < source_rate:
        cutoff = 0.45 * target_rate / source_rate  # cycles per input sample, a little under the new Nyquist
        taps = 101
        n = np.arange(taps) - (taps - 1) / 2
        kernel = 2 * cutoff * np.sinc(2 * cutoff * n) * np.blackman(taps)
        kernel /= kernel.sum()
        samples = np.convolve(samples, kernel, mode="same")
    count = int(round(len(samples) * target_rate / source_rate))
    positions = np.arange(count) * (source_rate / target_rate)
    return np.interp(positions, np.arange(len(samples)), samples)


def _decode_with_ffmpeg(path: Path, head: bytes) -> Audio:
    ffmpeg = shutil.which("ffmpeg")
    known = next((name for magic, name in _OTHER_AUDIO_MAGIC if head.startswith(magic)), None)
    if known is None and head[4:8] == b"ftyp":
        known = "MP4/M4A"
    if ffmpeg is None:
        if known:
            raise InputError(
                f"{path}: {known} audio needs ffmpeg to decode, and ffmpeg is not on PATH (or convert to WAV)"
            )
        raise InputError(
            f"{path}: not a WAV file (no RIFF/WAVE header); other audio formats need ffmpeg, which is not on PATH"
        )
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(TARGET_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(f"{path}: not audio (ffmpeg could not decode it: {reason[-1] if reason else 'no detail'})")
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    return Audio(
        samples=samples, source_rate=TARGET_RATE, source_channels=1, source_format=f"ffmpeg {known or ''}".strip()
    )
