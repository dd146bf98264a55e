"""Whisper transcription of 16 kHz mono samples (no ffmpeg: Whisper takes the numpy array directly)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Greedy decoding at one temperature, no conditioning on the previous window: fast and stable (it avoids
# the repetition loops conditioning can cause). `quality=True` uses Whisper's temperature fallback ladder.
FAST_OPTIONS = {"temperature": 0.0, "condition_on_previous_text": False}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class Transcript:
    text: str
    segments: list[Segment]
    language: str | None


def load_whisper(path: Path):
    import whisper

    return whisper.load_model(str(path), device="cpu")  # by path: custom checkpoints need no _MODELS entry


def transcribe(model, samples: np.ndarray, language: str | None = None, quality: bool = False) -> Transcript:
    options = {} if quality else dict(FAST_OPTIONS)
    if not model.is_multilingual:
        language = "en"
    result = model.transcribe(samples.astype(np.float32), fp16=False, language=language, verbose=None, **options)
    duration = len(samples) / 16000  # Whisper pads the last window to 30 s: keep times inside the audio
    segments = [
        Segment(min(float(s["start"]), duration), min(float(s["end"]), duration), s["text"].strip())
        for s in result.get("segments", [])
        if s["text"].strip()
    ]
    return Transcript(text=result.get("text", "").strip(), segments=segments, language=result.get("language"))
