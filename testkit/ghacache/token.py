"""The runtime token of the Actions cache v1 protocol: a JWT whose `ac` claim lists the scopes.

go-actions-cache (BuildKit's client) decodes the token without checking its signature and refuses it unless
`ac` is a JSON *string* of `[{"Scope": ..., "Permission": ...}]`, and `exp`/`nbf` are numbers with now between
them. The emulator reads the same claims to decide which scope an entry is written to and which scopes a
request may read. Signatures are not verified here either: this is a test double, not an access control.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

PERMISSION_READ = 1
PERMISSION_WRITE = 2
DEFAULT_SCOPE = "refs/heads/main"
DEFAULT_TTL = 6 * 3600  # what GitHub gives a job's ACTIONS_RUNTIME_TOKEN
_SIGNING_KEY = b"modelbake-ghacache-emulator"  # a well-formed HS256 token; nobody verifies it


class TokenError(ValueError):
    """The Authorization header holds no usable token (the server answers 401)."""


@dataclass(frozen=True)
class Scope:
    """One access-control entry: a ref (`refs/heads/main`) and a bit mask (1 read, 2 write)."""

    scope: str
    permission: int = PERMISSION_READ | PERMISSION_WRITE

    @property
    def readable(self) -> bool:
        return bool(self.permission & PERMISSION_READ)

    @property
    def writable(self) -> bool:
        return bool(self.permission & PERMISSION_WRITE)


@dataclass(frozen=True)
class Claims:
    """What the emulator needs from a token: its scopes, in the token's order."""

    scopes: tuple[Scope, ...]
    exp: float
    nbf: float

    @property
    def write_scope(self) -> str | None:
        """Where saves go: the last writable scope, as BuildKit's gha exporter picks it for its index key."""
        writable = [s.scope for s in self.scopes if s.writable]
        return writable[-1] if writable else None

    @property
    def read_scopes(self) -> list[str]:
        """Scopes a lookup searches, own (write) scope first, then the others (a PR reads its base branch)."""
        readable = [s.scope for s in self.scopes if s.readable]
        own = self.write_scope
        first = [own] if own in readable else []
        return first + [s for s in readable if s != own]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scope(item: str | Scope | tuple[str, int]) -> Scope:
    if isinstance(item, Scope):
        return item
    if isinstance(item, str):
        return Scope(item)
    name, permission = item
    return Scope(name, int(permission))


def make_token(
    scopes: Iterable[str | Scope | tuple[str, int]] = (DEFAULT_SCOPE,),
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """A token the client accepts. A bare string scope is read+write; `("refs/heads/main", 1)` is read-only.

    A pull request's token on GitHub looks like `make_token([("refs/heads/main", 1), "refs/pull/7/merge"])`.
    """
    issued = time.time() if now is None else now
    ac = [{"Scope": s.scope, "Permission": s.permission} for s in map(_scope, scopes)]
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {
        "ac": json.dumps(ac),  # a string holding JSON, as GitHub issues it and as the client insists
        "nbf": int(issued) - 60,  # a little slack for clock skew between the test and the daemon
        "iat": int(issued),
        "exp": int(issued + ttl),
        "iss": "modelbake-ghacache",
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(_SIGNING_KEY, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def parse_token(token: str, now: float | None = None) -> Claims:
    """Decode without verifying the signature (like the client); raise TokenError for what it would refuse."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT (want header.payload.signature)")
    try:
        payload = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise TokenError(f"undecodable JWT payload: {e}") from e
    if not isinstance(payload, dict):
        raise TokenError("JWT payload is not an object")
    ac, exp, nbf = payload.get("ac"), payload.get("exp"), payload.get("nbf")
    if not isinstance(ac, str):
        raise TokenError("claim `ac` missing or not a string")
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise TokenError("claims `exp` and `nbf` must be numbers")
    current = time.time() if now is None else now
    if current > exp:
        raise TokenError(f"token expired at {exp}")
    if current < nbf:
        raise TokenError(f"token not valid before {nbf}")
    try:
        entries = json.loads(ac)
        scopes = tuple(Scope(str(e["Scope"]), int(e["Permission"])) for e in entries)
    except (ValueError, TypeError, KeyError) as e:
        raise TokenError(f"claim `ac` is not a list of {{Scope, Permission}}: {e}") from e
    return Claims(scopes=scopes, exp=float(exp), nbf=float(nbf))


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header; TokenError when there is none."""
    kind, _, value = (header or "").strip().partition(" ")
    if kind.lower() != "bearer" or not value.strip():
        raise TokenError("missing `Authorization: Bearer <token>` header")
    return value.strip()
