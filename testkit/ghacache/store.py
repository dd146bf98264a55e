"""Cache entries on disk, with the Actions cache v2's rules: create, upload the blob, finalize, then visible.

Layout under the root: `entries/<id>.bin` (the blob) and `entries/<id>.json` (key, version, scope, size);
`uploads/<id>.part` (a blob put or assembled from its block list, not yet finalized) and
`uploads/<id>.blocks/<block id hex>` (staged blocks). A blob becomes an entry only when
`FinalizeCacheEntryUpload` names its key and a size equal to the blob's (a rename, then the metadata file, so
a lookup never sees a half-written blob). Entries survive a restart; reservations and uploads do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The `version` go-actions-cache sends with every lookup and reservation, whatever the key: sha256 of this
# constant (`version()` in cache.go). A lookup with any other version is a miss, as on GitHub.
GO_ACTIONS_CACHE_VERSION = hashlib.sha256(b"|go-actionscache-1.0").hexdigest()
MAX_KEY_LENGTH = 512


class StoreError(Exception):
    """A request the service refuses; `code` is the twirp error code (or the Azure error code for blobs)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Entry:
    """A finalized cache entry. `seq` orders commits (the newest prefix match wins)."""

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
    created: float
    blob_ready: bool = False  # a Put Blob or Put Block List has completed

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.key, self.version, self.scope)


class CacheStore:
    """Thread-safe entries, reservations and their blobs under `root`; call open() before use."""

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
        """Create the directories, drop uploads a previous run left, load finalized entries."""
        self.entries_dir.mkdir(parents=True, exist_ok=True)
        if self.uploads_dir.exists():
            shutil.rmtree(self.uploads_dir)
        self.uploads_dir.mkdir(parents=True)
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
            self._next_id = max(entries, default=0) + 1
            self._next_seq = max((e.seq for e in entries.values()), default=0) + 1

    def data_path(self, entry: Entry) -> Path:
        return self.entries_dir / f"{entry.id}.bin"

    def _part(self, upload_id: int) -> Path:
        return self.uploads_dir / f"{upload_id}.part"

    def _blocks(self, upload_id: int) -> Path:
        return self.uploads_dir / f"{upload_id}.blocks"

    # -- lookups --------------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        """Finalized entries, oldest first."""
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

    # -- CreateCacheEntry / FinalizeCacheEntryUpload --------------------------------------------------
    def reserve(self, key: str, version: str, scope: str) -> int:
        """A new upload for key+version in `scope`; `already_exists` while that triple is taken."""
        if not key or "," in key or len(key) > MAX_KEY_LENGTH:
            raise StoreError("invalid_argument", f"invalid cache key {key!r}: 1-{MAX_KEY_LENGTH} characters, no comma")
        if not version:
            raise StoreError("invalid_argument", "version is required")
        with self._lock:
            taken = any((e.key, e.version, e.scope) == (key, version, scope) for e in self._entries.values()) or any(
                r.triple == (key, version, scope) for r in self._reservations.values()
            )
            if taken:
                raise StoreError("already_exists", "cache entry with the same key, version, and scope already exists")
            upload_id = self._next_id
            self._next_id += 1
            self._reservations[upload_id] = _Reservation(upload_id, key, version, scope, time.time())
        return upload_id

    def finalize(self, key: str, version: str, scope: str, size: int) -> Entry:
        """Publish the reservation of key+version+scope when its blob holds exactly `size` bytes."""
        with self._lock:
            res = next((r for r in self._reservations.values() if r.triple == (key, version, scope)), None)
        if res is None:
            raise StoreError("not_found", f"no cache entry reserved for key {key!r} in scope {scope}")
        part = self._part(res.id)
        if not res.blob_ready or not part.is_file():
            raise StoreError("failed_precondition", f"cache entry {key!r}: no blob was uploaded")
        on_disk = part.stat().st_size
        if on_disk != size:
            raise StoreError(
                "invalid_argument", f"cache entry {key!r}: size_bytes {size} does not match the uploaded {on_disk}"
            )
        with self._lock:
            if self._reservations.get(res.id) is not res:
                raise StoreError("not_found", f"cache entry {key!r} was finalized already")
            entry = Entry(res.id, res.key, res.version, res.scope, size, time.time(), self._next_seq)
            os.replace(part, self.data_path(entry))
            meta = self.entries_dir / f"{res.id}.json.tmp"
            meta.write_text(json.dumps(asdict(entry), sort_keys=True))
            os.replace(meta, self.entries_dir / f"{res.id}.json")
            del self._reservations[res.id]
            self._entries[res.id] = entry
            self._next_seq += 1
        shutil.rmtree(self._blocks(res.id), ignore_errors=True)
        return entry

    # -- the blob side (Azure Block Blob operations on an upload) ----------------------------------------
    def _open_upload(self, upload_id: int) -> _Reservation:
        with self._lock:
            res = self._reservations.get(upload_id)
        if res is None:
            raise StoreError("BlobNotFound", f"no upload {upload_id} in progress (finalized, or never created)")
        return res

    def put_blob(self, upload_id: int, pieces: Iterable[bytes]) -> int:
        """Put Blob: the whole blob in one request (what the Azure client does for a blob under one block)."""
        res = self._open_upload(upload_id)
        size = _write_atomically(self._part(upload_id), pieces)
        res.blob_ready = True
        return size

    def stage_block(self, upload_id: int, block_id: str, pieces: Iterable[bytes]) -> int:
        """Put Block: one uncommitted block, named by its (base64) id."""
        self._open_upload(upload_id)
        blocks = self._blocks(upload_id)
        blocks.mkdir(exist_ok=True)
        return _write_atomically(blocks / _block_file(block_id), pieces)

    def commit_block_list(self, upload_id: int, block_ids: Sequence[str]) -> int:
        """Put Block List: the blob becomes these staged blocks, in this order."""
        res = self._open_upload(upload_id)
        blocks = self._blocks(upload_id)
        paths = [blocks / _block_file(b) for b in block_ids]
        missing = [b for b, p in zip(block_ids, paths, strict=True) if not p.is_file()]
        if missing:
            raise StoreError("InvalidBlockList", f"block {missing[0]!r} was never staged")

        def pieces() -> Iterable[bytes]:
            for path in paths:
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        yield chunk

        size = _write_atomically(self._part(upload_id), pieces())
        res.blob_ready = True
        return size

    def upload_size(self, upload_id: int) -> int | None:
        part = self._part(upload_id)
        return part.stat().st_size if part.is_file() else None


def _block_file(block_id: str) -> str:
    """A block id is base64 (any bytes): the file takes its hex, safe on any file system."""
    return block_id.encode().hex()


def _write_atomically(path: Path, pieces: Iterable[bytes]) -> int:
    """Temp file + rename: a request cut off mid-body leaves the previous state, never half a blob."""
    tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
    size = 0
    try:
        with open(tmp, "wb") as fh:
            for data in pieces:
                fh.write(data)
                size += len(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return size
