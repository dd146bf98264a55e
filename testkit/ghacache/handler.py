"""The emulator's request plumbing: the request log, the stall faults, request bodies (Content-Length or
chunked, bounded) and the two kinds of answer, twirp JSON and Azure blob replies. The routes are
`blobroutes.py`'s (the signed blob URLs) and `server.py`'s (twirp).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from modelbake.httpserve import TrackedHandler, TrackingHTTPServer
from testkit.ghacache import blobs
from testkit.ghacache.requestlog import CacheRequest
from testkit.ghacache.twirp import TwirpError

if TYPE_CHECKING:
    from testkit.ghacache.server import GhaCacheServer

CHUNK = 1024 * 1024
MAX_JSON_BODY = 64 * 1024


class BadRequest(Exception):
    """A malformed request: answered 400 with the message."""


class CacheHandler(TrackedHandler):
    """A request of the emulator: logged with its bytes, answered once, never with a traceback."""

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
        self._record.key = key or ""
        if not self._wait_out_stall(lambda: service.faults.stall or prefixed(key, service.faults.stall_downloads)):
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

    def _route(self) -> None:
        """Answer the request: the subclass's routes."""
        raise NotImplementedError

    def _download_key(self) -> str | None:
        """The cache key whose blob this request downloads, if it is a download."""
        path = self.path.split("?", 1)[0]
        if self.command not in ("GET", "HEAD") or not path.startswith(blobs.BLOB_PREFIX + blobs.DOWNLOAD + "/"):
            return None
        entry_id = path.rsplit("/", 1)[1]
        entry = self.server.service.store.get(int(entry_id)) if entry_id.isdigit() else None
        return entry.key if entry is not None else None

    def _wait_out_stall(self, stalled: Callable[[], bool]) -> bool:
        """Hold the request while `stalled()`; False when the server stopped meanwhile (connection dropped)."""
        if not stalled():
            return True
        self.server.service._log.append(self._record)  # status 0: reached the server, never answered
        while stalled() and not self.server.stopping.is_set():
            self.server.stopping.wait(0.05)
        if self.server.stopping.is_set():
            self.close_connection = True
            return False
        self._record = CacheRequest(self.command, self.path, 0, key=self._record.key)
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
                    raise BadRequest(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > limit:
                    raise BadRequest(f"body larger than {limit} bytes")
                yield from self._read_exactly(size)
                if rfile.readline(8).strip():
                    raise BadRequest("chunk not followed by CRLF")
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                raise BadRequest(f"body of {length} bytes, more than {limit}")
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

    def _blob_error(
        self, status: int, code: str, message: str, auth_detail: str | None = None, retry_after: int | None = None
    ) -> None:
        headers = {**self._azure_headers(), "x-ms-error-code": code, "Content-Type": "application/xml"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        self._blob_reply(status, headers, blobs.error_body(code, message, auth_detail))

    def _reset_connection(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), no answer: what a client sees as ECONNRESET."""
        self.server.service._log.append(self._record)  # status 0: never answered
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket's last other reference: close() below is the real one, and sends RST
        self.connection.close()

    def _azure_headers(self) -> dict[str, str]:
        return blobs.response_headers(client_request_id=self.headers.get("x-ms-client-request-id"))


def prefixed(key: str | None, prefix: str | None) -> bool:
    return key is not None and prefix is not None and key.startswith(prefix)
