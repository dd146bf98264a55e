"""The mirror's request plumbing and file bodies: every request logged (what was asked, the status, the bytes
sent, the scheme of its Authorization header but never its credentials), one JSON error line instead of a
traceback, and files streamed with Range, HEAD and the file faults
(corrupt, reset, truncate, no Content-Length, bandwidth). The routes are `hubroutes.py`'s and `server.py`'s.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from modelbake.httpserve import RangeNotSatisfiable, TrackedHandler, TrackingHTTPServer
from modelbake.mirror.requestlog import RequestRecord, auth_scheme

if TYPE_CHECKING:
    from modelbake.mirror.server import MirrorServer

CHUNK = 1024 * 1024


class MirrorHandler(TrackedHandler):
    """A request of the mirror: logged, answered once, with a JSON error line when anything fails."""

    server: TrackingHTTPServer[MirrorServer]

    _record: RequestRecord | None = None

    # -- plumbing (the rest is TrackedHandler's) ------------------------------------------------------
    def send_response(self, code: int, message: str | None = None) -> None:
        path = getattr(self, "path", "")
        headers = getattr(self, "headers", None)  # None when the request line itself was unreadable
        rng = headers.get("Range") if headers is not None else None
        auth = auth_scheme(headers.get("Authorization")) if headers is not None else None
        self._record = RequestRecord(self.command or "?", path, code, range=rng, authorization=auth)
        self.server.service._log.append(self._record)
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_GET

    def _read_only(self) -> None:
        self._record = None
        self.close_connection = True  # the body was not read
        self._json(
            405,
            {"error": f"the modelbake mirror is read-only: {self.command} {self.path}"},
            {"Connection": "close", "Allow": "GET, HEAD"},
        )
        record = self._response_record()
        assert record is not None  # send_response made it
        self.server.service._log.finish(record)

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only

    def _response_record(self) -> RequestRecord | None:
        """The log record of the response begun on this request (send_response makes it), None before."""
        return self._record

    def _handle(self) -> None:
        self._record = None
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # one clear line to the client, never a traceback on the server's stderr
            if self._response_record() is None:
                self._error(500, f"mirror error: {type(e).__name__}: {e}")
            else:
                self.close_connection = True
        finally:
            record = self._response_record()
            if record is not None:
                self.server.service._log.finish(record)

    def _route(self) -> None:
        """Answer the request (GET or HEAD): the subclass's routes."""
        raise NotImplementedError

    def _write(self, data: bytes) -> None:
        assert self._record is not None
        # Counted before the write: a client that has read everything finds the record complete.
        self._record.bytes_sent += len(data)
        try:
            self.wfile.write(data)
        except OSError:
            self._record.bytes_sent -= len(data)
            raise

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self._write(body)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if code:
            extra["X-Error-Code"] = code
        self._json(status, {"error": message}, extra)

    # -- file bodies ----------------------------------------------------------------------------------
    def _file(self, local: Path, headers: dict[str, str], decoded: str) -> None:
        """Stream `local` in chunks, honouring Range, HEAD, and the file faults (corrupt, reset, truncate,
        no_content_length, bandwidth)."""
        mirror = self.server.service
        faults = mirror.faults
        chunked = faults.matches(faults.no_content_length, decoded)
        with open(local, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                span = self._file_headers(size, headers, chunked=chunked)
            except RangeNotSatisfiable as e:
                return self._error(
                    416, f"range {e} outside {decoded} ({size} bytes)", headers={"Content-Range": f"bytes */{size}"}
                )
            if span is None:
                return  # HEAD
            start, end = span
            length = end - start + 1
            flip_at = size // 2 if size and faults.should_corrupt(decoded) else -1
            remaining = length
            if faults.matches(faults.truncate, decoded):  # the body always ends at the file's middle
                cut, remaining = True, max(0, min(length, size // 2 - start))
            elif cut := faults.take_reset(decoded):
                remaining = length // 2
            fh.seek(start)
            pos = start
            while remaining > 0:
                rate = faults.bandwidth
                step = min(CHUNK, max(4096, int(rate / 20))) if rate else CHUNK
                data = fh.read(min(step, remaining))
                if not data:
                    break  # the file shrank under us: the short body makes the client fail loudly
                if pos <= flip_at < pos + len(data):
                    flipped = bytearray(data)
                    flipped[flip_at - pos] ^= 0xFF
                    data = bytes(flipped)
                if rate:
                    mirror._throttle.wait(len(data), rate)
                if chunked:  # http.server has no chunked writer: the framing is RFC 9112's, size in hex
                    self.wfile.write(b"%x\r\n" % len(data))
                self._write(data)
                if chunked:
                    self.wfile.write(b"\r\n")
                pos += len(data)
                remaining -= len(data)
            if chunked and not cut and remaining <= 0:
                self.wfile.write(b"0\r\n\r\n")  # the last chunk: the body is complete
        if cut or remaining > 0:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
