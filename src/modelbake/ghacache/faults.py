"""Faults for tests: a cache server that stalls.

BuildKit's cache client sets no HTTP timeout, so a cache server that accepts connections and never answers
stalls the build; tests use `stall` to prove that whatever drives the build gives up on its own. A server that
is down is simply a stopped one (`GhaCacheServer.stop()`: the port is closed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Faults:
    """Mutable fault settings, read by every request.

    - `stall`: accept the connection and read the request head, then never answer (until `stall` is set back
      to False, when the request goes on normally, or until the server stops, when the connection is closed).
    """

    stall: bool = False

    def clear(self) -> None:
        """Back to a healthy server."""
        self.stall = False
