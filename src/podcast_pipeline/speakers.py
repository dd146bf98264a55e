"""People named in an episode: spaCy PERSON entities from title, description and transcript, merged and counted."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

MAX_PIECE_CHARS = 50_000  # spaCy refuses texts over nlp.max_length (1M chars); long transcripts go in pieces


@dataclass
class Speaker:
    name: str
    count: int
    sources: list[str] = field(default_factory=list)  # which of title/description/transcript named them

    def to_json(self) -> dict:
        return {"name": self.name, "count": self.count, "sources": self.sources}


def load_spacy(name: str):
    import importlib

    import spacy

    importlib.invalidate_caches()  # the --target dir may have been put on sys.path after startup
    return spacy.load(name)


def normalize(name: str) -> str:
    """Surface form cleaned of spacing, surrounding punctuation and a possessive 's."""
    name = " ".join(name.split())
    name = re.sub(r"(?:'s|’s)$", "", name)
    return name.strip(" \t.,;:!?\"'()[]{}-–—")


def split_text(text: str, limit: int = MAX_PIECE_CHARS) -> list[str]:
    """Pieces of at most `limit` chars, cut at whitespace (after a sentence end when there is one)."""
    pieces = []
    while len(text) > limit:
        window = text[:limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
        cut = cut + 1 if cut > limit // 2 else window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip()
    if text.strip():
        pieces.append(text)
    return pieces


def pieces(texts: dict[str, str]) -> list[tuple[str, str]]:
    """(source, piece) of every non-empty text: the documents spaCy runs on."""
    return [(source, piece) for source, text in texts.items() if text for piece in split_text(text)]


def person_mentions(nlp, texts: dict[str, str]) -> list[tuple[str, str]]:
    """(source, surface form) of every PERSON entity, in order."""
    jobs = pieces(texts)
    mentions = []
    for (source, _), doc in zip(jobs, nlp.pipe(piece for _, piece in jobs), strict=True):
        for ent in doc.ents:
            if ent.label_ == "PERSON":
                name = normalize(ent.text)
                if name:
                    mentions.append((source, name))
    return mentions


def merge(mentions: list[tuple[str, str]]) -> list[Speaker]:
    """Merge mentions case-insensitively, then fold a lone first or last name into the one full name it belongs to.

    The displayed name is the most frequent full-name spelling (first seen on ties). Sorted by count, then name.
    """
    groups: dict[str, list[tuple[str, str]]] = {}
    for source, name in mentions:
        groups.setdefault(name.casefold(), []).append((source, name))
    full = [key for key in groups if " " in key]
    for key in [k for k in groups if " " not in k]:
        owners = [f for f in full if key in f.split()]
        if len(owners) == 1:  # "Smith" with only "Alice Smith" around; ambiguous names stay apart
            groups[owners[0]].extend(groups.pop(key))
    speakers = []
    for items in groups.values():
        spellings = Counter(name for _, name in items)
        order = [name for _, name in items]
        best = max(spellings, key=lambda n: (" " in n, spellings[n], -order.index(n)))
        sources = list(dict.fromkeys(source for source, _ in items))
        speakers.append(Speaker(name=best, count=len(items), sources=sources))
    speakers.sort(key=lambda s: (-s.count, s.name.casefold()))
    return speakers


def episode_texts(title: str = "", description: str = "", transcript: str = "") -> dict[str, str]:
    return {"title": title, "description": description, "transcript": transcript}


def find_speakers(nlp, title: str = "", description: str = "", transcript: str = "") -> list[Speaker]:
    return merge(person_mentions(nlp, episode_texts(title, description, transcript)))
