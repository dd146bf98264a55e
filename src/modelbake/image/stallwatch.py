"""Spot a cache download that makes no progress, from buildx's `--progress rawjson` stream.

BuildKit's cache clients have no HTTP timeout: go-actions-cache's twirp calls, the Azure blob client it
downloads with (retries, but no per-try timeout) and the registry client all wait forever on a server that
accepted the connection and went quiet. buildx offers no option for it either, so build.py watches the
progress stream and stops a build whose cache transfer is stuck, with one error line saying what stalled.

Two signs, both seen on dockerd 28.5 / BuildKit 0.2x against a stalled cache server:
- the vertex `importing cache manifest from ...` started and did not complete (the index download);
- a status whose id is a blob digest (`sha256:...`), on a step that came from the cache, whose `current`
  bytes stopped moving while BuildKit keeps reporting it (a layer blob pulled lazily from the cache).

A step that runs for long (a `RUN` downloading a model) is never a stall: only cache transfers are watched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Transfer:
    name: str
    current: int
    total: int
    since: float  # when `current` last moved


@dataclass
class TransferWatch:
    """Feed it the rawjson stream's documents (rawjson.decode_line); `stalled()` says which cache transfer made no
    progress for `limit` seconds."""

    limit: float
    clock: Callable[[], float] = time.monotonic
    _cached: set[str] = field(default_factory=set)
    _imports: dict[str, tuple[str, float]] = field(default_factory=dict)  # vertex -> (name, started)
    _transfers: dict[tuple[str, str], _Transfer] = field(default_factory=dict)

    def feed(self, doc: dict[str, Any]) -> None:
        now = self.clock()
        for vertex in doc.get("vertexes") or []:
            digest, name = vertex.get("digest", ""), vertex.get("name", "")
            if vertex.get("cached"):
                self._cached.add(digest)
            if name.startswith("importing cache manifest"):
                if vertex.get("completed") or vertex.get("error"):
                    self._imports.pop(digest, None)
                elif vertex.get("started"):
                    self._imports.setdefault(digest, (name, now))
        for status in doc.get("statuses") or []:
            key = (status.get("vertex", ""), status.get("id", ""))
            if not key[1].startswith("sha256:") or key[0] not in self._cached:
                continue
            if status.get("completed"):
                self._transfers.pop(key, None)
                continue
            current, total = int(status.get("current") or 0), int(status.get("total") or 0)
            seen = self._transfers.get(key)
            if seen is None or current != seen.current:
                self._transfers[key] = _Transfer(key[1], current, total, now)

    def stalled(self) -> str | None:
        """What is stuck, in words, or None."""
        now = self.clock()
        for name, started in self._imports.values():
            if now - started > self.limit:
                return f"{name!r} made no progress for {now - started:.0f} s"
        for transfer in self._transfers.values():
            if now - transfer.since > self.limit:
                return (
                    f"the download of blob {transfer.name[:19]} from the cache stopped at {transfer.current:,} of "
                    f"{transfer.total:,} bytes for {now - transfer.since:.0f} s"
                )
        return None
