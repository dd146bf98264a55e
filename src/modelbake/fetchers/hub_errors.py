"""How huggingface_hub's failures become one FetchError line naming model, file and URL, and which are retried.

huggingface_hub raises its own errors, its HTTP client's (httpx, or the httpx2 fork in recent releases) and
`json`'s; a proxy's HTML page, a redirect loop or a server that is no Hub each surface differently. Classified
here, in one place, so the fetcher only says what it was doing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..download import backoff
from ..errors import WRITE_ERRNOS, FetchError, write_error

RETRIES = 5
T = TypeVar("T")


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_transport_error(exc: BaseException) -> bool:
    """Connection resets, timeouts, DNS failures: matched by class name, since the HTTP client's module differs
    between huggingface_hub releases (httpx, httpx2)."""
    names = _names(exc)
    return bool(names & {"TransportError", "TimeoutException", "NetworkError", "RemoteProtocolError"}) or isinstance(
        exc, (ConnectionError, TimeoutError)
    )


def transient(exc: BaseException) -> bool:
    """Worth another try: transport errors, 5xx and 429, and a failed lookup whose cause was one of those."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if is_transport_error(exc):
        return True
    if isinstance(exc, LocalEntryNotFoundError):  # hf_hub_download's HEAD failed: retry only what may pass
        return exc.__cause__ is None or transient(exc.__cause__)
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status is None or status >= 500 or status == 429
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException, repo: str, revision: str) -> tuple[str, str | None]:
    """(reason, hint) for one failure; the URL and the file are named by the caller."""
    from huggingface_hub.errors import (
        FileMetadataError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    proxy_hint = "a proxy or login page in the way? check the huggingface mirror URL and the proxy settings"
    if isinstance(exc, GatedRepoError):
        return "gated repo: access not granted", "accept the terms on the Hub and pass --hf-token-file"
    if isinstance(exc, RepositoryNotFoundError):
        return f"repository {repo} not found (or private)", "check `repo`, or pass a token for private repos"
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {revision!r} not found", "check `revision`"
    if isinstance(exc, RemoteEntryNotFoundError):
        return "file not found in the repo", "re-run `modelbake lock`"
    if isinstance(exc, FileMetadataError):  # a 200 without the Hub's headers (X-Repo-Commit, ETag)
        return "the answer is not a Hugging Face Hub's (no X-Repo-Commit header)", proxy_hint
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        return describe(exc.__cause__, repo, revision)  # hf_hub_download wraps the HEAD's failure
    if isinstance(exc, json.JSONDecodeError):  # the Hub API's answer, read by huggingface_hub with r.json()
        what = "an HTML page" if exc.doc.lstrip()[:1] == "<" else "something else"
        return f"the Hub API answered with {what}, not JSON", proxy_hint
    if "TooManyRedirects" in _names(exc):
        return "redirect loop: gave up after too many redirects", "check the huggingface mirror URL"
    if is_transport_error(exc):
        return f"download failed: {_first_line(exc)}", None
    return f"{type(exc).__name__}: {_first_line(exc)}", None


def with_retries(
    func: Callable[[], T],
    *,
    model_id: str,
    path: str,
    url: str,
    repo: str,
    revision: str,
    write_dir: Path,
    transport_retried: bool = False,
) -> T:
    """Call `func`, retrying transient failures with backoff; any failure becomes a FetchError naming the file.

    `transport_retried`: `func` already retried dropped connections itself (hf_hub_download resumes a cut body
    five times), so another round would only multiply the wait. A write error under `write_dir` (a full disk,
    a read-only file system) is the destination's, not the Hub's: a DestinationError.
    """
    for attempt in range(RETRIES):
        try:
            return func()
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified by `describe`, re-raised as FetchError with the cause
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
                raise write_error(exc, write_dir, model_id) from exc
            retried = transport_retried and is_transport_error(exc)
            if transient(exc) and not retried and attempt + 1 < RETRIES:
                time.sleep(backoff(attempt))
                continue
            reason, hint = describe(exc, repo, revision)
            raise FetchError(model_id, path, url, reason, hint) from exc
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
