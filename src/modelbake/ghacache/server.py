"""A local GitHub Actions cache service (the v1 `_apis/artifactcache` protocol) for tests and benchmarks.

Written by hand because nothing emulates it: GitHub runs the service only for its own runners (and now
serves only the v2 protocol there), no package ships a v1 server, and BuildKit 0.13's `type=gha` cache
(vendored `tonistiigi/go-actions-cache`) speaks only v1. So `--cache-to/--cache-from type=gha,url=...,token=...`
pointed at this server is the only way to exercise that cache path off GitHub. Built on the standard
library's `ThreadingHTTPServer`, like `modelbake.mirror` (with the scaffolding in `modelbake.httpserve`): no
dependency, one thread per connection, enough for the client's 4 parallel chunk uploads.

The protocol, as go-actions-cache uses it (paths under `<url>/_apis/artifactcache/`, every call with
`Authorization: Bearer <JWT>`):

- `GET cache?keys=K1,K2&version=V`: 204 on a miss; else 200 `{cacheKey, scope, archiveLocation, ...}`.
- `POST caches` `{key, version}`: reserve, 201 `{cacheId}`; 409 `...AlreadyExistsException` if taken.
- `PATCH caches/{id}` with `Content-Range: bytes a-b/*`: one chunk (chunked transfer encoding, 32 MiB,
  4 in parallel, any order).
- `POST caches/{id}` `{size}`: commit; the entry becomes visible.
- `GET <archiveLocation>`: the archive, no auth header (pre-signed on GitHub), `Range: bytes=N-` honoured.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from modelbake.ghacache.faults import Faults
from modelbake.ghacache.requestlog import CacheRequest, RequestLog
from modelbake.ghacache.store import CacheStore, Entry, StoreError
from modelbake.ghacache.token import DEFAULT_SCOPE, Claims, Scope, TokenError, bearer, make_token, parse_token
from modelbake.httpserve import (
    BackgroundServer,
    RangeNotSatisfiable,
    TrackedHandler,
    TrackingHTTPServer,
    serve_until_interrupted,
)

API_PREFIX = "/_apis/artifactcache/"
ARCHIVE_PREFIX = "/_archives/"
CHUNK = 1024 * 1024
MAX_JSON_BODY = 64 * 1024
_TYPE_NAMESPACE = "Microsoft.Azure.DevOps.PipelineCache.WebApi"  # GitHub's error `typeName`s live here
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\*|\d+)$")


class _BadRequest(Exception):
    """A malformed request: answered 400 with the message."""


class _Handler(TrackedHandler):
    server_version = "modelbake-ghacache"
    timeout = 120  # per socket read; idle keep-alive connections close after this
    quiet_errors = (OSError,)  # clients that hang up (cancelled builds, timed-out tests): no traceback
    server: TrackingHTTPServer[GhaCacheServer]

    _record: CacheRequest
    _body_pending = False

    # -- plumbing (the rest is TrackedHandler's) ------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        self._record.status = code
        self.server.service._log.append(self._record)
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        self._record = CacheRequest(self.command, self.path, 0)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._body_pending = chunked or int(self.headers.get("Content-Length") or 0) > 0
        cache = self.server.service
        if cache.faults.stall:
            cache._log.append(self._record)  # status 0: reached the server, never answered
            while cache.faults.stall and not self.server.stopping.is_set():
                self.server.stopping.wait(0.05)
            if self.server.stopping.is_set():
                self.close_connection = True
                return
            self._record = CacheRequest(self.command, self.path, 0)
        try:
            self._route()
        except StoreError as e:
            self._error(e.status, e.message, e.type_key)
        except TokenError as e:
            self._error(401, f"unauthorized: {e}", "UnauthorizedException", {"WWW-Authenticate": "Bearer"})
        except _BadRequest as e:
            self._error(400, str(e), "ArgumentException")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # one clear line to the client, never a traceback on the server's stderr
            if self._record.status == 0:
                self._error(500, f"cache emulator error: {type(e).__name__}: {e}", "InternalServerError")
            else:
                self.close_connection = True
        finally:
            if self._body_pending:
                self.close_connection = True  # the body was not read: the connection cannot be reused

    # -- bodies ---------------------------------------------------------------------------------------
    def _body(self) -> Iterator[bytes]:
        """The request body in pieces, decoding chunked transfer encoding (what the Go client sends for
        a chunk upload, whose length it does not know up front)."""
        rfile = self.rfile
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise ConnectionError("truncated chunked body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                yield from self._read_exactly(size)
                if rfile.readline(8).strip():
                    raise _BadRequest("chunk not followed by CRLF")
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))
        self._body_pending = False

    def _read_exactly(self, n: int) -> Iterator[bytes]:
        while n > 0:
            data = self.rfile.read(min(CHUNK, n))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            self._record.bytes_received += len(data)
            n -= len(data)
            yield data

    def _json_body(self) -> dict[str, Any]:
        data = bytearray()
        for piece in self._body():
            data += piece
            if len(data) > MAX_JSON_BODY:
                raise _BadRequest(f"JSON body larger than {MAX_JSON_BODY} bytes")
        try:
            body = json.loads(bytes(data) or b"{}")
        except ValueError as e:
            raise _BadRequest(f"body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise _BadRequest("body is not a JSON object")
        return body

    # -- responses ------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self._record.bytes_sent += len(data)
        self.wfile.write(data)

    def _no_content(self) -> None:
        self.send_response(204)
        self.end_headers()

    def _error(self, status: int, message: str, type_key: str, headers: dict[str, str] | None = None) -> None:
        """GitHub's error shape; the client surfaces `message` and matches `typeKey` on AlreadyExists."""
        body = {
            "$id": "1",
            "innerException": None,
            "message": message,
            "typeName": f"{_TYPE_NAMESPACE}.{type_key}, {_TYPE_NAMESPACE}",
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000,
        }
        self._json(status, body, headers)

    # -- routing --------------------------------------------------------------------------------------
    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith(ARCHIVE_PREFIX):
            return self._archive(path[len(ARCHIVE_PREFIX) :])
        at = path.find(API_PREFIX)
        if at < 0:  # any prefix is fine: ACTIONS_CACHE_URL on GitHub carries one
            if path == "/" and self.command in ("GET", "HEAD"):
                return self._json(200, {"service": "modelbake GitHub Actions cache emulator (v1)"})
            return self._error(404, f"unknown path {path}", "NotFoundException")
        claims = parse_token(bearer(self.headers.get("Authorization")))
        segs = path[at + len(API_PREFIX) :].strip("/").split("/")
        method = self.command
        if segs == ["cache"] and method == "GET":
            return self._lookup(claims, parse_qs(query))
        if segs == ["caches"] and method == "POST":
            return self._reserve(claims)
        if len(segs) == 2 and segs[0] == "caches" and method in ("PATCH", "POST"):
            try:
                cache_id = int(segs[1])
            except ValueError:
                raise _BadRequest(f"cache id {segs[1]!r} is not a number") from None
            return self._upload(claims, cache_id) if method == "PATCH" else self._commit(claims, cache_id)
        return self._error(404, f"no such endpoint: {method} {path}", "NotFoundException")

    def _write_scope(self, claims: Claims) -> str:
        scope = claims.write_scope
        if scope is None:
            raise StoreError(403, "the token grants no scope with write permission", "AccessDenied")
        return scope

    def _lookup(self, claims: Claims, params: dict[str, list[str]]) -> None:
        keys = [k for k in ",".join(params.get("keys", [])).split(",") if k]
        version = (params.get("version") or [""])[0]
        if not keys or not version:
            raise _BadRequest("query parameters `keys` and `version` are required")
        entry = self.server.service.store.lookup(keys, version, claims.read_scopes)
        if entry is None:
            return self._no_content()
        self._json(200, self.server.service._describe(entry, self._base_url()))

    def _reserve(self, claims: Claims) -> None:
        body = self._json_body()
        key, version, size = body.get("key"), body.get("version"), body.get("cacheSize")
        if not isinstance(key, str) or not isinstance(version, str):
            raise _BadRequest("body needs string fields `key` and `version`")
        if size is not None and not isinstance(size, int):
            raise _BadRequest("`cacheSize` must be a number")
        cache_id = self.server.service.store.reserve(key, version, self._write_scope(claims), size)
        self._json(201, {"cacheId": cache_id})

    def _upload(self, claims: Claims, cache_id: int) -> None:
        header = self.headers.get("Content-Range", "").strip()
        match = _CONTENT_RANGE.match(header)
        if match is None or int(match[2]) < int(match[1]):
            raise _BadRequest(f"Content-Range {header!r}: want `bytes <first>-<last>/*`")
        cache = self.server.service
        cache.store.write_chunk(cache_id, self._write_scope(claims), int(match[1]), int(match[2]), self._counted())
        self._no_content()

    def _counted(self) -> Iterable[bytes]:
        for piece in self._body():
            self.server.service._add(uploaded=len(piece))
            yield piece

    def _commit(self, claims: Claims, cache_id: int) -> None:
        size = self._json_body().get("size")
        if not isinstance(size, int) or size < 0:
            raise _BadRequest("body needs a non-negative integer `size`")
        self.server.service.store.commit(cache_id, self._write_scope(claims), size)
        self._no_content()

    def _archive(self, rest: str) -> None:
        """The archive of a committed entry; like GitHub's pre-signed blob URL it needs no Authorization."""
        if self.command not in ("GET", "HEAD"):
            return self._error(405, f"{self.command} not allowed on archives", "MethodNotAllowed")
        cache = self.server.service
        entry_id = rest.split("/", 1)[0]
        entry = cache.store.get(int(entry_id)) if entry_id.isdigit() else None
        if entry is None:
            return self._error(404, f"no committed cache entry {entry_id}", "NotFoundException")
        with open(cache.store.data_path(entry), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                span = self._file_headers(size)
            except RangeNotSatisfiable as e:
                unsatisfiable = {"Content-Range": f"bytes */{size}"}
                return self._error(416, f"range {e} outside {size} bytes", "RangeNotSatisfiable", unsatisfiable)
            if span is None:
                return  # HEAD
            start, end = span
            fh.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = fh.read(min(CHUNK, remaining))
                if not data:
                    self.close_connection = True  # short body: the client fails loudly
                    break
                cache._add(downloaded=len(data))
                self._write(data)
                remaining -= len(data)


class GhaCacheServer(BackgroundServer):
    """The emulator on a background daemon thread (start/stop/wait); a context manager for tests.

    `url` (after start()) and `token` are what `type=gha,url=...,token=...` take (`cache_to()`/`cache_from()`
    spell them out); `faults.stall = True` makes it stop answering; `stop()` makes it down (a closed port).
    """

    handler = _Handler
    label = "gha cache emulator"

    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, scopes: Iterable[str | Scope] = (DEFAULT_SCOPE,)
    ) -> None:
        super().__init__(host, port)
        self.root = Path(root)
        self.faults = Faults()
        self.store = CacheStore(self.root)
        self.token = make_token(scopes)
        self._log = RequestLog()
        self._counters_lock = threading.Lock()
        self._uploaded = 0
        self._downloaded = 0

    def _prepare(self) -> None:
        """Open the store (creating `root`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.store.open()

    # -- addresses and tokens -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The cache URL (ACTIONS_CACHE_URL's form, trailing slash included)."""
        return f"{super().url}/"

    def make_token(self, scopes: Iterable[str | Scope | tuple[str, int]]) -> str:
        """Another token, e.g. a pull request's: `[("refs/heads/main", 1), "refs/pull/7/merge"]`."""
        return make_token(scopes)

    def cache_to(self, scope: str = "buildkit", mode: str = "max", token: str | None = None) -> str:
        """The `--cache-to` value for this server."""
        return f"type=gha,url={self.url},token={token or self.token},scope={scope},mode={mode}"

    def cache_from(self, scope: str = "buildkit", token: str | None = None) -> str:
        """The `--cache-from` value for this server."""
        return f"type=gha,url={self.url},token={token or self.token},scope={scope}"

    # -- what happened --------------------------------------------------------------------------------
    def _add(self, uploaded: int = 0, downloaded: int = 0) -> None:
        with self._counters_lock:
            self._uploaded += uploaded
            self._downloaded += downloaded

    @property
    def bytes_uploaded(self) -> int:
        """PATCH body bytes received since start (or reset_counters())."""
        return self._uploaded

    @property
    def bytes_downloaded(self) -> int:
        """Archive body bytes sent since start (or reset_counters())."""
        return self._downloaded

    def reset_counters(self) -> None:
        with self._counters_lock:
            self._uploaded = self._downloaded = 0

    @property
    def entries(self) -> list[Entry]:
        """Committed entries, oldest first."""
        return self.store.entries()

    @property
    def entry_count(self) -> int:
        return len(self.store.entries())

    @property
    def requests(self) -> list[CacheRequest]:
        """A copy of the request log, oldest first."""
        return self._log.snapshot()

    def clear_requests(self) -> None:
        """Empty the request log (the byte counters are kept: see reset_counters())."""
        self._log.clear()

    def _describe(self, entry: Entry, base_url: str) -> dict[str, Any]:
        return {
            "scope": entry.scope,
            "cacheKey": entry.key,
            "cacheVersion": entry.version,
            "creationTime": datetime.fromtimestamp(entry.created, UTC).isoformat().replace("+00:00", "Z"),
            "archiveLocation": f"{base_url}{ARCHIVE_PREFIX}{entry.id}",
        }


def serve_forever(root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
    """`modelbake gha-cache serve`: one line `url=... token=...` on stdout, then serve until Ctrl-C/SIGTERM."""
    server = GhaCacheServer(root, host, port).start()
    print(f"url={server.url} token={server.token}", flush=True)
    serve_until_interrupted(server)
