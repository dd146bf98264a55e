"""The GitHub Actions cache probe: the lookup BuildKit will make, then the first byte of the blob behind a hit,
each tried again where BuildKit's own client tries again, all within one `--cache-timeout`.

What that client does, read from its source (go-actions-cache `cache.go`, `cache_v2.go` as vendored in
BuildKit 0.24 to 0.26, the one dockerd 28.5.2's binary holds; and the Azure SDK for Go it downloads with,
azcore's `policy_retry.go`):

- a twirp call (`doWithRetries`) that gets HTTP 429 is made again after a backoff (1 s, doubling, at most
  90 s; BuildKit >= 0.27 waits the `Retry-After` instead, and fails when that is past its own timeout), for up
  to 5 minutes. Any other error status and any connection error fail at once.
- a blob download goes through the Azure SDK's retry policy (go-actions-cache sets 10 retries, 10 s base
  delay, 2 min at most): 408, 429, 500, 502, 503 and 504 and connection errors are tried again after
  `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After` when given, else after an exponential delay. A 403
  or 401 makes go-actions-cache ask GetCacheEntryDownloadURL for a fresh URL and try once more (`downloadV2`,
  BuildKit >= 0.24), which is how it survives a signed URL that expired (GitHub's live about 10 minutes).

The probe does the same within its budget: a lookup's 429 is waited out (its Retry-After, else 1 s, 2 s, ...)
while the budget lasts; a failed blob GET (401/403, a status the Azure SDK retries, a connection error) is
tried again on a fresh signed URL, up to MAX_SIGNED_URLS in all, after the answer's Retry-After or a short
backoff (the SDK's 10 s base delay would not fit a 20 s budget). It always asks for a fresh URL, because a URL
it waited on may have expired meanwhile. A cache is dropped only when it still fails: with the cause named.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .ghaenv import CLIENT_VERSION, GhaTarget
from .probehttp import OK, Budget, ProbeResult, client

if TYPE_CHECKING:
    import httpx

TWIRP_SERVICE = "twirp/github.actions.results.api.v1.CacheService"
MAX_SIGNED_URLS = 3  # blob GETs in all, each on a fresh signed URL after the first
REFRESH_STATUSES = frozenset({401, 403})  # go-actions-cache asks for a fresh URL (downloadV2)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # the Azure SDK's retry policy (azcore setDefaults)
BLOB_BACKOFF = (1.0, 2.0)  # seconds before the 2nd and 3rd blob GET when the answer names no Retry-After
LOOKUP_BACKOFF = (1.0, 90.0)  # go-actions-cache's BackoffPool: the first wait after a 429, and its cap
RANGE = {"x-ms-range": "bytes=0-0", "Range": "bytes=0-0"}


@dataclass(frozen=True)
class _Try:
    """One blob GET: served (nothing set), a `failure` worth another try (with its status and Retry-After), or
    a `final` verdict (a stall, an answer no client retries)."""

    failure: str | None = None
    status: int = 0
    retry_after: float | None = None
    final: ProbeResult | None = None


def probe_gha(target: GhaTarget, scope: str, timeout: float, environ: Mapping[str, str] | None = None) -> ProbeResult:
    """The scope's cache index looked up as BuildKit will look it up, and a first byte of its blob on a hit."""
    return _GhaProbe(target, scope, Budget(timeout), os.environ if environ is None else environ).run()


