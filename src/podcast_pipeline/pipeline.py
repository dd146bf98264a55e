"""One episode through every stage, with the time each took."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .audio import Audio, load_audio
from .models import ProfileModels


@dataclass
class Options:
    title: str = ""
    description: str = ""
    quality: bool = False  # Whisper's temperature fallback (slower) instead of greedy decoding
    language: str | None = None
    overlap: int = 0  # tokens repeated between summary chunks
    max_new_tokens: int | None = None  # per generate call; None: the models' generation_config


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def process(
    audio_path: Path, models: ProfileModels, options: Options, audio: Audio | None = None, timings=None, log=None
) -> dict:
    """Audio in, result dict out. `audio`: already decoded (the CLI decodes it first to reject bad input early)."""
    log = log or (lambda message: None)
    timings = timings or Timings()
    total = time.perf_counter() - sum(timings.seconds.values())
    if audio is None:
        with timings.stage("audio"):
            audio = load_audio(audio_path)
    log(f"audio: {audio.duration:.1f} s, {audio.source_rate} Hz, {audio.source_channels} ch ({audio.source_format})")

    from .settings import set_offline_defaults

    set_offline_defaults()
    from . import speakers as speakers_mod
    from . import summarize as summarize_mod
    from . import transcribe as transcribe_mod

    with timings.stage("load_whisper"):
        whisper_model = transcribe_mod.load_whisper(models.whisper.path)
    with timings.stage("transcribe"):
        transcript = transcribe_mod.transcribe(whisper_model, audio.samples, options.language, options.quality)
    del whisper_model
    log(f"transcribe: {len(transcript.segments)} segments, {len(transcript.text)} chars")

    with timings.stage("load_spacy"):
        models.activate_spacy()
        nlp = speakers_mod.load_spacy(models.spacy.source)
    with timings.stage("speakers"):
        texts = speakers_mod.episode_texts(options.title, options.description, transcript.text)
        people = speakers_mod.merge(speakers_mod.person_mentions(nlp, texts))
    log(f"speakers: {len(people)} found")

    with timings.stage("load_summarizers"):
        mapper = summarize_mod.Seq2Seq.load(
            models.map.source, models.map.revision, models.map.path, options.max_new_tokens
        )
        reducer = (
            mapper
            if models.reduce.id == models.map.id
            else summarize_mod.Seq2Seq.load(
                models.reduce.source, models.reduce.revision, models.reduce.path, options.max_new_tokens
            )
        )
    with timings.stage("summarize"):
        summary = summarize_mod.summarize(transcript.text, mapper, reducer, overlap=options.overlap)
    log(f"summarize: {summary.map_calls} map calls, {summary.reduce_calls} reduce calls")
    timings.seconds["total"] = round(time.perf_counter() - total, 3)
    calls = {  # inference calls per model: whisper once over the whole episode, spaCy once per document
        models.whisper.id: 1,
        models.spacy.id: len(speakers_mod.pieces(texts)),
        models.map.id: summary.map_calls,
    }
    calls[models.reduce.id] = calls.get(models.reduce.id, 0) + summary.reduce_calls

    return {
        "audio": {"path": str(audio_path), **audio.info()},
        "title": options.title,
        "description": options.description,
        "language": transcript.language,
        "transcript": transcript.text,
        "segments": [s.to_json() for s in transcript.segments],
        "speakers": [s.to_json() for s in people],
        "summary": summary.summary,
        "summary_stats": summary.stats(mapper, reducer),
        "profile": models.profile,
        "models": [ref.describe(calls[ref.id]) for ref in models.used()],
        "timings": timings.seconds,
    }
