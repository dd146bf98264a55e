"""HTTP download into a temp file beside the target, sha256 checked, then renamed into place.

Used for Whisper checkpoints and spaCy wheels (plain files on a CDN or GitHub release); the Hub goes
through huggingface_hub. Nothing unverified ever sits at the final path: a failed check deletes the temp file.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from .errors import FetchError, IntegrityError

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
    return min(8.0, 0.5 * 2**attempt) * (0.75 + random.random() / 2)


def head_size(client: httpx.Client, url: str, model_id: str, path: str) -> int | None:
    """Content-Length of a URL, or None when the server does not say."""
    for attempt in range(DEFAULT_RETRIES):
        try:
            response = client.head(url)
        except httpx.TransportError as exc:
            if attempt + 1 == DEFAULT_RETRIES:
                raise FetchError(model_id, path, url, f"unreachable: {exc}") from exc
            time.sleep(backoff(attempt))
            continue
        if response.status_code in RETRY_STATUSES and attempt + 1 < DEFAULT_RETRIES:
            time.sleep(backoff(attempt))
            continue
        if response.status_code >= 400:
            raise FetchError(model_id, path, url, f"HTTP {response.status_code}")
        length = response.headers.get("content-length")
        return int(length) if length and length.isdigit() else None
    return None


def download_verified(
    client: httpx.Client,
    url: str,
    dest: Path,
    *,
    model_id: str,
    expected_sha256: str | None,
    expected_size: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    retries: int = DEFAULT_RETRIES,
) -> str:
    """Download `url` to `dest`; returns the sha256. Retries transient errors; raises FetchError/IntegrityError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.incomplete")
    report = on_bytes or (lambda n: None)
    try:
        for attempt in range(retries):
            written = 0
            try:
                digest = hashlib.sha256()
                with client.stream("GET", url) as response:
                    if response.status_code in RETRY_STATUSES and attempt + 1 < retries:
                        time.sleep(backoff(attempt))
                        continue
                    if response.status_code >= 400:
                        raise FetchError(model_id, dest.name, url, f"HTTP {response.status_code}")
                    with open(tmp, "wb") as f:
                        for chunk in response.iter_bytes(1024 * 1024):
                            f.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            report(len(chunk))
                break
            except httpx.TransportError as exc:
                report(-written)
                if attempt + 1 == retries:
                    raise FetchError(model_id, dest.name, url, f"unreachable after {retries} tries: {exc}") from exc
                time.sleep(backoff(attempt))
        else:  # pragma: no cover - the loop always breaks or raises
            raise FetchError(model_id, dest.name, url, "gave up")
        actual = digest.hexdigest()
        if expected_size is not None and written != expected_size:
            raise FetchError(
                model_id, dest.name, url, f"size mismatch: expected {expected_size} bytes, got {written}; discarded"
            )
        if expected_sha256 is not None and actual != expected_sha256:
            raise IntegrityError(model_id, dest.name, url, expected_sha256, actual)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return actual
    finally:
        tmp.unlink(missing_ok=True)
