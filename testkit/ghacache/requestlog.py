"""What clients asked the cache emulator: tests assert on it ("the rebuild downloaded the layer blob")."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from time import time as _now


@dataclass
class CacheRequest:
    """One request. `status` 0 means never answered (stalled, or reset); bytes are bodies only (no headers);
    `key` is the cache key it is about (a twirp call's `key`, a download's entry), empty when none; `fault`
    names the fault that answered it (`testkit.ghacache.faults`: "refused", "busy", "reset", "throttled",
    "expired"), empty for a normal answer."""

    method: str
    path: str
    status: int
    bytes_received: int = 0
    bytes_sent: int = 0
    time: float = field(default_factory=_now)
    key: str = ""
    fault: str = ""


class RequestLog:
    """Thread-safe list of records, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CacheRequest] = []

    def append(self, record: CacheRequest) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[CacheRequest]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
