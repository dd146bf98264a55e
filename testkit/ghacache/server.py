"""A local GitHub Actions cache service (the v2 protocol GitHub serves) for tests and benchmarks.

Written by hand because nothing emulates it: GitHub runs the service only for its own runners, and no package
ships a server for it. BuildKit >= 0.20 (dockerd >= 28) speaks it through buildx >= 0.21 when a step has the
runner's variables (`ACTIONS_CACHE_SERVICE_V2`, `ACTIONS_RESULTS_URL`, `ACTIONS_RUNTIME_TOKEN`):
`runner_env()` gives exactly those, pointed here. Two halves, as on GitHub:

- the twirp CacheService (`testkit.ghacache.twirp`), authenticated by the runtime token, whose claims
  decide the scope an entry is written to and the scopes a lookup reads (`testkit.ghacache.token`);
- blob storage behind signed URLs, speaking the Azure Block Blob operations the Azure SDK's client uses
  (`testkit.ghacache.blobs`); like a SAS URL, it needs no Authorization header.

The retired v1 protocol (`_apis/artifactcache`) is not served: GitHub shut it down on 2025-04-15, and a
request for it is answered 404 and logged, so a test can show that none was made. Built on the standard
library's `ThreadingHTTPServer` (scaffolding in `modelbake.httpserve`): one thread per connection.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modelbake.httpserve import (
    BackgroundServer,
    RangeNotSatisfiable,
    TrackedHandler,
    TrackingHTTPServer,
    parse_range,
    serve_until_interrupted,
)
from testkit.ghacache import blobs
from testkit.ghacache.faults import Faults
from testkit.ghacache.requestlog import CacheRequest, RequestLog
from testkit.ghacache.store import CacheStore, Entry, StoreError
from testkit.ghacache.token import DEFAULT_SCOPE, Scope, TokenError, bearer, make_token, parse_token
from testkit.ghacache.twirp import METHODS, SERVICE_PREFIX, TwirpError, UrlMaker

CHUNK = 1024 * 1024
MAX_JSON_BODY = 64 * 1024
MAX_BLOCK_BYTES = 4000 * 1024 * 1024  # Azure's limit for one Put Block
DEFAULT_URL_TTL = 3600.0


class _BadRequest(Exception):
    """A malformed request: answered 400 with the message."""


class _Handler(TrackedHandler):
    server_version = "modelbake-ghacache"
    timeout = 120  # per socket read; idle keep-alive connections close after this
    quiet_errors = (OSError,)  # clients that hang up (cancelled builds, timed-out tests): no traceback
    server: TrackingHTTPServer[GhaCacheServer]

    _record: CacheRequest
    _body_pending = False

    # -- plumbing -------------------------------------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        self._record.status = code
        self.server.service._log.append(self._record)
        super().send_response(code, message)

    def end_headers(self) -> None:
        if self._body_pending:  # answered before the body was read: say the connection ends here
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _handle(self) -> None:
        self._record = CacheRequest(self.command, self.path, 0)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        self._body_pending = chunked or int(self.headers.get("Content-Length") or 0) > 0
        service = self.server.service
        key = self._download_key()
        if not self._wait_out_stall(lambda: service.faults.stall or _prefixed(key, service.faults.stall_downloads)):
            return
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # one clear answer to the client, never a traceback on the server's stderr
            if self._record.status == 0:
                self._twirp_error(TwirpError("internal", f"cache emulator error: {type(e).__name__}: {e}"))
            else:
                self.close_connection = True
        finally:
            if self._body_pending:
                self.close_connection = True  # the body was not read: the connection cannot be reused

    def _download_key(self) -> str | None:
        """The cache key whose blob this request downloads, if it is a download."""
        path = self.path.split("?", 1)[0]
        if self.command not in ("GET", "HEAD") or not path.startswith(blobs.BLOB_PREFIX + blobs.DOWNLOAD + "/"):
            return None
        entry_id = path.rsplit("/", 1)[1]
        entry = self.server.service.store.get(int(entry_id)) if entry_id.isdigit() else None
        return entry.key if entry is not None else None

    def _wait_out_stall(self, stalled) -> bool:
        """Hold the request while `stalled()`; False when the server stopped meanwhile (connection dropped)."""
        if not stalled():
            return True
        self.server.service._log.append(self._record)  # status 0: reached the server, never answered
        while stalled() and not self.server.stopping.is_set():
            self.server.stopping.wait(0.05)
        if self.server.stopping.is_set():
            self.close_connection = True
            return False
        self._record = CacheRequest(self.command, self.path, 0)
        return True

    # -- bodies ---------------------------------------------------------------------------------------
    def _body(self, limit: int) -> Iterator[bytes]:
        """The request body in pieces, decoding chunked transfer encoding; at most `limit` bytes."""
        rfile = self.rfile
        total = 0
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
                total += size
                if total > limit:
                    raise _BadRequest(f"body larger than {limit} bytes")
                yield from self._read_exactly(size)
                if rfile.readline(8).strip():
                    raise _BadRequest("chunk not followed by CRLF")
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                raise _BadRequest(f"body of {length} bytes, more than {limit}")
            yield from self._read_exactly(length)
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
        data = b"".join(self._body(MAX_JSON_BODY))
        try:
            body = json.loads(data or b"{}")
        except ValueError as e:
            raise TwirpError("malformed", f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise TwirpError("malformed", "the request body is not a JSON object")
        return body

    def _counted(self, limit: int) -> Iterable[bytes]:
        for piece in self._body(limit):
            self.server.service._add(uploaded=len(piece))
            yield piece

    # -- responses ------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self._record.bytes_sent += len(data)
        self.wfile.write(data)

    def _twirp_error(self, error: TwirpError) -> None:
        self._json(error.status, error.body())

    def _blob_reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self._write(body)

    def _blob_error(self, status: int, code: str, message: str) -> None:
        headers = {**self._azure_headers(), "x-ms-error-code": code, "Content-Type": "application/xml"}
        self._blob_reply(status, headers, blobs.error_body(code, message))

    def _azure_headers(self) -> dict[str, str]:
        return blobs.response_headers(client_request_id=self.headers.get("x-ms-client-request-id"))

    # -- routing --------------------------------------------------------------------------------------
    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        if path.startswith(SERVICE_PREFIX):
            return self._twirp(path[len(SERVICE_PREFIX) :])
        if path.startswith(blobs.BLOB_PREFIX):
            return self._blob(path, query)
        if path == "/" and self.command in ("GET", "HEAD"):
            return self._json(200, {"service": "modelbake GitHub Actions cache emulator (v2)"})
        # Anything else, the retired v1 `_apis/artifactcache` API included: twirp's unknown-route answer.
        return self._twirp_error(TwirpError("bad_route", f"no handler for path {path}"))

    def _twirp(self, method_name: str) -> None:
        service = self.server.service
        method = METHODS.get(method_name)
        if self.command != "POST" or method is None:
            return self._twirp_error(TwirpError("bad_route", f"no handler for {self.command} {self.path}"))
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return self._twirp_error(TwirpError("bad_route", f"unexpected Content-Type: {content_type!r}"))
        try:
            claims = parse_token(bearer(self.headers.get("Authorization")))
        except TokenError as e:
            return self._twirp_error(TwirpError("unauthenticated", str(e)))
        try:
            answer = method(service.store, claims, self._json_body(), service.urls_for(self._base_url()))
        except TwirpError as e:
            return self._twirp_error(e)
        except _BadRequest as e:
            return self._twirp_error(TwirpError("malformed", str(e)))
        self._json(200, answer)

    def _blob(self, path: str, query: str) -> None:
        service = self.server.service
        self._maybe_expire(path)
        try:
            target = service.signer.check(path, query, service.faults.urls_valid_from)
        except blobs.SasError as e:
            return self._blob_error(403, "AuthenticationFailed", str(e))
        params = {k: v for k, _, v in (p.partition("=") for p in query.split("&")) if k}
        try:
            if target.kind == blobs.DOWNLOAD and self.command in ("GET", "HEAD"):
                return self._get_blob(target.blob_id)
            if target.kind == blobs.UPLOAD and self.command == "PUT":
                return self._put(target.blob_id, params)
        except StoreError as e:
            status = 404 if e.code == "BlobNotFound" else 400
            return self._blob_error(status, e.code, e.message)
        except _BadRequest as e:
            return self._blob_error(400, "InvalidInput", str(e))
        sp = blobs.PERMISSIONS[target.kind]
        return self._blob_error(403, "AuthorizationPermissionMismatch", f"{self.command} is not allowed by sp={sp}")

    def _maybe_expire(self, path: str) -> None:
        """The `expire_before_download` fault: this download's URL ran out just before it arrived."""
        faults = self.server.service.faults
        if _prefixed(self._download_key(), faults.expire_before_download):
            faults.expire_before_download = None
            faults.expire_signed_urls()

    def _put(self, upload_id: int, params: dict[str, str]) -> None:
        from urllib.parse import unquote

        store = self.server.service.store
        comp = params.get("comp", "")
        if comp == "block":
            block_id = unquote(params.get("blockid", ""))
            if not blobs.valid_block_id(block_id):
                raise _BadRequest(f"blockid {block_id!r} is not base64 of at most 64 bytes")
            store.stage_block(upload_id, block_id, self._counted(MAX_BLOCK_BYTES))
            return self._blob_reply(201, {**self._azure_headers(), "x-ms-request-server-encrypted": "true"})
        if comp == "blocklist":
            try:
                ids = blobs.parse_block_list(b"".join(self._body(blobs.MAX_BLOCK_LIST_BODY)))
            except ValueError as e:
                raise _BadRequest(str(e)) from None
            size = store.commit_block_list(upload_id, ids)
            return self._blob_reply(201, {**self._azure_headers(), **self._properties(upload_id, size)})
        if comp == "" and self.headers.get("x-ms-blob-type") == "BlockBlob":
            size = store.put_blob(upload_id, self._counted(MAX_BLOCK_BYTES))
            return self._blob_reply(201, {**self._azure_headers(), **self._properties(upload_id, size)})
        raise _BadRequest(f"unsupported PUT (comp={comp!r}, x-ms-blob-type={self.headers.get('x-ms-blob-type')!r})")

    @staticmethod
    def _properties(upload_id: int, size: int) -> dict[str, str]:
        etag = "0x" + hashlib.sha256(f"{upload_id}:{size}".encode()).hexdigest()[:16].upper()
        return blobs.blob_properties(etag, _now())

    def _get_blob(self, entry_id: int) -> None:
        service = self.server.service
        entry = service.store.get(entry_id)
        if entry is None:
            return self._blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        with open(service.store.data_path(entry), "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header = self.headers.get("x-ms-range") or self.headers.get("Range")
            try:
                span = parse_range(header, size) if header else None
            except RangeNotSatisfiable:
                return self._blob_error(416, "InvalidRange", "The range specified is invalid for the current size.")
            start, end = span if span is not None else (0, size - 1)
            etag = "0x" + hashlib.sha256(f"{entry.id}:{entry.seq}".encode()).hexdigest()[:16].upper()
            headers = {
                **self._azure_headers(),
                **blobs.download_properties(etag, entry.created),
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
            }
            if span is not None:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.send_response(206 if span is not None else 200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(max(0, end - start + 1)))
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
                service._add(downloaded=len(data))
                self._write(data)
                remaining -= len(data)


def _prefixed(key: str | None, prefix: str | None) -> bool:
    return key is not None and prefix is not None and key.startswith(prefix)


def _now() -> float:
    import time

    return time.time()


class GhaCacheServer(BackgroundServer):
    """The emulator on a background daemon thread (start/stop/wait); a context manager for tests.

    `runner_env()` is what a GitHub runner hands a step, pointed here; `faults` breaks it on purpose;
    `stop()` makes it down (a closed port).
    """

    handler = _Handler
    label = "gha cache emulator"

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        scopes: Iterable[str | Scope] = (DEFAULT_SCOPE,),
        url_ttl: float = DEFAULT_URL_TTL,
    ) -> None:
        super().__init__(host, port)
        self.root = Path(root)
        self.faults = Faults()
        self.store = CacheStore(self.root)
        self.signer = blobs.Signer(url_ttl)
        self.token = make_token(scopes)
        self._log = RequestLog()
        self._counters_lock = threading.Lock()
        self._uploaded = 0
        self._downloaded = 0

    def _prepare(self) -> None:
        """Open the store (creating `root`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.store.open()

    # -- addresses, tokens and the runner's environment -----------------------------------------------
    @property
    def url(self) -> str:
        """The service URL (ACTIONS_RESULTS_URL's form, trailing slash included)."""
        return f"{super().url}/"

    def urls_for(self, base_url: str) -> UrlMaker:
        return UrlMaker(
            upload=lambda i: self.signer.url(base_url, blobs.UPLOAD, i),
            download=lambda i: self.signer.url(base_url, blobs.DOWNLOAD, i),
        )

    def make_token(self, scopes: Iterable[str | Scope | tuple[str, int]]) -> str:
        """Another token, e.g. a pull request's: `[("refs/heads/main", 1), "refs/pull/7/merge"]`."""
        return make_token(scopes)

    def runner_env(self, token: str | None = None, legacy_url: str | None = None) -> dict[str, str]:
        """The cache variables a GitHub-hosted runner gives a step today, pointed at this server.

        `ACTIONS_CACHE_URL` is set too, as runners may still set it: by default to a loopback port that
        refuses connections, so that any use of the retired v1 protocol fails loudly instead of passing.
        """
        return {
            "ACTIONS_CACHE_SERVICE_V2": "True",
            "ACTIONS_RESULTS_URL": self.url,
            "ACTIONS_RUNTIME_TOKEN": token or self.token,
            "ACTIONS_CACHE_URL": legacy_url or refusing_url(),
        }

    # -- what happened --------------------------------------------------------------------------------
    def _add(self, uploaded: int = 0, downloaded: int = 0) -> None:
        with self._counters_lock:
            self._uploaded += uploaded
            self._downloaded += downloaded

    @property
    def bytes_uploaded(self) -> int:
        """Blob body bytes received since start (or reset_counters())."""
        return self._uploaded

    @property
    def bytes_downloaded(self) -> int:
        """Blob body bytes sent since start (or reset_counters())."""
        return self._downloaded

    def reset_counters(self) -> None:
        with self._counters_lock:
            self._uploaded = self._downloaded = 0

    @property
    def entries(self) -> list[Entry]:
        """Finalized entries, oldest first."""
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

    def downloaded_entries(self) -> list[Entry]:
        """Entries whose blob was served (200/206) since the log was last cleared."""
        ids = {
            int(r.path.split("?")[0].rsplit("/", 1)[1])
            for r in self.requests
            if r.path.startswith(blobs.BLOB_PREFIX + blobs.DOWNLOAD) and r.status in (200, 206)
        }
        return [e for e in self.entries if e.id in ids]


def refusing_url() -> str:
    """`http://127.0.0.1:<port>/` where nothing listens: a port the OS just gave and took back."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def serve_forever(root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
    """`python -m testkit.ghacache serve`: the runner's variables on stdout (`export`-able), then serve until Ctrl-C."""
    server = GhaCacheServer(root, host, port).start()
    env = server.runner_env()
    env.pop("ACTIONS_CACHE_URL")
    for name, value in env.items():
        print(f"{name}={value}", flush=True)
    serve_until_interrupted(server)
