"""A local GitHub Actions cache service (the v1 `_apis/artifactcache` protocol) for tests and benchmarks.

Written by hand because nothing emulates it: GitHub runs the service only for its own runners (and now
serves only the v2 protocol there), no package ships a v1 server, and BuildKit 0.13's `type=gha` cache
(vendored `tonistiigi/go-actions-cache`) speaks only v1. So `--cache-to/--cache-from type=gha,url=...,token=...`
pointed at this server is the only way to exercise that cache path off GitHub. Built on the standard
library's `ThreadingHTTPServer`, like `modelbake.mirror`: no dependency, one thread per connection, enough
for the client's 4 parallel chunk uploads.

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
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from modelbake.errors import ModelbakeError
from modelbake.ghacache.faults import Faults
from modelbake.ghacache.requestlog import CacheRequest, RequestLog
from modelbake.ghacache.store import CacheStore, Entry, StoreError
from modelbake.ghacache.token import DEFAULT_SCOPE, Claims, Scope, TokenError, bearer, make_token, parse_token
from modelbake.mirror.server import RangeNotSatisfiable, parse_range

API_PREFIX = "/_apis/artifactcache/"
ARCHIVE_PREFIX = "/_archives/"
CHUNK = 1024 * 1024
MAX_JSON_BODY = 64 * 1024
_TYPE_NAMESPACE = "Microsoft.Azure.DevOps.PipelineCache.WebApi"  # GitHub's error `typeName`s live here
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\*|\d+)$")


class _BadRequest(Exception):
    """A malformed request: answered 400 with the message."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler never keeps the process (or stop()) waiting
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], cache: GhaCacheServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.cache = cache
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """accept(), keeping the listening socket's class: pytest-socket swaps `socket.socket` during tests,
        and a plain accept() then raises a non-OSError that ends `serve_forever` for good (see the mirror)."""
        listener = self.socket
        fd, addr = listener._accept()  # type: ignore[attr-defined]
        conn = type(listener)(listener.family, listener.type, listener.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and listener.gettimeout():
            conn.setblocking(True)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (cancelled builds, timed-out tests) are routine: no traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | OSError):
            return
        super().handle_error(request, client_address)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def close_connections(self) -> None:
        """Wake handler threads blocked on their sockets (keep-alive, stalls), so stop() returns at once."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the Go client pools connections
    server_version = "modelbake-ghacache"
    timeout = 120  # per socket read; idle keep-alive connections close after this
    server: _HTTPServer

    _record: CacheRequest
    _body_pending = False

    # -- plumbing -------------------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: `GhaCacheServer.requests` replaces stderr chatter."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self._record.status = code
        self.server.cache._log.append(self._record)
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        self._record = CacheRequest(self.command, self.path, 0)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._body_pending = chunked or int(self.headers.get("Content-Length") or 0) > 0
        cache = self.server.cache
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

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self._write(data)

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
        entry = self.server.cache.store.lookup(keys, version, claims.read_scopes)
        if entry is None:
            return self._no_content()
        self._json(200, self.server.cache._describe(entry, self._base_url()))

    def _reserve(self, claims: Claims) -> None:
        body = self._json_body()
        key, version, size = body.get("key"), body.get("version"), body.get("cacheSize")
        if not isinstance(key, str) or not isinstance(version, str):
            raise _BadRequest("body needs string fields `key` and `version`")
        if size is not None and not isinstance(size, int):
            raise _BadRequest("`cacheSize` must be a number")
        cache_id = self.server.cache.store.reserve(key, version, self._write_scope(claims), size)
        self._json(201, {"cacheId": cache_id})

    def _upload(self, claims: Claims, cache_id: int) -> None:
        header = self.headers.get("Content-Range", "").strip()
        match = _CONTENT_RANGE.match(header)
        if match is None or int(match[2]) < int(match[1]):
            raise _BadRequest(f"Content-Range {header!r}: want `bytes <first>-<last>/*`")
        cache = self.server.cache
        cache.store.write_chunk(cache_id, self._write_scope(claims), int(match[1]), int(match[2]), self._counted())
        self._no_content()

    def _counted(self) -> Iterable[bytes]:
        for piece in self._body():
            self.server.cache._add(uploaded=len(piece))
            yield piece

    def _commit(self, claims: Claims, cache_id: int) -> None:
        size = self._json_body().get("size")
        if not isinstance(size, int) or size < 0:
            raise _BadRequest("body needs a non-negative integer `size`")
        self.server.cache.store.commit(cache_id, self._write_scope(claims), size)
        self._no_content()

    def _base_url(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _archive(self, rest: str) -> None:
        """The archive of a committed entry; like GitHub's pre-signed blob URL it needs no Authorization."""
        if self.command not in ("GET", "HEAD"):
            return self._error(405, f"{self.command} not allowed on archives", "MethodNotAllowed")
        cache = self.server.cache
        entry_id = rest.split("/", 1)[0]
        entry = cache.store.get(int(entry_id)) if entry_id.isdigit() else None
        if entry is None:
            return self._error(404, f"no committed cache entry {entry_id}", "NotFoundException")
        with open(cache.store.data_path(entry), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            rng = None
            header = self.headers.get("Range")
            if header and self.command == "GET":
                try:
                    rng = parse_range(header, size)
                except RangeNotSatisfiable:
                    unsatisfiable = {"Content-Range": f"bytes */{size}"}
                    return self._error(
                        416, f"range {header} outside {size} bytes", "RangeNotSatisfiable", unsatisfiable
                    )
            start, end = rng if rng is not None else (0, size - 1)
            self.send_response(206 if rng is not None else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            if rng is not None:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
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


class GhaCacheServer:
    """The emulator on a background daemon thread; a context manager for tests.

    `url` (after start()) and `token` are what `type=gha,url=...,token=...` take (`cache_to()`/`cache_from()`
    spell them out); `faults.stall = True` makes it stop answering; `stop()` makes it down (a closed port).
    """

    def __init__(
        self, root: Path, host: str = "127.0.0.1", port: int = 0, scopes: Iterable[str | Scope] = (DEFAULT_SCOPE,)
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port
        self.faults = Faults()
        self.store = CacheStore(self.root)
        self.token = make_token(scopes)
        self._log = RequestLog()
        self._counters_lock = threading.Lock()
        self._uploaded = 0
        self._downloaded = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> GhaCacheServer:
        """Open the store (creating `root`), bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.store.open()
        try:
            httpd = _HTTPServer((self.host, self.port), self)
        except OSError as e:
            raise ModelbakeError(
                f"gha cache emulator cannot listen on {self.host}:{self.port}: {e.strerror or e}",
                hint="pick another --port, or stop what is using it",
            ) from e
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"modelbake-ghacache-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release stalled handlers, close open connections and the port; join the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> GhaCacheServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses and tokens -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The cache URL (ACTIONS_CACHE_URL's form, trailing slash included)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

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


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`docker stop`/`kill` send SIGTERM, which PID 1 ignores by default: treat it like Ctrl-C."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_forever(root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
    """`modelbake gha-cache serve`: one line `url=... token=...` on stdout, then serve until Ctrl-C/SIGTERM."""
    server = GhaCacheServer(root, host, port).start()
    print(f"url={server.url} token={server.token}", flush=True)
    try:
        with _sigterm_as_interrupt():
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
