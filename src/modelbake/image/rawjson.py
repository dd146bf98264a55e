"""buildx's `--progress rawjson` stream: the steps of a build (built or cached, times, errors, logs).

Results come from this stream, never from scraping plain logs. With `docker buildx bake`, every step's name
carries its target: `[app fetch-x 1/1] RUN ...`, `[models] exporting to image`; `Step.target` and
`Step.stage` read both forms.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_STEP_NUMBER = re.compile(r"^\d+/\d+$")


@dataclass
class Step:
    """One BuildKit vertex: a Dockerfile instruction or an internal step."""

    digest: str
    name: str
    cached: bool = False
    started: datetime | None = None
    completed: datetime | None = None
    error: str | None = None
    logs: list[str] = field(default_factory=list)
    transferred: dict[str, int] = field(default_factory=dict)  # status id (e.g. a layer) -> bytes, when known

    @property
    def seconds(self) -> float:
        if self.started and self.completed:
            return max(0.0, (self.completed - self.started).total_seconds())
        return 0.0

    def _bracket(self) -> list[str]:
        if self.name.startswith("[") and "]" in self.name:
            return self.name[1 : self.name.index("]")].split()
        return []

    @property
    def stage(self) -> str | None:
        """`[fetch-whisper-tiny 1/1] RUN ...` (a build) or `[models fetch-whisper-tiny 1/1] RUN ...` (bake)
        -> `fetch-whisper-tiny`; None for internal steps and exports."""
        inside = self._bracket()
        if len(inside) >= 2 and _STEP_NUMBER.match(inside[-1]):
            return inside[-2]
        return None

    @property
    def target(self) -> str | None:
        """The bake target a step belongs to (`[app ...]`, `[app] exporting to image`), or None."""
        inside = self._bracket()
        if len(inside) == 3 and _STEP_NUMBER.match(inside[-1]):
            return inside[0]
        if len(inside) == 1 and not _STEP_NUMBER.match(inside[0]) and inside[0] != "internal":
            return inside[0]
        if len(inside) == 2 and inside[1] == "internal":
            return inside[0]
        return None


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # RFC 3339 with nanoseconds: trim to microseconds for fromisoformat.
    head, _, frac = value.rstrip("Z").partition(".")
    frac = (frac[:6]).ljust(6, "0") if frac else "000000"
    try:
        return datetime.fromisoformat(f"{head}.{frac}+00:00")
    except ValueError:
        return None


def rawjson_documents(text: str) -> tuple[list[dict[str, Any]], str]:
    """`--progress rawjson` output split into its stream of JSON objects and the text after it (buildx's
    own error lines). Written by hand: the stream has no separators, so json.loads cannot read it whole."""
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "{":
            break
        try:
            doc, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            break
        docs.append(doc)
    return docs, text[i:]


def decode_line(line: str) -> dict[str, Any] | None:
    """One line of the stream as it comes (buildx writes one JSON document per line), or None for other text."""
    docs, _ = rawjson_documents(line)
    return docs[0] if len(docs) == 1 else None


def parse_rawjson(text: str) -> tuple[list[Step], list[str]]:
    """Steps from `--progress rawjson` output (a stream of JSON objects); the non-JSON lines after it.

    A vertex two bake targets share (the models target's fetch steps, also in the app's graph) comes under
    one digest with each target's name, in whichever order the solves report it: it is a step of each
    target, so a step is keyed by digest and name, and a status or log line (by digest) goes to all of them.
    """
    steps: dict[tuple[str, str], Step] = {}
    by_digest: dict[str, list[Step]] = {}
    docs, tail = rawjson_documents(text)
    for doc in docs:
        for v in doc.get("vertexes") or []:
            digest, name = v["digest"], v.get("name", "")
            if name or digest not in by_digest:
                key = (digest, name)
                if key not in steps:
                    steps[key] = Step(digest=digest, name=name)
                    by_digest.setdefault(digest, []).append(steps[key])
                named = [steps[key]]
            else:  # an update without a name: it is about every target's copy of the vertex
                named = by_digest[digest]
            for step in named:
                step.cached = step.cached or bool(v.get("cached"))
                step.started = parse_time(v.get("started")) or step.started
                step.completed = parse_time(v.get("completed")) or step.completed
                if v.get("error"):
                    step.error = v["error"]
        for status in doc.get("statuses") or []:
            total = status.get("total") or status.get("current")
            if status.get("completed") and total:
                for step in by_digest.get(status.get("vertex", ""), []):
                    step.transferred[status.get("id", "")] = int(total)
        for log in doc.get("logs") or []:
            if log.get("data"):
                data = base64.b64decode(log["data"]).decode("utf-8", "replace")
                for step in by_digest.get(log.get("vertex", ""), []):
                    step.logs.extend(data.splitlines())
    rest = [line for line in tail.splitlines() if line.strip()]
    return list(steps.values()), rest
