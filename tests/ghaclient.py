"""The client side of the Actions cache v2, as BuildKit drives it, for tests of the emulator and the probe.

Mirrors go-actions-cache `cache_v2.go` and the Azure SDK's blockblob client: twirp JSON calls with
`Authorization: Bearer` and the constant `version`; a blob under 1 MiB is one Put Blob, a larger one is Put
Block per 1 MiB block (one at a time) then Put Block List; a download is a GET with `x-ms-range: bytes=N-`
when it resumes at N.
"""

from __future__ import annotations

import base64
import random
import threading
import uuid
from urllib.parse import urlencode

import httpx

from testkit.ghacache import GO_ACTIONS_CACHE_VERSION, GhaCacheServer

SERVICE = "twirp/github.actions.results.api.v1.CacheService"
V = GO_ACTIONS_CACHE_VERSION
MIB = 1024 * 1024


def twirp(server: GhaCacheServer, method: str, body: dict, token: str | None = None, timeout: float = 10):
    headers = {"Content-Type": "application/json", "User-Agent": "buildkit/v0.25"}
    if token != "":
        headers["Authorization"] = f"Bearer {token or server.token}"
    with httpx.Client(timeout=timeout) as c:
        return c.post(f"{server.url}{SERVICE}/{method}", json=body, headers=headers)


def lookup(server: GhaCacheServer, key: str, *restore: str, token: str | None = None, version: str = V):
    return twirp(
        server, "GetCacheEntryDownloadURL", {"key": key, "restore_keys": [key, *restore], "version": version}, token
    )


def with_query(url: str, **params: str) -> str:
    """The signed URL with more query parameters, as the Azure client adds `comp` and `blockid` to it."""
    return f"{url}&{urlencode(params)}"


def upload(url: str, data: bytes, block: int = MIB) -> str:
    """The Azure client's UploadStream: Put Blob under one block, else Put Block each, then Put Block List."""
    with httpx.Client(timeout=30) as c:
        if len(data) < block:
            r = c.put(url, content=data, headers={"x-ms-blob-type": "BlockBlob", "x-ms-version": "2024-11-04"})
            assert r.status_code == 201, r.text
            return r.headers["x-ms-request-id"]
        prefix = uuid.uuid4().bytes
        ids = []
        for n, start in enumerate(range(0, len(data), block)):
            block_id = base64.b64encode(prefix + n.to_bytes(4, "big") + bytes(44)).decode()
            r = c.put(with_query(url, comp="block", blockid=block_id), content=data[start : start + block])
            assert r.status_code == 201, r.text
            assert r.headers["x-ms-request-id"]
            ids.append(block_id)
        body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(f"<Latest>{i}</Latest>" for i in ids)
        r = c.put(with_query(url, comp="blocklist"), content=body + "</BlockList>")
        assert r.status_code == 201, r.text
        return r.headers["x-ms-request-id"]


def save(server: GhaCacheServer, key: str, data: bytes, token: str | None = None) -> str:
    """The client's Save: CreateCacheEntry, upload to the signed URL, FinalizeCacheEntryUpload."""
    r = twirp(server, "CreateCacheEntry", {"key": key, "version": V}, token)
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True
    upload(r.json()["signed_upload_url"], data)
    r = twirp(server, "FinalizeCacheEntryUpload", {"key": key, "size_bytes": len(data), "version": V}, token)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["ok"] is True and isinstance(answer["entry_id"], str)  # a JSON string, as the client reads it
    return answer["entry_id"]


def download(url: str, offset: int = 0) -> httpx.Response:
    headers = {"x-ms-version": "2024-11-04"}
    if offset:
        headers["x-ms-range"] = f"bytes={offset}-"
    with httpx.Client(timeout=30) as c:
        return c.get(url, headers=headers)


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def held(server: GhaCacheServer) -> threading.Event:
    """Set the moment the server starts holding a request without answering (a stall logs the request with
    status 0 right then): what a test waits on, instead of sleeping and hoping the request got there."""
    event = threading.Event()
    append = server._log.append

    def note(record) -> None:
        append(record)
        if record.status == 0:
            event.set()

    server._log.append = note  # type: ignore[method-assign]
    return event
