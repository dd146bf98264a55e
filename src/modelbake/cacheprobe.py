"""Ask each remote cache one real question before a build, so a dead, stalled or refusing cache costs a
warning and a cold build instead of a failed or hung one.

BuildKit's cache clients set no HTTP timeout (go-actions-cache's twirp calls, the Azure blob client it
downloads with, and the registry client alike): a cache that accepts a connection and never answers stalls
the build for good. So build.py asks first, bounded by `--cache-timeout`:

- `gha` v2: an authenticated `GetCacheEntryDownloadURL` for the very index key BuildKit will read; on a hit,
  the first byte of its signed blob URL. A 401/403 from the service is a refused token (said so, apart from a
  dead server); a miss is a healthy, empty cache.
- `gha` v1 (GitHub Enterprise Server): the same lookup on `_apis/artifactcache/cache`.
- `registry`: `GET /v2/` (any HTTP answer is a registry that answers; 401 asks for credentials, fine).

Proxies: the cache client runs in Go and takes its proxy from the environment with `ProxyFromEnvironment`
(`HTTPS_PROXY`/`HTTP_PROXY` by scheme, `NO_PROXY`, and never for loopback); `proxy_for` applies the same
rules here, written by hand because httpx's own `trust_env` rules differ (it proxies loopback, reads
`ALL_PROXY`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .cachespec import CacheBackend, gha_scope
from .ghaenv import CLIENT_VERSION, GhaTarget, resolve

if TYPE_CHECKING:  # imported where used: build.py needs httpx only when a cache is probed
    import httpx

TWIRP_SERVICE = "twirp/github.actions.results.api.v1.CacheService"


@dataclass(frozen=True)
class ProbeResult:
    """None of the fields set: the cache answered. `refused`: it answered, but not to this token."""

    problem: str | None = None
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


OK = ProbeResult()


def probe_gha(target: GhaTarget, scope: str, timeout: float, environ: Mapping[str, str] | None = None) -> ProbeResult:
    """One lookup of the scope's cache index, as BuildKit will do it, and a first byte of its blob on a hit."""
    import httpx

    env = os.environ if environ is None else environ
    key = target.index_key(scope)
    headers = {"Authorization": f"Bearer {target.token}"}
    base = target.url.rstrip("/")
    try:
        with _client(target.url, timeout, env) as client:
            if target.version == 2:
                url = f"{base}/{TWIRP_SERVICE}/GetCacheEntryDownloadURL"
                body = {"key": key, "restore_keys": [key], "version": CLIENT_VERSION}
                response = client.post(url, json=body, headers=headers)
            else:
                url = f"{base}/_apis/artifactcache/cache"
                params = {"keys": key, "version": CLIENT_VERSION}
                headers["Accept"] = "application/json;api-version=6.0-preview.1"
                response = client.get(url, params=params, headers=headers)
    except httpx.TimeoutException:
        return ProbeResult(f"no answer from {target.url} within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(f"{target.url}: {type(exc).__name__}: {exc}")
    if response.status_code in (401, 403):
        return ProbeResult(f"it refused the runtime token: HTTP {response.status_code} {_reason(response)}", True)
    blob_url = _hit_url(target.version, response)
    if isinstance(blob_url, ProbeResult):
        return blob_url
    return OK if blob_url is None else _probe_blob(blob_url, timeout, env)


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


def _probe_blob(url: str, timeout: float, env: Mapping[str, str]) -> ProbeResult:
    """The first byte of a hit's blob: blob storage sits behind another host, and can stall on its own."""
    import httpx

    host = urlsplit(url).netloc
    try:
        with _client(url, timeout, env) as client:
            response = client.get(url, headers={"x-ms-range": "bytes=0-0", "Range": "bytes=0-0"})
    except httpx.TimeoutException:
        return ProbeResult(f"its blob storage ({host}) did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(f"its blob storage ({host}): {type(exc).__name__}: {exc}")
    if response.status_code not in (200, 206):
        return ProbeResult(f"its blob storage ({host}) answered HTTP {response.status_code} to a fresh signed URL")
    return OK


def probe_registry(reference: str, timeout: float, environ: Mapping[str, str] | None = None) -> ProbeResult:
    """`GET /v2/` of the registry holding `reference`: any HTTP answer is a registry that answers."""
    import httpx

    env = os.environ if environ is None else environ
    host = reference.split("/", 1)[0]
    scheme = "http" if _is_loopback(host.rsplit(":", 1)[0].strip("[]")) else "https"
    url = f"{scheme}://{host}/v2/"
    try:
        with _client(url, timeout, env) as client:
            client.get(url)
    except httpx.TimeoutException:
        return ProbeResult(f"no answer from {url} within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(f"{url}: {type(exc).__name__}: {exc}")
    return OK


def _client(url: str, timeout: float, env: Mapping[str, str]) -> httpx.Client:
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(timeout), verify=_ca_bundle(env), trust_env=False, proxy=proxy_for(url, env)
    )


def _reason(response: httpx.Response) -> str:
    """The error's own words: twirp's `msg`/`code`, v1's `message`, else the status phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("msg") or body.get("message") or body.get("code") or response.reason_phrase)
    return response.reason_phrase


def _ca_bundle(env: Mapping[str, str]) -> str | bool:
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if env.get(name) and Path(env[name]).is_file():
            return env[name]
    return True


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy Go's `http.ProxyFromEnvironment` picks for `url`, or None (golang.org/x/net/http/httpproxy).

    `HTTPS_PROXY` for https, `HTTP_PROXY` for http (upper case first, then lower); none for loopback hosts;
    none when `NO_PROXY` lists `*`, the host (optionally with its port), a parent domain (`example.com`
    matches itself and `a.example.com`; `.example.com` only the latter), or a CIDR holding the host's IP. A proxy without a scheme is http://.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host or host == "localhost" or _is_loopback(host):
        return None
    names = ("HTTPS_PROXY", "https_proxy") if parts.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    proxy = next((env[n] for n in names if env.get(n)), "")
    if not proxy or _no_proxy(host, port, env.get("NO_PROXY") or env.get("no_proxy") or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _no_proxy(host: str, port: int, spec: str) -> bool:
    for raw in (item.strip().lower() for item in spec.split(",")):
        if not raw:
            continue
        if raw == "*":
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(raw, strict=False):
                return True
            continue
        except ValueError:
            pass
        name, _, want_port = raw.rpartition(":") if raw.count(":") == 1 else (raw, "", "")
        if want_port and want_port != str(port):
            continue
        name = name[1:] if name.startswith("*.") else name
        if host.endswith(name if name.startswith(".") else "." + name) or host == name:
            return True
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def usable_backends(
    backends: list[CacheBackend],
    timeout: float,
    models_scope: str,
    warn: Callable[[str], None],
    environ: Mapping[str, str] | None = None,
) -> list[CacheBackend]:
    """The backends that answer within `timeout`; a warning for each that does not (the build goes on without
    it). `models_scope` names the models image's cache scope, whose index the gha probe looks up."""
    env = os.environ if environ is None else environ
    alive = []
    for backend in backends:
        if backend.kind == "gha":
            target = resolve(env)
            result = probe_gha(target, gha_scope(backend, models_scope), timeout, env)
            label = f"{backend.label} (v{target.version} at {target.url})"
        elif backend.kind == "registry":
            result, label = probe_registry(backend.value, timeout, env), backend.label
        else:
            result, label = OK, backend.label  # local directories and raw specs: nothing to ask
        if result.ok:
            alive.append(backend)
        elif result.refused:
            warn(f"{label}: {result.problem}: building without it (an expired token, or one from another job?)")
        else:
            warn(f"{label} unreachable ({result.problem}): building without it")
    return alive
