"""The blob side of the Actions cache v2: signed URLs and the Azure Block Blob operations BuildKit uses.

GitHub hands out Azure Blob Storage SAS URLs; BuildKit's client (go-actions-cache `cache_v2.go`) drives them
with the Azure SDK's `blockblob` client, which does exactly this (read from its source, `chunkwriting.go` and
the generated `zz_*_client.go` response handlers):

- upload (`UploadStream`, 1 MiB blocks, one at a time): a blob under one block is a single Put Blob
  (`PUT`, `x-ms-blob-type: BlockBlob`); a larger one is Put Block per block (`PUT ?comp=block&blockid=B64`),
  then Put Block List (`PUT ?comp=blocklist`, XML `<BlockList><Latest>id</Latest>...`). Each answers 201.
  The client dereferences the response's `x-ms-request-id`, and parses `Date`, `Last-Modified`, `ETag`,
  `Content-MD5` and `x-ms-request-server-encrypted` when present, so all of them are sent well formed.
- download (`DownloadStream`): `GET` with `x-ms-range: bytes=N-` when resuming at N (no range at 0), answered
  200 or 206 with `Content-Range`. A 403 or 401 makes the client ask the service for a fresh URL, once.
- errors: an XML `<Error><Code>..</Code><Message>..</Message></Error>` body and `x-ms-error-code`; a refused
  SAS adds `<AuthenticationErrorDetail>` saying why (expired, bad signature).

A SAS URL here is `/_blob/<kind>/<id>?sv=..&st=..&se=..&sr=b&sp=..&sig=..`, signed with HMAC-SHA256 over
its fields by a per-server key: a URL for one blob or permission cannot be turned into another, and one past
`se` (or issued before `Faults.urls_valid_from`) answers 403 AuthenticationFailed as Azure does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import parse_qs, urlencode
from xml.etree import ElementTree

BLOB_PREFIX = "/_blob/"
SAS_VERSION = "2024-11-04"
UPLOAD, DOWNLOAD = "upload", "download"
PERMISSIONS = {UPLOAD: "cw", DOWNLOAD: "r"}
MAX_BLOCK_LIST_BODY = 4 * 1024 * 1024


AUTH_FAILED = (
    "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly "
    "including the signature."
)


class SasError(Exception):
    """A signed URL that Azure would refuse with 403 AuthenticationFailed; the text is its detail."""


class SasExpired(SasError):
    """A signed URL past its expiry time (or issued before `Faults.urls_valid_from`)."""


@dataclass(frozen=True)
class SignedTarget:
    """What a valid signed URL grants: `kind` (upload/download) on blob `blob_id`."""

    kind: str
    blob_id: int
    issued: float


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


class Signer:
    """Signs and checks the SAS URLs of one server (a fresh random key per server)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)

    def _sig(self, kind: str, blob_id: int, st: str, se: str, sp: str) -> str:
        message = "\n".join((kind, str(blob_id), st, se, sp, SAS_VERSION)).encode()
        return base64.b64encode(hmac.new(self._key, message, hashlib.sha256).digest()).decode()

    def url(self, base_url: str, kind: str, blob_id: int, now: float | None = None, ttl: float | None = None) -> str:
        """A signed URL valid from now for `ttl` seconds (None: the signer's own)."""
        issued = time.time() if now is None else now
        st, se, sp = _iso(issued), _iso(issued + (self.ttl if ttl is None else ttl)), PERMISSIONS[kind]
        query = {
            "sv": SAS_VERSION,
            "st": st,
            "se": se,
            "sr": "b",
            "sp": sp,
            "sig": self._sig(kind, blob_id, st, se, sp),
        }
        return f"{base_url}{BLOB_PREFIX}{kind}/{blob_id}?{urlencode(query)}"

    def check(self, path: str, query: str, valid_from: float, now: float | None = None) -> SignedTarget:
        """The target of a request to a signed URL; SasError when Azure would refuse it."""
        parts = path[len(BLOB_PREFIX) :].strip("/").split("/")
        if len(parts) != 2 or parts[0] not in PERMISSIONS or not parts[1].isdigit():
            raise SasError(f"no such blob {path}")
        kind, blob_id = parts[0], int(parts[1])
        params = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            st, se, sp, sig = params["st"], params["se"], params["sp"], params["sig"]
            if params.get("sv") != SAS_VERSION or params.get("sr") != "b":
                raise KeyError("sv/sr")
            issued, expiry = _parse_iso(st), _parse_iso(se)
        except (KeyError, ValueError):
            raise SasError("sv, st, se, sr, sp and sig are mandatory") from None
        if not hmac.compare_digest(sig, self._sig(kind, blob_id, st, se, sp)):
            raise SasError("Signature did not match. String to sign used was " + kind)
        current = time.time() if now is None else now
        if current > expiry or issued < valid_from:
            raise SasExpired(expired_detail(expiry, current))
        return SignedTarget(kind, blob_id, issued)


