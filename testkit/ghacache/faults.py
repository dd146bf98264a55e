"""Faults for tests: a cache service that stalls, blob storage that stalls, signed URLs that expire.

BuildKit's cache client sets no HTTP timeout (neither go-actions-cache's twirp calls nor the Azure blob client
it uses for downloads), so a service that accepts connections and never answers stalls the build; tests use
`stall` and `stall_downloads` to prove that whatever drives the build gives up on its own. A service that is
down is simply a stopped one (`GhaCacheServer.stop()`: the port is closed). `expire_signed_urls()` makes every
URL handed out so far answer 403 AuthenticationFailed, as an expired Azure SAS does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


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
    """

    stall: bool = False
    stall_downloads: str | None = None
    urls_valid_from: float = 0.0
    expire_before_download: str | None = None

    def expire_signed_urls(self) -> None:
        """Every signed URL issued until now is expired from here on; new ones work."""
        self.urls_valid_from = time.time()

    def clear(self) -> None:
        """Back to a healthy service."""
        self.stall = False
        self.stall_downloads = None
        self.urls_valid_from = 0.0
        self.expire_before_download = None
