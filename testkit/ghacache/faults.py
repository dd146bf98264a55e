"""Faults for tests: a cache service that stalls, that throttles, blob storage that stalls, refuses, is busy or
resets, and signed URLs that expire.

BuildKit's cache client sets no HTTP timeout (neither go-actions-cache's twirp calls nor the Azure blob client
it uses for downloads), so a service that accepts connections and never answers stalls the build; tests use
`stall` and `stall_downloads` to prove that whatever drives the build gives up on its own. A service that is
down is simply a stopped one (`GhaCacheServer.stop()`: the port is closed). `expire_signed_urls()` makes every
URL handed out so far answer 403 AuthenticationFailed, as an expired Azure SAS does.

The transient failures are answered as the real services answer them (the request log names the fault):

- `refuse_downloads`: 403 `AuthenticationFailed` (Azure's XML error and `x-ms-error-code`), what a signed URL
  that ran out between the lookup and its use gets;
- `busy_downloads`: 503 `ServerBusy`, a storage account over its limits (with `Retry-After` if given);
- `reset_downloads`: the connection reset (TCP RST) before any answer;
- `throttle`: twirp's `resource_exhausted` as HTTP 429 with `Retry-After`, GitHub's rate limit (200 cache
  uploads a minute per repository since 2026-01);
- `url_ttl`: signed URLs issued while it is set expire that many seconds after they are issued (about 10
  minutes on GitHub), then answer 403 `AuthenticationFailed`.

The first four hit the first `times` requests *for each key* and let the later ones through: every client
meets the fault once per blob (the probe on the cache index, BuildKit on each layer), and a client that tries
again gets through, which is what makes a failure transient.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

REFUSED = "refused"  # 403 AuthenticationFailed
BUSY = "busy"  # 503 ServerBusy
RESET = "reset"  # TCP reset, no answer
THROTTLED = "throttled"  # twirp 429 resource_exhausted
EXPIRED = "expired"  # a request with an expired signed URL (logged, whichever fault expired it)


@dataclass
class FirstTries:
    """The first `times` requests for each key starting with `prefix` fail with `answer`; later ones go through."""

    answer: str
    prefix: str = ""
    times: int = 1
    retry_after: int | None = None  # seconds, sent as `Retry-After` (None: no header)
    _counts: Counter[str] = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, key: str | None) -> bool:
        """True (and counted) when this request for `key` must fail."""
        if key is None or not key.startswith(self.prefix):
            return False
        with self._lock:  # parallel downloads of one blob must not share one failure
            if self._counts[key] >= self.times:
                return False
            self._counts[key] += 1
            return True


@dataclass
class Faults:
    """Mutable fault settings, read by every request.

    - `stall`: every request (twirp and blob) reads its head, then gets no answer until `stall` is set back
      to False (the request then goes on) or the server stops (the connection is closed).
    - `stall_downloads`: a key prefix (`""`: every key); downloads of entries whose key starts with it
      stall the same way, while the service answers lookups and hands out URLs: the bytes never come.
      `"buildkit-blob-"` stalls the layer blobs and lets BuildKit's cache index through.
    - `urls_valid_from`: signed URLs issued before this time answer 403 (see `expire_signed_urls`).
    - `expire_before_download`: a key prefix; the next download of an entry whose key starts with it finds
      every URL issued until then expired, as when a signed URL runs out between the lookup and its use
      (once: the setting then clears itself). `"buildkit-blob-"` hits the first layer blob.
    - `downloads`: a `FirstTries` for blob downloads (`refuse_downloads`, `busy_downloads`, `reset_downloads`).
    - `lookups`: a `FirstTries` for twirp calls, by the key in their body (`throttle`).
    - `url_ttl`: seconds a signed URL issued now stays valid (None: the server's own, an hour by default).
    """

    stall: bool = False
    stall_downloads: str | None = None
    urls_valid_from: float = 0.0
    expire_before_download: str | None = None
    downloads: FirstTries | None = None
    lookups: FirstTries | None = None
    url_ttl: float | None = None

    def expire_signed_urls(self) -> None:
        """Every signed URL issued until now is expired from here on; new ones work."""
        self.urls_valid_from = time.time()

    def refuse_downloads(self, prefix: str = "", times: int = 1) -> None:
        """403 AuthenticationFailed for the first `times` downloads of each blob whose key starts with `prefix`."""
        self.downloads = FirstTries(REFUSED, prefix, times)

    def busy_downloads(self, prefix: str = "", times: int = 1, retry_after: int | None = None) -> None:
        """503 ServerBusy for the first `times` downloads of each matching blob."""
        self.downloads = FirstTries(BUSY, prefix, times, retry_after)

    def reset_downloads(self, prefix: str = "", times: int = 1) -> None:
        """A connection reset for the first `times` downloads of each matching blob."""
        self.downloads = FirstTries(RESET, prefix, times)

    def throttle(self, prefix: str = "", times: int = 1, retry_after: int | None = 1) -> None:
        """HTTP 429 `resource_exhausted` for the first `times` twirp calls naming each matching key."""
        self.lookups = FirstTries(THROTTLED, prefix, times, retry_after)

    def download_fault(self, key: str | None) -> FirstTries | None:
        """The fault this download of `key` must meet, if any (counted)."""
        fault = self.downloads
        return fault if fault is not None and fault.take(key) else None

    def lookup_fault(self, key: str | None) -> FirstTries | None:
        """The fault this twirp call naming `key` must meet, if any (counted)."""
        fault = self.lookups
        return fault if fault is not None and fault.take(key) else None

    def clear(self) -> None:
        """Back to a healthy service."""
        self.stall = False
        self.stall_downloads = None
        self.urls_valid_from = 0.0
        self.expire_before_download = None
        self.downloads = None
        self.lookups = None
        self.url_ttl = None
