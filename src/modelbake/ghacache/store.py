"""Cache entries on disk, with the Actions cache's rules: reserve, upload chunks, commit, then visible.

Layout under the root: `entries/<id>.bin` (the archive) and `entries/<id>.json` (key, version, scope, size),
`uploads/<id>.part` (an upload in progress). An upload is written to its `.part` file at the offsets the
chunks name and published only by a commit whose size matches the bytes received (a rename, then the
metadata file, so a lookup never sees a half-written archive). Entries survive a restart; reservations and
partial uploads do not (GitHub keeps them until eviction; nobody here needs that).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The `version` go-actions-cache sends with every lookup and reservation, whatever the key: sha256 of this
# constant (`version()` in cache.go). A lookup with any other version is a miss, as on GitHub.
GO_ACTIONS_CACHE_VERSION = hashlib.sha256(b"|go-actionscache-1.0").hexdigest()


class StoreError(Exception):
    """A request the cache service refuses; carries the HTTP status and GitHub's error `typeKey`."""

    def __init__(self, status: int, message: str, type_key: str = "ArtifactCacheException") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key


@dataclass(frozen=True)
class Entry:
    """A committed cache entry. `seq` orders commits (the newest prefix match wins)."""

    id: int
    key: str
    version: str
    scope: str
    size: int
    created: float
    seq: int


