"""HTTP download into a temp file beside the target, sha256 checked, then renamed into place.

Used for Whisper checkpoints and spaCy wheels (plain files on a CDN or GitHub release); the Hub goes
through huggingface_hub. Nothing unverified ever sits at the final path: a failed check deletes the temp file.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import httpx

from .atomic import atomic_writer
from .digests import CHUNK, sha256_stream
from .errors import FetchError, IntegrityError, write_error

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
DEFAULT_RETRIES = 5
USER_AGENT = "modelbake"


def make_client() -> httpx.Client:
    """One client per run; trust_env honours proxies and SSL_CERT_FILE (the CA bundle in builds)."""
    return httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(30.0, read=120.0),
        headers={"User-Agent": USER_AGENT},
        trust_env=True,
    )


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s, ... capped at 8 s."""
    return min(8.0, 0.5 * 2.0**attempt) * (0.75 + random.random() / 2)


def _request_failure(exc: httpx.HTTPError, tries: int) -> str:
    """The reason part of a FetchError for httpx's own errors (the URL is named by the caller)."""
    if isinstance(exc, httpx.TooManyRedirects):
        return "redirect loop: gave up after too many redirects"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return f"unreachable after {tries} tries: {exc}"
    if isinstance(exc, httpx.TransportError):
        return f"download failed after {tries} tries: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _is_html(response: httpx.Response) -> bool:
    """A proxy's login page or a captive portal: HTML with status 200 where a model file was asked for."""
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower() == "text/html"


HTML_REASON = "the server answered with an HTML page (a proxy's login or error page?), not the file"


def _check_answer(response: httpx.Response, model_id: str, path: str, url: str) -> None:
    """An error status or an HTML page where the file belongs is a FetchError (the caller retries the statuses
    worth retrying first)."""
    if response.status_code >= 400:
        raise FetchError(model_id, path, url, f"HTTP {response.status_code}", status=response.status_code)
    if _is_html(response):
        raise FetchError(model_id, path, url, HTML_REASON)


def head_size(client: httpx.Client, url: str, model_id: str, path: str) -> int | None:
    """Content-Length of a URL, or None when the server does not say (chunked responses)."""
    for attempt in range(DEFAULT_RETRIES):
        try:
            response = client.head(url)
        except httpx.TransportError as exc:
            if attempt + 1 == DEFAULT_RETRIES:
                raise FetchError(model_id, path, url, _request_failure(exc, DEFAULT_RETRIES)) from exc
            time.sleep(backoff(attempt))
            continue
        except httpx.HTTPError as exc:
            raise FetchError(model_id, path, url, _request_failure(exc, attempt + 1)) from exc
        if response.status_code in RETRY_STATUSES and attempt + 1 < DEFAULT_RETRIES:
            time.sleep(backoff(attempt))
            continue
        _check_answer(response, model_id, path, url)
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else None
    return None


def remote_size(
    client: httpx.Client, url: str, model_id: str, path: str, expected_sha256: str, manifest_field: str | None = None
) -> int:
    """The size of a pinned file, for the lock: the HEAD's Content-Length, or, when the server streams without
    one (chunked), `checked_size`."""
    size = head_size(client, url, model_id, path)
    if size is not None:
        return size
    return checked_size(client, url, model_id, path, expected_sha256, manifest_field)


def checked_size(
    client: httpx.Client, url: str, model_id: str, path: str, expected_sha256: str, manifest_field: str | None = None
) -> int:
    """The size of a pinned file whose body is read once and checked against its sha256 (nothing is kept): how
    the lock measures a file and proves the pin names these bytes. An IntegrityError names `manifest_field`
    when the sha256 is the manifest's."""
    counted = 0

    def count(n: int) -> None:
        nonlocal counted
        counted += n

    download_verified(
        client,
        url,
        None,
        model_id=model_id,
        path=path,
        expected_sha256=expected_sha256,
        on_bytes=count,
        manifest_field=manifest_field,
    )
    return counted


def download_verified(
    client: httpx.Client,
    url: str,
    dest: Path | None,
    *,
    model_id: str,
    expected_sha256: str | None,
    expected_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    retries: int = DEFAULT_RETRIES,
    path: str | None = None,
    manifest_field: str | None = None,
) -> str:
    """Download `url` to `dest`; returns the sha256. Retries transient errors; raises FetchError/IntegrityError.

    With or without a Content-Length (a chunked body is streamed the same way): what counts is the size and
    sha256 of what arrived. `dest=None` only hashes (the lock measuring a file). A write error (full disk,
    read-only) is a DestinationError naming `dest`; the temp file is always removed. `manifest_field`: the
    manifest field `expected_sha256` comes from, if it does (see IntegrityError).
    """
    name = path or (dest.name if dest is not None else url.rsplit("/", 1)[-1])
    report = on_bytes or (lambda n: None)
    try:
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
        # The body goes to a temp file beside `dest`, renamed into place only once its size and sha256 are checked.
        with atomic_writer(dest, suffix=".incomplete") if dest is not None else nullcontext() as out:
            written = 0

            def body(response: httpx.Response) -> Iterator[bytes]:
                nonlocal written
                for chunk in response.iter_bytes(CHUNK):
                    if out is not None:
                        out.write(chunk)
                    written += len(chunk)
                    report(len(chunk))
                    if expected_size is not None and written > expected_size:
                        # Without a Content-Length nothing else bounds the body: stop at the lock's size.
                        raise FetchError(
                            model_id,
                            name,
                            url,
                            f"size mismatch: more than the expected {expected_size} bytes; discarded",
                        )
                    yield chunk

            for attempt in range(retries):
                written = 0
                try:
                    with client.stream("GET", url) as response:
                        if response.status_code in RETRY_STATUSES and attempt + 1 < retries:
                            time.sleep(backoff(attempt))
                            continue
                        _check_answer(response, model_id, name, url)
                        if out is not None:  # each try starts the file over
                            out.seek(0)
                            out.truncate()
                        actual = sha256_stream(body(response))
                    break
                except httpx.TransportError as exc:
                    report(-written)
                    if attempt + 1 == retries:
                        raise FetchError(model_id, name, url, _request_failure(exc, retries)) from exc
                    time.sleep(backoff(attempt))
                except httpx.HTTPError as exc:  # redirect loop, undecodable body: retrying would not help
                    report(-written)
                    raise FetchError(model_id, name, url, _request_failure(exc, attempt + 1)) from exc
            else:  # pragma: no cover - the loop always breaks or raises
                raise FetchError(model_id, name, url, "gave up")
            if expected_size is not None and written != expected_size:
                raise FetchError(
                    model_id, name, url, f"size mismatch: expected {expected_size} bytes, got {written}; discarded"
                )
            if expected_sha256 is not None and actual != expected_sha256:
                raise IntegrityError(model_id, name, url, expected_sha256, actual, manifest_field)
        return actual
    except OSError as exc:
        raise write_error(exc, dest, model_id) from exc
