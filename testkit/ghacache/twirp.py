"""The Actions cache v2 service: twirp `github.actions.results.api.v1.CacheService`, as GitHub answers it.

Every call is `POST {ACTIONS_RESULTS_URL}/twirp/github.actions.results.api.v1.CacheService/<Method>` with
`Authorization: Bearer <ACTIONS_RUNTIME_TOKEN>`, `Content-Type: application/json` and a JSON body. What the
client (go-actions-cache `cache_v2.go`) sends and reads:

- `CreateCacheEntry {key, version}` -> `{"ok": true, "signed_upload_url"}`; a key+version already present in
  the token's write scope is the twirp error `already_exists` (HTTP 409), which the client maps to
  `os.ErrExist` (how BuildKit's index update finds the next free `#N`).
- `FinalizeCacheEntryUpload {key, size_bytes, version}` -> `{"ok": true, "entry_id": "<string>"}` once the
  blob holds exactly `size_bytes`.
- `GetCacheEntryDownloadURL {key, restore_keys, version}` -> `{"ok": true, "signed_download_url",
  "matched_key"}`, or HTTP 200 `{"ok": false}` on a miss (never an error status).

Errors are twirp's JSON `{"code", "msg"}` with the HTTP status twirp assigns to the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from testkit.ghacache.store import CacheStore, StoreError
from testkit.ghacache.token import Claims

T = TypeVar("T")

SERVICE_PREFIX = "/twirp/github.actions.results.api.v1.CacheService/"

# twirp's code -> HTTP status table (twitchtv/twirp errors.go).
TWIRP_STATUS = {
    "canceled": 408,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
}


class TwirpError(Exception):
    """A twirp error response: `code` (a key of TWIRP_STATUS) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return TWIRP_STATUS.get(self.code, 500)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.message}


@dataclass
class UrlMaker:
    """How the service names signed URLs: `upload(id)` and `download(id)` (the server binds its base URL)."""

    upload: Callable[[int], str]
    download: Callable[[int], str]


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or not value:
        raise TwirpError("invalid_argument", f"{name} is required")
    return value


def _size(body: dict[str, Any]) -> int:
    """`size_bytes`: an int64, which protobuf's JSON mapping also allows as a decimal string."""
    value = body.get("size_bytes")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TwirpError("invalid_argument", "size_bytes must be a non-negative integer")
    return value


def _write_scope(claims: Claims) -> str:
    scope = claims.write_scope
    if scope is None:
        raise TwirpError("permission_denied", "the token grants no scope with write permission")
    return scope


def _store_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except StoreError as e:
        raise TwirpError(e.code, e.message) from None


def create_cache_entry(store: CacheStore, claims: Claims, body: dict[str, Any], urls: UrlMaker) -> dict[str, Any]:
    key, version = _string(body, "key"), _string(body, "version")
    scope = _write_scope(claims)
    upload_id = _store_call(lambda: store.reserve(key, version, scope))
    return {"ok": True, "signed_upload_url": urls.upload(upload_id)}


def finalize_cache_entry_upload(
    store: CacheStore, claims: Claims, body: dict[str, Any], urls: UrlMaker
) -> dict[str, Any]:
    key, version, size = _string(body, "key"), _string(body, "version"), _size(body)
    scope = _write_scope(claims)
    entry = _store_call(lambda: store.finalize(key, version, scope, size))
    return {"ok": True, "entry_id": str(entry.id)}


def get_cache_entry_download_url(
    store: CacheStore, claims: Claims, body: dict[str, Any], urls: UrlMaker
) -> dict[str, Any]:
    key, version = _string(body, "key"), _string(body, "version")
    restore = body.get("restore_keys") or []
    if not isinstance(restore, list) or not all(isinstance(k, str) for k in restore):
        raise TwirpError("invalid_argument", "restore_keys must be a list of strings")
    entry = store.lookup([key, *restore], version, claims.read_scopes)
    if entry is None:
        return {"ok": False, "signed_download_url": "", "matched_key": ""}
    return {"ok": True, "signed_download_url": urls.download(entry.id), "matched_key": entry.key}


METHODS: dict[str, Callable[[CacheStore, Claims, dict[str, Any], UrlMaker], dict[str, Any]]] = {
    "CreateCacheEntry": create_cache_entry,
    "FinalizeCacheEntryUpload": finalize_cache_entry_upload,
    "GetCacheEntryDownloadURL": get_cache_entry_download_url,
}
