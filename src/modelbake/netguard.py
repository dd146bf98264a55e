"""Block and record network connections inside this process, so verify proves models load offline.

pytest-socket does this for tests; verify runs outside pytest (in images, on laptops), so it needs its own
small guard. Unix sockets stay allowed (tokenizers and torch use them for nothing network-related).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class NetworkBlocked(OSError):
    """Raised instead of connecting; verify reports the model that tried."""


class NetworkGuard:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []  # (label, address)
        self.label = "-"
        self._lock = threading.Lock()

    def _record(self, address: object) -> None:
        with self._lock:
            self.attempts.append((self.label, repr(address)))

    def attempts_for(self, label: str) -> list[str]:
        return [addr for lab, addr in self.attempts if lab == label]

    @contextmanager
    def active(self) -> Iterator[NetworkGuard]:
        guard = self
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        original_getaddrinfo = socket.getaddrinfo

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family == socket.AF_UNIX:
                return original_connect(sock, address)
            guard._record(address)
            raise NetworkBlocked(f"network blocked by modelbake verify: connect to {address!r}")

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family == socket.AF_UNIX:
                return original_connect_ex(sock, address)
            guard._record(address)
            raise NetworkBlocked(f"network blocked by modelbake verify: connect to {address!r}")

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            guard._record(host)
            raise NetworkBlocked(f"network blocked by modelbake verify: lookup of {host!r}")

        # Patching the standard library on purpose (every socket of the process goes through these), and back
        # below; mypy rejects assigning to a method, hence the ignores.
        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
        socket.getaddrinfo = getaddrinfo
        try:
            yield self
        finally:
            socket.socket.connect = original_connect  # type: ignore[method-assign]
            socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
            socket.getaddrinfo = original_getaddrinfo