@dataclass
class _Reservation:
    id: int
    key: str
    version: str
    scope: str
    declared_size: int | None
    path: Path
    ranges: list[tuple[int, int]] = field(default_factory=list)  # [start, end) received


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class CacheStore:
    """Thread-safe entries and reservations under `root`; call open() before use."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._entries: dict[int, Entry] = {}
        self._reservations: dict[int, _Reservation] = {}
        self._next_id = 1
        self._next_seq = 1

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    def open(self) -> None:
        """Create the directories, drop uploads a previous run left, load committed entries."""
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        dropped = 0
        for stale in self.uploads_dir.glob("*.part"):
            dropped = max(dropped, int(stale.stem)) if stale.stem.isdigit() else dropped
            stale.unlink(missing_ok=True)
        entries: dict[int, Entry] = {}
        for meta in self.entries_dir.glob("*.json"):
            try:
                entry = Entry(**json.loads(meta.read_text()))
            except (ValueError, TypeError):
                continue  # not ours, or damaged: invisible rather than fatal
            if self.data_path(entry).is_file():
                entries[entry.id] = entry
        with self._lock:
            self._entries = entries
            self._reservations.clear()
            self._next_id = max(max(entries, default=0), dropped) + 1  # ids never repeat: no stale PATCH lands
            self._next_seq = max((e.seq for e in entries.values()), default=0) + 1

    def data_path(self, entry: Entry) -> Path:
        return self.entries_dir / f"{entry.id}.bin"

    # -- lookups --------------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Committed entries, oldest first."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.seq)

    def get(self, entry_id: int) -> Entry | None:
        with self._lock:
            return self._entries.get(entry_id)

    def lookup(self, keys: Sequence[str], version: str, scopes: Sequence[str]) -> Entry | None:
        """GitHub's search: per scope (own branch first, then the ones it may read), per key in the order
        given, an exact key match, else the newest entry whose key starts with it; only the same version."""
        with self._lock:
            candidates = [e for e in self._entries.values() if e.version == version]
        for scope in scopes:
            in_scope = [e for e in candidates if e.scope == scope]
            for key in keys:
                exact = [e for e in in_scope if e.key == key]
                prefixed = exact or [e for e in in_scope if e.key.startswith(key)]
                if prefixed:
                    return max(prefixed, key=lambda e: e.seq)
        return None

    # -- saving ---------------------------------------------------------------------------------------
    def reserve(self, key: str, version: str, scope: str, size: int | None = None) -> int:
        """A new cache id for key+version in `scope`; 409 AlreadyExists while that triple is taken."""
        if not key or "," in key or len(key) > 512:
            raise StoreError(400, f"invalid cache key {key!r}: 1-512 characters, no comma", "ArgumentException")
        if not version:
            raise StoreError(400, "version is required", "ArgumentNullException")
        with self._lock:
            taken = any(
                (r.key, r.version, r.scope) == (key, version, scope)
                for r in [*self._entries.values(), *self._reservations.values()]
            )
            if taken:
                raise StoreError(
                    409,
                    f"Cache already exists. Scope: {scope}, Key: {key}, Version: {version}",
                    "ArtifactCacheItemAlreadyExistsException",
                )
            cache_id = self._next_id
            self._next_id += 1
            path = self.uploads_dir / f"{cache_id}.part"
            path.touch()
            self._reservations[cache_id] = _Reservation(cache_id, key, version, scope, size, path)
        return cache_id

    def _reservation(self, cache_id: int, scope: str) -> _Reservation:
        with self._lock:
            res = self._reservations.get(cache_id)
            committed = cache_id in self._entries
        if res is None:
            if committed:
                raise StoreError(400, f"cache {cache_id} is already committed", "ArtifactCacheException")
            raise StoreError(404, f"no reserved cache with id {cache_id}", "ArtifactCacheNotFoundException")
        if res.scope != scope:
            raise StoreError(403, f"cache {cache_id} belongs to scope {res.scope}, not {scope}", "AccessDenied")
        return res

    def write_chunk(self, cache_id: int, scope: str, start: int, end: int, pieces: Iterable[bytes]) -> int:
        """Write one PATCH body at [start, end] (inclusive, as in Content-Range); return bytes written.

        Chunks arrive in parallel and in any order: each lands at its own offset with pwrite.
        """
        res = self._reservation(cache_id, scope)
        try:
            fd = os.open(res.path, os.O_WRONLY)
        except FileNotFoundError:  # committed between the check and here
            raise StoreError(400, f"cache {cache_id} is already committed", "ArtifactCacheException") from None
        pos = start
        try:
            for data in pieces:
                if pos + len(data) > end + 1:
                    raise StoreError(400, f"body longer than Content-Range bytes {start}-{end}", "ArgumentException")
                os.pwrite(fd, data, pos)
                pos += len(data)
        finally:
            os.close(fd)
        if pos != end + 1:
            raise StoreError(
                400, f"body of {pos - start} bytes for Content-Range bytes {start}-{end}", "ArgumentException"
            )
        with self._lock:
            res.ranges.append((start, end + 1))
        return pos - start

    def commit(self, cache_id: int, scope: str, size: int) -> Entry:
        """Publish the upload if exactly bytes [0, size) were received; the reservation stays on failure."""
        res = self._reservation(cache_id, scope)
        with self._lock:
            ranges = _merged(res.ranges)
        expected = [(0, size)] if size > 0 else []
        on_disk = res.path.stat().st_size
        if ranges != expected or on_disk != size:
            got = ", ".join(f"{a}-{b - 1}" for a, b in ranges) or "nothing"
            raise StoreError(
                400,
                f"Size of uploaded cache ({on_disk} bytes, ranges {got}) does not match provided size ({size}).",
                "ArtifactCacheSizeMismatchException",
            )
        # Under the lock (a rename and a small write): no moment where neither the reservation nor the entry
        # holds the key, which would let a second reservation of the same key through.
        with self._lock:
            if self._reservations.get(cache_id) is not res:
                raise StoreError(400, f"cache {cache_id} is already committed", "ArtifactCacheException")
            entry = Entry(cache_id, res.key, res.version, res.scope, size, time.time(), self._next_seq)
            os.replace(res.path, self.data_path(entry))
            meta = self.entries_dir / f"{cache_id}.json.tmp"
            meta.write_text(json.dumps(asdict(entry), sort_keys=True))
            os.replace(meta, self.entries_dir / f"{cache_id}.json")
            del self._reservations[cache_id]
            self._entries[cache_id] = entry
            self._next_seq += 1
        return entry
