"""Which GitHub Actions cache protocol a build will speak, decided from the environment as buildx does.

buildx (`build/opt.go`, `addGithubToken`, 0.21 and later) fills a `type=gha` cache's attributes from the
step's environment: `version=2` when `ACTIONS_CACHE_SERVICE_V2` parses as true (Go's `strconv.ParseBool`),
`token` from `ACTIONS_RUNTIME_TOKEN`, `url_v2` from `ACTIONS_RESULTS_URL` (v2 only), `url` from
`ACTIONS_CACHE_URL` else `ACTIONS_RESULTS_URL`; and it silently drops the cache when the token or both URLs
are missing. BuildKit (`cache/remotecache/gha`) then uses v2 with `url_v2`, or, given no version, guesses v2
only for a `results-receiver.actions.githubusercontent.com` URL. `ACTIONS_CACHE_API_FORCE_VERSION=v1|v2`
is go-actions-cache's own override, which the build path never reads: build.py honours it by passing the
chosen `version=` attribute explicitly, so the probe, the engine check and BuildKit agree on one protocol.

Written by hand because buildx decides this inside its own process and reports nothing: a build that quietly
caches nothing, or speaks a protocol GitHub retired, is what this module exists to prevent.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..digests import sha256_bytes
from ..errors import UsageError

SERVICE_V2 = "ACTIONS_CACHE_SERVICE_V2"
FORCE_VERSION = "ACTIONS_CACHE_API_FORCE_VERSION"
RESULTS_URL = "ACTIONS_RESULTS_URL"
CACHE_URL = "ACTIONS_CACHE_URL"
RUNTIME_TOKEN = "ACTIONS_RUNTIME_TOKEN"
V2_HOST_HINT = "results-receiver.actions.githubusercontent.com"  # BuildKit's guess when no version is given
# Minimum versions for v2: buildx passes url_v2 from 0.21, BuildKit speaks v2 from 0.20 (in dockerd 28).
MIN_BUILDX_V2 = (0, 21)
MIN_BUILDKIT_V2 = (0, 20)
MIN_DOCKERD_V2 = (28, 0)
# The key prefix of BuildKit's cache index and the version go-actions-cache sends (`version()` in cache.go).
INDEX_FORMAT = "1"
CLIENT_VERSION = sha256_bytes(b"|go-actionscache-1.0")
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True)
class GhaTarget:
    """The cache service a `type=gha` cache will reach: protocol version, URL, token, and why this one."""

    version: int  # 1 or 2
    url: str
    token: str
    reason: str  # e.g. "ACTIONS_CACHE_SERVICE_V2=True"

    @property
    def description(self) -> str:
        return f"GitHub Actions cache v{self.version} at {self.url}"

    def index_key(self, scope: str) -> str:
        """The key BuildKit reads a scope's cache index under: `index-<scope>-1-<8 hex of the token scope>`
        (`indexKey`/`loadScope` in BuildKit's gha.go), with the token's write scope (else its first)."""
        scopes = token_scopes(self.token)
        writable = [s for s, permission in scopes if permission & 2]
        ref = (writable or [s for s, _ in scopes] or [""])[-1 if writable else 0]
        return f"index-{scope}-{INDEX_FORMAT}-{sha256_bytes(ref.encode())[:8]}"


def parse_go_bool(value: str) -> bool | None:
    """Go's `strconv.ParseBool`; None where it errors (buildx then ignores the variable)."""
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    return None


def resolve(environ: Mapping[str, str] | None = None) -> GhaTarget:
    """The protocol, URL and token a `type=gha` cache gets in this environment; UsageError where buildx would
    silently skip the cache or BuildKit would fail on it."""
    env = os.environ if environ is None else environ
    token = env.get(RUNTIME_TOKEN, "")
    forced = env.get(FORCE_VERSION, "")
    if forced and forced not in ("v1", "v2"):
        raise UsageError(f"{FORCE_VERSION}={forced!r}: expected v1 or v2")
    if forced:
        version, reason = int(forced[1]), f"{FORCE_VERSION}={forced}"
    elif parse_go_bool(env.get(SERVICE_V2, "")):
        version, reason = 2, f"{SERVICE_V2}={env[SERVICE_V2]}"
    elif V2_HOST_HINT in (env.get(CACHE_URL) or env.get(RESULTS_URL) or ""):
        version, reason = 2, f"{V2_HOST_HINT} in the URL (BuildKit's guess)"
    elif env.get(RESULTS_URL) and not env.get(CACHE_URL):
        raise UsageError(
            f"--cache gha: {RESULTS_URL} is set but {SERVICE_V2} is not: buildx would hand the v2 service's URL "
            "to BuildKit as a v1 URL (and buildx before 0.21 ignores it, building without the cache)",
            hint=f"set {SERVICE_V2}=true for GitHub's cache service (v2), as runners do",
        )
    else:
        version, reason = 1, f"{SERVICE_V2} not set"
    # v1 only ever reads ACTIONS_CACHE_URL (buildx's ACTIONS_RESULTS_URL fallback would point it at v2's URL).
    url = env.get(RESULTS_URL, "") if version == 2 else env.get(CACHE_URL, "")
    missing = [name for name, value in ((_url_name(version), url), (RUNTIME_TOKEN, token)) if not value]
    if missing:
        raise UsageError(
            f"--cache gha: {' and '.join(missing)} not set (cache protocol v{version}, {reason}), and buildx "
            "would silently build without the cache",
            hint="in a workflow, expose the runner's ACTIONS_* variables to the step (see docs/ci.md)",
        )
    try:
        token_scopes(token)
    except ValueError as exc:
        raise UsageError(f"--cache gha: {RUNTIME_TOKEN} is not a usable runtime token: {exc}") from exc
    return GhaTarget(version, url, token, reason)


def _url_name(version: int) -> str:
    return RESULTS_URL if version == 2 else CACHE_URL


def token_scopes(token: str) -> list[tuple[str, int]]:
    """The `ac` claim of a runtime token (a JWT, read without checking its signature, as the client does)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        ac = json.loads(payload["ac"])
        return [(str(item["Scope"]), int(item["Permission"])) for item in ac]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"no readable `ac` claim ({type(exc).__name__})") from None


def parse_version(text: str) -> tuple[int, int] | None:
    """`github.com/docker/buildx 0.29.1+ds1 ...` / `v0.21.0` / `28.5.2+dfsg4` -> (major, minor)."""
    for word in text.replace(",", " ").split():
        head = word.lstrip("v").split("+", 1)[0].split("-", 1)[0].split(".")
        if len(head) >= 2 and head[0].isdigit() and head[1].isdigit():
            return int(head[0]), int(head[1])
    return None


def engine_gaps(version: int, buildx: str, dockerd: str | None, buildkit: str | None = None) -> list[str]:
    """What the engine lacks for this protocol: empty when buildx and BuildKit can speak it.

    BuildKit's own version string is `v0.0.0+unknown` in Debian's dockerd build, so with the docker driver
    the daemon's version stands in for it (BuildKit >= 0.20 ships in dockerd >= 28).
    """
    if version != 2:
        return []
    gaps = []
    found = parse_version(buildx)
    if found is None or found < MIN_BUILDX_V2:
        gaps.append(
            f"buildx >= {_dotted(MIN_BUILDX_V2)} (found {buildx.split()[1] if len(buildx.split()) > 1 else buildx})"
        )
    kit = parse_version(buildkit or "")
    if kit is not None and kit > (0, 0):
        if kit < MIN_BUILDKIT_V2:
            gaps.append(f"BuildKit >= {_dotted(MIN_BUILDKIT_V2)} (found {buildkit})")
    elif dockerd is not None:
        daemon = parse_version(dockerd)
        if daemon is None or daemon < MIN_DOCKERD_V2:
            gaps.append(f"dockerd >= {_dotted(MIN_DOCKERD_V2)}, whose BuildKit is >= 0.20 (found {dockerd})")
    return gaps


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))
