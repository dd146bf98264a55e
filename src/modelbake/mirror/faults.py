"""Fault injection and bandwidth throttling for the mirror.

Tests mutate `MirrorServer.faults` to prove that clients detect corrupt bytes, retry on 503, resume after a
dropped connection, report missing files, and meet what real servers and proxies do (chunked bodies without a
Content-Length, an HTML page where JSON is due, a redirect loop, a body cut short); the benchmark uses
`bandwidth` to emulate a slow link.
Keys are substrings of the decoded URL path (e.g. `"tiny.en.pt"`, `"/resolve/"`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Mutable fault settings, read by every request.

    - `corrupt`: serve matching files with one byte flipped in the middle (same length, same ETag).
    - `fail`: answer 503 this many times before serving normally (counts every matching request).
    - `reset`: close the connection mid-body this many times.
    - `not_found`: answer 404.
    - `no_content_length`: send files with `Transfer-Encoding: chunked` and no Content-Length (HEAD too).
    - `html`: answer 200 with an HTML page (a proxy's login page) instead of the JSON or file.
    - `redirect_loop`: answer 302 pointing at the same URL, every time.
    - `truncate`: end every body at the file's middle and close the connection, even for a Range asking for
      more (a file cut short behind a server that still announces its full length); `reset` cuts N times.
    - `bandwidth`: bytes per second shared by all connections; None means unlimited.
    """

    corrupt: set[str] = field(default_factory=set)
    fail: dict[str, int] = field(default_factory=dict)
    reset: dict[str, int] = field(default_factory=dict)
    not_found: set[str] = field(default_factory=set)
    no_content_length: set[str] = field(default_factory=set)
    html: set[str] = field(default_factory=set)
    redirect_loop: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)
    bandwidth: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def clear(self) -> None:
        """Back to a healthy, unthrottled server."""
        with self._lock:
            self.corrupt.clear()
            self.fail.clear()
            self.reset.clear()
            self.not_found.clear()
            self.no_content_length.clear()
            self.html.clear()
            self.redirect_loop.clear()
            self.truncate.clear()
            self.bandwidth = None

    def is_not_found(self, path: str) -> bool:
        return any(key in path for key in list(self.not_found))

    def matches(self, keys: set[str], path: str) -> bool:
        """True when one of `keys` (a set of this object, e.g. `self.html`) is a substring of `path`."""
        return any(key in path for key in list(keys))

    def should_corrupt(self, path: str) -> bool:
        return any(key in path for key in list(self.corrupt))

    def take_fail(self, path: str) -> bool:
        """True (and one fewer left) if this request must fail with 503."""
        return self._take(self.fail, path)

    def take_reset(self, path: str) -> bool:
        """True (and one fewer left) if this response must be cut mid-body."""
        return self._take(self.reset, path)

    def _take(self, counters: dict[str, int], path: str) -> bool:
        # Decrement under a lock: parallel downloads must not consume one failure twice.
        with self._lock:
            for key, left in list(counters.items()):
                if key in path and left > 0:
                    counters[key] = left - 1
                    return True
        return False


class Throttle:
    """One shared send schedule, so `bandwidth` limits the server as a whole, not each connection.

    `clock` and `sleep` default to `time.monotonic` and `time.sleep` (looked up at each call); a test passes a
    clock of its own to check the schedule without waiting for it.
    """

    def __init__(self, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._clock = clock
        self._sleep = sleep

    def wait(self, nbytes: int, rate: float) -> None:
        """Sleep until `nbytes` more fit into the schedule at `rate` bytes/s."""
        with self._lock:
            now = (self._clock or time.monotonic)()
            start = max(now, self._next)
            self._next = start + nbytes / rate
            delay = self._next - now
        if delay > 0:
            (self._sleep or time.sleep)(delay)
