"""Ask each remote cache one real question before a build, so a dead, stalled or refusing cache costs a
warning and a cold build instead of a failed or hung one.

BuildKit's cache clients set no HTTP timeout (go-actions-cache's twirp calls, the Azure blob client it
downloads with, and the registry client alike): a cache that accepts a connection and never answers stalls
the build for good. So build.py asks first, bounded by `--cache-timeout` for each cache:

- `gha` v2 (`ghaprobe`): an authenticated `GetCacheEntryDownloadURL` for the very index key BuildKit will
  read; on a hit, the first byte of its signed blob URL. What BuildKit's client survives, the probe survives
  too: a 429 is waited out, a refused, busy or reset blob GET is tried again on a fresh signed URL. A 401/403
  from the service is a refused token (said so, apart from a dead server); a miss is a healthy, empty cache.
- `gha` v1 (GitHub Enterprise Server): the same lookup on `_apis/artifactcache/cache`.
- `registry`: `GET /v2/` (any HTTP answer is a registry that answers; 401 asks for credentials, fine).

Every request goes where the daemon's Go client goes (`probehttp.proxy_for`: Go's proxy rules).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from .ghaenv import GhaTarget
from .ghaprobe import probe_gha
from .probehttp import OK, ProbeResult, client, is_loopback, proxy_for
from .spec import CacheBackend, gha_scope

__all__ = ["OK", "ProbeResult", "probe_gha", "probe_registry", "proxy_for", "usable_backends"]


def probe_registry(reference: str, timeout: float, environ: Mapping[str, str] | None = None) -> ProbeResult:
    """`GET /v2/` of the registry holding `reference`: any HTTP answer is a registry that answers."""
    import httpx

    env = os.environ if environ is None else environ
    host = reference.split("/", 1)[0]
    scheme = "http" if is_loopback(host.rsplit(":", 1)[0].strip("[]")) else "https"
    url = f"{scheme}://{host}/v2/"
    try:
        with client(url, timeout, env) as session:
            session.get(url)
    except httpx.TimeoutException:
        return ProbeResult(f"no answer from {url} within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(f"{url}: {type(exc).__name__}: {exc}")
    return OK


def usable_backends(
    backends: list[CacheBackend],
    timeout: float,
    models_scope: str,
    warn: Callable[[str], None],
    environ: Mapping[str, str] | None = None,
    *,
    gha: GhaTarget | None,
) -> list[CacheBackend]:
    """The backends that answer within `timeout`; a warning for each that does not (the build goes on without
    it). `models_scope` names the models image's cache scope, whose index the gha probe looks up; `gha` is the
    service the runner's variables name (ghaenv.resolve), needed when a backend is gha."""
    env = os.environ if environ is None else environ
    alive = []
    for backend in backends:
        if backend.kind == "gha":
            if gha is None:
                raise ValueError("a gha cache needs the resolved GhaTarget")
            result = probe_gha(gha, gha_scope(backend, models_scope), timeout, env)
            label = f"{backend.description} (v{gha.version} at {gha.url})"
        elif backend.kind == "registry":
            result, label = probe_registry(backend.value, timeout, env), backend.description
        else:
            result, label = OK, backend.description  # local directories and raw specs: nothing to ask
        if result.ok:
            alive.append(backend)
        elif result.refused:
            warn(f"{label}: {result.problem}: building without it (an expired token, or one from another job?)")
        elif result.answered:
            warn(f"{label} unusable ({result.problem}): building without it")
        else:
            warn(f"{label} unreachable ({result.problem}): building without it")
    return alive
