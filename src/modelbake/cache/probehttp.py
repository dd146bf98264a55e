"""What the cache probes share: their verdict, their time budget, and an HTTP client that goes where the
cache client in the daemon goes.

Proxies: the cache client runs in Go and takes its proxy from the environment with `ProxyFromEnvironment`
(`HTTPS_PROXY`/`HTTP_PROXY` by scheme, `NO_PROXY`, and never for loopback); `proxy_for` applies the same
rules here, written by hand because httpx's own `trust_env` rules differ (it proxies loopback, reads
`ALL_PROXY`).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # imported where used: build.py needs httpx only when a cache is probed
    import httpx


@dataclass(frozen=True)
class ProbeResult:
    """No problem: the cache answered. `refused`: it answered, but not to this token. `answered`: it answered,
    but in a way BuildKit cannot use (throttled past the budget, blob storage refusing every URL)."""

    problem: str | None = None
    refused: bool = False
    answered: bool = False

    @property
    def ok(self) -> bool:
        return self.problem is None


OK = ProbeResult()


class Budget:
    """The seconds left of `--cache-timeout` for one cache's whole probe: every request's timeout and every
    wait between tries come out of it, so a stalled or throttling cache costs at most the budget."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._waited = 0.0

    def left(self) -> float:
        # The waits are counted on their own as well: under a clock whose sleep returns at once (the unit
        # tests'), the budget still runs out after the same waits as on the wall clock.
        return max(0.0, min(self._deadline - time.monotonic(), self.seconds - self._waited))

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds` if that leaves time for another try; False (and no sleep) when it would not."""
        if seconds >= self.left():
            return False
        if seconds > 0:
            time.sleep(seconds)  # looked up at call time: the unit tests' instant clock replaces it
            self._waited += seconds
        return True


def client(url: str, timeout: float, env: Mapping[str, str]) -> httpx.Client:
    """An httpx client for `url` with Go's proxy choice and the CA bundle the environment names."""
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(timeout), verify=_ca_bundle(env), trust_env=False, proxy=proxy_for(url, env)
    )


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
    if not host or host == "localhost" or is_loopback(host):
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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