class _GhaProbe:
    """One probe: the target, the index key, and the budget every request and wait takes its time from."""

    def __init__(self, target: GhaTarget, scope: str, budget: Budget, env: Mapping[str, str]) -> None:
        self.target, self.budget, self.env = target, budget, env
        self.key = target.index_key(scope)

    def run(self) -> ProbeResult:
        found = self.lookup()
        if found is None or isinstance(found, ProbeResult):
            return found or OK
        return self.first_byte(found)

    # -- the service -------------------------------------------------------------------------------------
    def lookup(self) -> str | None | ProbeResult:
        """The signed (v2) or archive (v1) URL of the index, None on a miss; 429s waited out as the client does."""
        import httpx

        target = self.target
        backoff, tries = LOOKUP_BACKOFF[0], 0
        while True:
            tries += 1
            if self.budget.left() <= 0:
                return self._no_answer()
            try:
                response = self._ask(self.budget.left())
            except httpx.TimeoutException:
                return self._no_answer()
            except httpx.HTTPError as exc:
                return ProbeResult(f"{target.url}: {type(exc).__name__}: {exc}")
            if response.status_code != 429:
                break
            retry_after = _seconds(response.headers.get("Retry-After"))
            if not self.budget.wait(backoff if retry_after is None else retry_after):
                said = f"HTTP 429 ({_reason(response)})"
                if retry_after is None:
                    return self._answered(f"its service answered {said} to {tries} tries within {self._limit()}")
                return self._answered(
                    f"its service answered {said} with Retry-After {retry_after:g} s, beyond {self._limit()}"
                )
            backoff = min(backoff * 2, LOOKUP_BACKOFF[1])
        if response.status_code in (401, 403):
            return ProbeResult(f"it refused the runtime token: HTTP {response.status_code} {_reason(response)}", True)
        return _hit_url(target.version, response)

    def _ask(self, timeout: float) -> httpx.Response:
        target = self.target
        headers = {"Authorization": f"Bearer {target.token}"}
        base = target.url.rstrip("/")
        with client(target.url, timeout, self.env) as session:
            if target.version == 2:
                body = {"key": self.key, "restore_keys": [self.key], "version": CLIENT_VERSION}
                return session.post(f"{base}/{TWIRP_SERVICE}/GetCacheEntryDownloadURL", json=body, headers=headers)
            headers["Accept"] = "application/json;api-version=6.0-preview.1"
            params = {"keys": self.key, "version": CLIENT_VERSION}
            return session.get(f"{base}/_apis/artifactcache/cache", params=params, headers=headers)

    # -- blob storage ------------------------------------------------------------------------------------
    def first_byte(self, url: str) -> ProbeResult:
        """The first byte of a hit's blob (blob storage is another host, and fails on its own), tried again on
        fresh URLs as described above. v1's archive download is one plain GET in the client: tried once."""
        tries = MAX_SIGNED_URLS if self.target.version == 2 else 1
        failures: list[str] = []
        for attempt in range(tries):
            if attempt:
                fresh = self.lookup()
                if fresh is None or isinstance(fresh, ProbeResult):  # a miss now: the entry went away
                    return fresh or OK
                url = fresh
            host = urlsplit(url).netloc
            got = self._get(url, host)
            if got.final is not None:
                return got.final
            if got.failure is None:
                return OK
            failures.append(got.failure)
            if attempt + 1 == tries:
                break
            if got.retry_after is not None:
                wait = got.retry_after
            else:  # go-actions-cache asks again at once after a 403; the Azure SDK backs off after the rest
                wait = 0.0 if got.status in REFRESH_STATUSES else BLOB_BACKOFF[attempt]
            if not self.budget.wait(wait):
                if got.retry_after is not None:
                    return self._answered(
                        f"its blob storage ({host}) answered {got.failure} with Retry-After {got.retry_after:g} s, "
                        f"beyond {self._limit()}"
                    )
                return self._answered(_failed(host, failures) + f", and {self._limit()} ran out")
        return self._answered(_failed(host, failures))

    def _get(self, url: str, host: str) -> _Try:
        """One GET of the blob's first byte, within what is left of the budget."""
        import httpx

        if self.budget.left() <= 0:
            return _Try(final=self._blob_silent(host))
        try:
            with client(url, self.budget.left(), self.env) as session:
                response = session.get(url, headers=RANGE, timeout=self.budget.left())
        except httpx.TimeoutException:
            return _Try(final=self._blob_silent(host))
        except httpx.TransportError as exc:  # a reset, a refused connection: the Azure SDK tries again
            return _Try(failure=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return _Try(final=ProbeResult(f"its blob storage ({host}): {type(exc).__name__}: {exc}"))
        status = response.status_code
        if status in (200, 206):
            return _Try()
        failure = _blob_status(response)
        if status not in REFRESH_STATUSES | RETRY_STATUSES:
            return _Try(final=self._answered(f"its blob storage ({host}) answered {failure}"))
        return _Try(failure, status, _azure_retry_after(response.headers))

    # -- words ---------------------------------------------------------------------------------------------
    def _limit(self) -> str:
        return f"--cache-timeout {self.budget.seconds:g} s"

    def _blob_silent(self, host: str) -> ProbeResult:
        return ProbeResult(f"its blob storage ({host}) did not answer within {self.budget.seconds:g} s")

    def _no_answer(self) -> ProbeResult:
        return ProbeResult(f"no answer from {self.target.url} within {self.budget.seconds:g} s")

    @staticmethod
    def _answered(problem: str) -> ProbeResult:
        return ProbeResult(problem, answered=True)


def _hit_url(version: int, response: httpx.Response) -> str | None | ProbeResult:
    """The signed or archive URL of a hit, None for a miss, or what is wrong with the answer."""
    status = response.status_code
    if version == 1 and status == 204:
        return None
    if status != 200:
        return ProbeResult(f"HTTP {status} from {response.request.url}: {_reason(response)}")
    try:
        body = response.json()
    except ValueError:
        return ProbeResult(f"{response.request.url} answered HTTP 200 without JSON: not a cache service")
    if version == 2:
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            return ProbeResult(f"{response.request.url}: an answer without `ok`: not the v2 cache service")
        return body.get("signed_download_url") or None if body["ok"] else None
    return body.get("archiveLocation") if isinstance(body, dict) else None


def _failed(host: str, failures: list[str]) -> str:
    """`its blob storage (h) answered HTTP 403 (AuthenticationFailed) to 3 fresh signed URLs`, or each cause."""
    if len(failures) == 1:
        verb = "answered" if failures[0].startswith("HTTP ") else "failed with"
        return f"its blob storage ({host}) {verb} {failures[0]}"
    if len(set(failures)) == 1:
        if failures[0].startswith("HTTP "):
            return f"its blob storage ({host}) answered {failures[0]} to {len(failures)} fresh signed URLs"
        return f"its blob storage ({host}) failed {len(failures)} fresh signed URLs with {failures[0]}"
    return f"its blob storage ({host}) failed {len(failures)} fresh signed URLs: {'; '.join(failures)}"


def _blob_status(response: httpx.Response) -> str:
    """`HTTP 503 (ServerBusy)`: the status and Azure's error code."""
    code = response.headers.get("x-ms-error-code")
    return f"HTTP {response.status_code}" + (f" ({code})" if code else "")


def _azure_retry_after(headers: httpx.Headers) -> float | None:
    """The Azure SDK's delay from an answer (azcore `shared.RetryAfter`): milliseconds first, then seconds."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        millis = (headers.get(name) or "").strip()
        if millis.isdigit() and int(millis) > 0:
            return int(millis) / 1000
    value = _seconds(headers.get("Retry-After"))
    return value if value is not None and value > 0 else None


def _seconds(value: str | None) -> float | None:
    """A Retry-After value: whole seconds or an HTTP date (seconds from now); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return max(0.0, float(int(text)))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _reason(response: httpx.Response) -> str:
    """The error's own words: twirp's `msg`/`code`, v1's `message`, else the status phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("msg") or body.get("message") or body.get("code") or response.reason_phrase)
    return response.reason_phrase
