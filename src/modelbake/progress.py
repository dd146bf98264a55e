"""Progress reporting: rich bars on a TTY, plain lines otherwise. Only the CLI creates one."""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol


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

    def __init__(self, stream=None):
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


class RichProgress:
    """Bars per model with bytes and speed (rich.progress)."""

    def __init__(self):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as _Progress

        self._progress = _Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def start(self, model_id: str, total_bytes: int | None) -> None:
        self.tasks[model_id] = self._progress.add_task(model_id, total=total_bytes)

    def advance(self, model_id: str, nbytes: int) -> None:
        if model_id in self.tasks:
            self._progress.advance(self.tasks[model_id], nbytes)

    def finish(self, model_id: str, status: str) -> None:
        if model_id in self.tasks:
            task = self.tasks[model_id]
            self._progress.update(task, description=f"{model_id} [{status}]")
            total = self._progress.tasks[task].total
            if total:
                self._progress.update(task, completed=total)
