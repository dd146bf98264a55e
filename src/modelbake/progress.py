"""Progress reporting for the CLI: rich bars on a TTY, plain lines otherwise. Only the CLI creates one.

The protocol and the plain reporters live in `lineprogress.py`, which the Docker fetch step imports without
rich; they are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lineprogress import LineProgress, NullProgress, Progress

if TYPE_CHECKING:
    from rich.progress import TaskID

__all__ = ["LineProgress", "NullProgress", "Progress", "RichProgress"]


class RichProgress:
    """Bars per model with bytes and speed (rich.progress)."""

    def __init__(self) -> None:
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
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
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
