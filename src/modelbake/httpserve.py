"""The HTTP server scaffolding of the local mirror (`modelbake.mirror`) and the GitHub Actions cache emulator
(`testkit.ghacache`, test support outside the package): a server on a background thread that stops cleanly,
and Range handling.

Hand-written on the standard library's `ThreadingHTTPServer`, with no dependency: both serve tests, benchmarks
and air-gapped builds, and one thread per connection is plenty for their handful of parallel clients. What the
standard library lacks is a clean stop: `shutdown()` ends the accept loop but leaves handler threads blocked
on keep-alive connections or on stalled clients. `TrackingHTTPServer` tracks its open connections and
`BackgroundServer.stop()` shuts them down, so stopping never waits on a stalled or keep-alive client.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from modelbake.errors import ModelbakeError

S = TypeVar("S")


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes past the end of the file."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single `bytes=` range; None to serve the whole file (RFC 9110 allows it)."""
    unit, _, spec = header.partition("=")
    first, sep, last = spec.strip().partition("-")
    if unit.strip().lower() != "bytes" or "," in spec or not sep:
        return None
    try:
        if not first:
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise RangeNotSatisfiable(header)
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end < start):
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, size - 1 if end is None else min(end, size - 1)


class TrackingHTTPServer(ThreadingHTTPServer, Generic[S]):
    """`ThreadingHTTPServer` that knows its open connections; `service` is the object its handlers serve."""

    daemon_threads = True  # a stalled handler never keeps the process (or stop()) waiting
    allow_reuse_address = True
    RequestHandlerClass: type[TrackedHandler]

    def __init__(self, address: tuple[str, int], handler: type[TrackedHandler], service: S) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.service = service
        self.stopping = threading.Event()  # set first thing in stop(): handlers waiting on purpose give up
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """`socket.accept()`, but the new socket takes the listening socket's class, not `socket.socket`.

        pytest-socket swaps `socket.socket` while a network-less test runs; a plain accept() then raises a
        non-OSError that kills `serve_forever` for good, and a server shared by a test session dies silently.
        """
        listener = self.socket
        fd, addr = listener._accept()  # type: ignore[attr-defined]
        conn = type(listener)(listener.family, listener.type, listener.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and listener.gettimeout():
            conn.setblocking(True)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are routine (downloads cancelled, retries): no traceback."""
        if isinstance(sys.exc_info()[1], self.RequestHandlerClass.quiet_errors):
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


class TrackedHandler(BaseHTTPRequestHandler):
    """Keep-alive handler that registers its connection with the server; JSON and file-header helpers."""

    protocol_version = "HTTP/1.1"  # keep-alive: huggingface_hub, httpx and Go's client pool connections
    quiet_errors: ClassVar[tuple[type[BaseException], ...]] = (ConnectionError, TimeoutError)  # no traceback
    server: TrackingHTTPServer[Any]

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, alive=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, alive=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the server's request log replaces stderr chatter."""

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)

    def _base_url(self) -> str:
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _json(self, status: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self._write(data)

    def _file_headers(
        self, size: int, headers: Mapping[str, str] | None = None, chunked: bool = False
    ) -> tuple[int, int] | None:
        """Send the status line and headers of a file of `size` bytes, honouring a single Range on GET.

        Returns the inclusive (start, end) of the body to send, or None for HEAD. Raises RangeNotSatisfiable,
        with nothing sent, for a range past the end: the caller answers 416 `Content-Range: bytes */<size>`.
        `chunked`: no Content-Length, `Transfer-Encoding: chunked` instead (the caller frames the body), as
        servers that stream or compress on the fly answer.
        """
        rng = None
        header = self.headers.get("Range")
        if header and self.command == "GET":
            rng = parse_range(header, size)
        start, end = rng if rng is not None else (0, size - 1)
        self.send_response(206 if rng is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if rng is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        return None if self.command == "HEAD" else (start, end)


class BackgroundServer:
    """A `TrackingHTTPServer` of `handler` on a daemon thread; a context manager for tests.

    Subclasses set `handler` (its `server_version` names the thread) and `label`, and may extend `_prepare`
    (before binding), `_opened` (bound, before serving) and `_closed` (after the serving thread ended).
    """

    handler: ClassVar[type[TrackedHandler]]
    label: ClassVar[str]  # "mirror": names the server in the bind error

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._httpd: TrackingHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None

    def _prepare(self) -> None:
        """Before binding: check or create what the handlers serve."""

    def _opened(self) -> None:
        """Bound (`port` known), before the first request."""

    def _closed(self) -> None:
        """The serving thread has ended and every connection is closed."""

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._prepare()
        try:
            httpd = TrackingHTTPServer((self.host, self.port), self.handler, self)
        except OSError as e:
            raise ModelbakeError(
                f"{self.label} cannot listen on {self.host}:{self.port}: {e.strerror or e}",
                hint="pick another --port, or stop what is using it",
            ) from e
        self.port = httpd.server_address[1]
        self._opened()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.handler.server_version}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release waiting handlers, close open connections and the port; join the thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._closed()
        self._httpd = self._thread = None

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
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


def serve_until_interrupted(server: BackgroundServer) -> None:
    """Block until Ctrl-C or SIGTERM, then stop `server` (the `serve` commands)."""
    try:
        with sigterm_as_interrupt():
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
