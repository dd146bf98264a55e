"""Progress without rich: the protocol fetchers report to, a silent one, and one plain line per model.

Why apart from `progress.py`: the Docker fetch step reports with `LineProgress` and must not import rich or the
CLI (an edit to either would re-run every model step); see FETCH_SOURCES in dockerfile.py.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def start(self, model_id: str, total_bytes: int | None) -> None: ...
    def advance(self, model_id: str, nbytes: int) -> None: ...
    def finish(self, model_id: str, status: str) -> None: ...


class NullProgress:
    def start(self, model_id: str, total_bytes: int | None) -> None:
        pass

    def advance(self, model_id: str, nbytes: int) -> None:
        pass

    def finish(self, model_id: str, status: str) -> None:
        pass


class LineProgress:
    """One line per model start and end: readable in CI logs and `docker build` output."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.started: dict[str, float] = {}
        self.bytes: dict[str, int] = {}
        self.lock = threading.Lock()

    def start(self, model_id: str, total_bytes: int | None) -> None:
        with self.lock:
            self.started[model_id] = time.monotonic()
            self.bytes[model_id] = 0
            size = f" ({total_bytes / 1e6:.1f} MB)" if total_bytes else ""
            print(f"fetch {model_id}{size}", file=self.stream, flush=True)

    def advance(self, model_id: str, nbytes: int) -> None:
        with self.lock:
            self.bytes[model_id] = self.bytes.get(model_id, 0) + nbytes

    def finish(self, model_id: str, status: str) -> None:
        with self.lock:
            took = time.monotonic() - self.started.get(model_id, time.monotonic())
            moved = self.bytes.get(model_id, 0)
            print(f"{status} {model_id} ({moved / 1e6:.1f} MB in {took:.1f}s)", file=self.stream, flush=True)
