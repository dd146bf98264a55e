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

Here: the routing, the twirp half and the server; the blob half is `blobroutes.py`, the request plumbing
`handler.py`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from modelbake.httpserve import BackgroundServer, serve_until_interrupted
from testkit.ghacache import blobs
from testkit.ghacache.blobroutes import BlobRoutes
from testkit.ghacache.faults import THROTTLED, Faults
from testkit.ghacache.handler import BadRequest
from testkit.ghacache.requestlog import CacheRequest, RequestLog
from testkit.ghacache.store import CacheStore, Entry
from testkit.ghacache.token import DEFAULT_SCOPE, Scope, TokenError, bearer, make_token, parse_token
from testkit.ghacache.twirp import METHODS, SERVICE_PREFIX, TwirpError, UrlMaker

DEFAULT_URL_TTL = 3600.0


class _Handler(BlobRoutes):
    server_version = "modelbake-ghacache"

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
            body = self._json_body()
            key = body.get("key") if isinstance(body.get("key"), str) else None
            self._record.key = key or ""
            fault = service.faults.lookup_fault(key)
            if fault is not None:
                return self._throttled(fault.retry_after)
            answer = method(service.store, claims, body, service.urls_for(self._base_url()))
        except TwirpError as e:
            return self._twirp_error(e)
        except BadRequest as e:
            return self._twirp_error(TwirpError("malformed", str(e)))
        self._json(200, answer)

    def _throttled(self, retry_after: int | None) -> None:
        """GitHub's rate limit: twirp `resource_exhausted` (HTTP 429), with `Retry-After` in seconds."""
        self._record.fault = THROTTLED
        error = TwirpError("resource_exhausted", "cache request rate limit exceeded for this repository")
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self._json(error.status, error.body(), headers)


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
            upload=lambda i: self.signer.url(base_url, blobs.UPLOAD, i, ttl=self.faults.url_ttl),
            download=lambda i: self.signer.url(base_url, blobs.DOWNLOAD, i, ttl=self.faults.url_ttl),
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


def serve_forever(
    root: Path, host: str = "127.0.0.1", port: int = 0, configure: Callable[[Faults], None] | None = None
) -> None:
    """`python -m testkit.ghacache serve`: the runner's variables on stdout (`export`-able), then serve until Ctrl-C.
    `configure` sets the faults before the first request."""
    server = GhaCacheServer(root, host, port)
    if configure is not None:
        configure(server.faults)
    server.start()
    env = server.runner_env()
    env.pop("ACTIONS_CACHE_URL")
    for name, value in env.items():
        print(f"{name}={value}", flush=True)
    serve_until_interrupted(server)