def response_headers(request_id: str | None = None, client_request_id: str | None = None) -> dict[str, str]:
    """What every Azure Blob response carries; the Go client parses each of these when present."""
    headers = {
        "x-ms-request-id": request_id or str(uuid.uuid4()),
        "x-ms-version": SAS_VERSION,
        "Date": formatdate(usegmt=True),
        "Server": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0",
    }
    if client_request_id:
        headers["x-ms-client-request-id"] = client_request_id
    return headers


def blob_properties(etag: str, modified: float) -> dict[str, str]:
    return {
        "ETag": f'"{etag}"',
        "Last-Modified": formatdate(modified, usegmt=True),
        "x-ms-request-server-encrypted": "true",
    }


def download_properties(etag: str, modified: float) -> dict[str, str]:
    return {
        "ETag": f'"{etag}"',
        "Last-Modified": formatdate(modified, usegmt=True),
        "x-ms-creation-time": formatdate(modified, usegmt=True),
        "x-ms-blob-type": "BlockBlob",
        "x-ms-server-encrypted": "true",
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
    }


def expired_detail(expiry: float, current: float) -> str:
    """Azure's `AuthenticationErrorDetail` for a SAS past its expiry."""
    return (
        f"Signed expiry time [{formatdate(expiry, usegmt=True)}] must be after current time "
        f"[{formatdate(current, usegmt=True)}]"
    )


def error_body(code: str, message: str, auth_detail: str | None = None) -> bytes:
    """Azure Storage's XML error document (with `AuthenticationErrorDetail` for a refused SAS)."""
    request_id = uuid.uuid4()
    detail = f"<AuthenticationErrorDetail>{_xml_text(auth_detail)}</AuthenticationErrorDetail>" if auth_detail else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><Error>'
        f"<Code>{code}</Code><Message>{_xml_text(message)}\nRequestId:{request_id}\n"
        f"Time:{_iso(time.time())}</Message>{detail}</Error>"
    ).encode()


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_block_list(body: bytes) -> list[str]:
    """Block ids of a Put Block List body, in order (`Latest`, `Uncommitted` and `Committed` all name staged
    blocks here: nothing is ever committed before the list that commits it)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as e:
        raise ValueError(f"the block list is not XML: {e}") from None
    if root.tag != "BlockList":
        raise ValueError(f"the block list's root element is <{root.tag}>, not <BlockList>")
    ids = []
    for child in root:
        if child.tag not in ("Latest", "Uncommitted", "Committed") or not (child.text or "").strip():
            raise ValueError(f"unexpected <{child.tag}> in the block list")
        ids.append(child.text.strip())  # type: ignore[union-attr]
    return ids


def valid_block_id(block_id: str) -> bool:
    """Azure: base64, at most 64 bytes before encoding."""
    try:
        raw = base64.b64decode(block_id, validate=True)
    except ValueError:
        return False
    return 0 < len(raw) <= 64
