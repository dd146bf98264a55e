"""The mirror's request log: what tests assert on ("no second download", "resumed with Range").

A record is appended when the status line is sent and `bytes_sent` is counted before each chunk goes out, so
a client that has read a whole response always finds its record complete.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import time as _now
from typing import TextIO
from urllib.parse import unquote

from modelbake.errors import write_error


@dataclass
class RequestRecord:
    """One request: `path` is the raw request target (with query); `range` the Range header, if any."""

    method: str
    path: str
    status: int
    bytes_sent: int = 0
    range: str | None = None
    time: float = field(default_factory=_now)

    def matches(self, substring: str) -> bool:
        return substring in self.path or substring in unquote(self.path)


class RequestLog:
    """Thread-safe list of records, optionally mirrored to a JSON-lines file."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._log_path = log_path
        self._file: TextIO | None = None

    def open(self) -> None:
        """Open the log file for appending; a path that cannot be written is a DestinationError naming it."""
        if self._log_path is not None and self._file is None:
            try:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self._log_path, "a", encoding="utf-8")  # closed in close()
            except OSError as exc:
                raise write_error(exc, self._log_path) from exc

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def finish(self, record: RequestRecord) -> None:
        """Write the finished record to the log file (the in-memory list already has it)."""
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(asdict(record), sort_keys=True) + "\n")
                self._file.flush()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def matching(self, substring: str) -> list[RequestRecord]:
        return [r for r in self.snapshot() if r.matches(substring)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
