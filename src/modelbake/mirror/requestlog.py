"""The mirror's request log: what tests assert on ("no second download", "resumed with Range", "the build's
requests carried the token").

A record is appended when the status line is sent and `bytes_sent` is counted before each chunk goes out, so
a client that has read a whole response always finds its record complete. Of an Authorization header only the
scheme is kept, never the credentials: the log is a file anyone running the mirror may read or attach to a bug.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import time as _now
from typing import TextIO
from urllib.parse import unquote

from modelbake.errors import write_error

# The schemes of IANA's HTTP Authentication Scheme Registry (plus `token`, GitHub's), as the mirror logs them.
# Anything else is logged as UNKNOWN_SCHEME: a header without a scheme carries the bare credentials in its first
# word, and whatever is not a known scheme name is kept out of the log. So is a scheme with no credentials after
# it, so that `Bearer` in the log always means a request that carried a token.
AUTH_SCHEMES = {
    s.lower(): s
    for s in (
        "Basic", "Bearer", "Concealed", "Digest", "DPoP", "GNAP", "HOBA", "Mutual", "Negotiate", "NTLM", "OAuth",
        "PrivateToken", "SCRAM-SHA-1", "SCRAM-SHA-256", "vapid", "token",
    )
}  # fmt: skip
UNKNOWN_SCHEME = "(unknown)"


@dataclass
class RequestRecord:
    """One request: `path` is the raw request target (with query); `range` the Range header, if any;
    `authorization` the scheme of its Authorization header (`Bearer`), None when it carried none."""

    method: str
    path: str
    status: int
    bytes_sent: int = 0
    range: str | None = None
    authorization: str | None = None
    time: float = field(default_factory=_now)

    def matches(self, substring: str) -> bool:
        return substring in self.path or substring in unquote(self.path)


def auth_scheme(header: str | None) -> str | None:
    """What the log keeps of an Authorization header: its scheme if it names a known one followed by
    credentials (`Bearer`), UNKNOWN_SCHEME otherwise, None without the header. Never any part of the
    credentials."""
    if header is None:
        return None
    first, _, rest = header.strip().partition(" ")
    scheme = AUTH_SCHEMES.get(first.lower())
    return scheme if scheme is not None and rest.strip() else UNKNOWN_SCHEME


class RequestLog:
    """Thread-safe list of records, optionally mirrored to a JSON-lines file."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._log_path = log_path
        self._file: TextIO | None = None

    def open(self) -> None:
        """Open the log file for appending; a path that cannot be written is a DestinationError naming it."""
        if self._log_path is not None and self._file is None:
            try:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self._log_path, "a", encoding="utf-8")  # closed in close()
            except OSError as exc:
                raise write_error(exc, self._log_path) from exc

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def finish(self, record: RequestRecord) -> None:
        """Write the finished record to the log file (the in-memory list already has it)."""
        with self._lock:
            if self._file is not None:
                self._file.write(json.dumps(asdict(record), sort_keys=True) + "\n")
                self._file.flush()

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def matching(self, substring: str) -> list[RequestRecord]:
        return [r for r in self.snapshot() if r.matches(substring)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
