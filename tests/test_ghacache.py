"""The GitHub Actions cache emulator (v1 protocol), driven over HTTP the way go-actions-cache drives it.

Requests mirror the client's (BuildKit 0.13 vendors tonistiigi/go-actions-cache, cache.go): the constant
`version`, `Authorization: Bearer`, chunk uploads with `Content-Range: bytes a-b/*` and chunked transfer
encoding, 4 at a time and out of order, then a commit with the size, and an archive GET without auth that
resumes with `Range: bytes=N-`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelbake.ghacache import GO_ACTIONS_CACHE_VERSION, GhaCacheServer, make_token, parse_token

pytestmark = [pytest.mark.unit, pytest.mark.loopback]

API = "_apis/artifactcache"
V = GO_ACTIONS_CACHE_VERSION
MIB = 1024 * 1024


@pytest.fixture
def gha(tmp_path):
    with GhaCacheServer(tmp_path / "gha") as server:
        yield server


def client(server: GhaCacheServer, token: str | None = None, timeout: float = 10) -> httpx.Client:
    headers = {"Accept": "application/json;api-version=6.0-preview.1"}
    if token != "":
        headers["Authorization"] = f"Bearer {token or server.token}"
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout)


def lookup(c: httpx.Client, *keys: str, version: str = V) -> httpx.Response:
    return c.get(f"{API}/cache", params={"keys": ",".join(keys), "version": version})


def reserve(c: httpx.Client, key: str, version: str = V) -> int:
    r = c.post(f"{API}/caches", json={"key": key, "version": version})
    assert r.status_code == 201, r.text
    return r.json()["cacheId"]


def patch(c: httpx.Client, cache_id: int, data: bytes, start: int, chunked: bool = True) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream", "Content-Range": f"bytes {start}-{start + len(data) - 1}/*"}
    # An iterator body makes httpx send `Transfer-Encoding: chunked`, as Go does for a SectionReader body.
    body = iter([data[: len(data) // 3], data[len(data) // 3 :]]) if chunked else data
    return c.patch(f"{API}/caches/{cache_id}", content=body, headers=headers)


def commit(c: httpx.Client, cache_id: int, size: int) -> httpx.Response:
    return c.post(f"{API}/caches/{cache_id}", json={"size": size})


def save(server: GhaCacheServer, key: str, data: bytes, chunk: int = MIB, token: str | None = None) -> int:
    """The client's Save: reserve, chunks 4 in parallel (the last one first), commit."""
    offsets = list(range(0, len(data), chunk))[::-1]
    with client(server, token) as c:
        cache_id = reserve(c, key)

        def one(start: int) -> int:
            with client(server, token) as own:
                return patch(own, cache_id, data[start : start + chunk], start).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(one, offsets)) == {204}
        r = commit(c, cache_id, len(data))
        assert r.status_code == 204, r.text
    return cache_id


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_miss_is_204_with_empty_body(gha):
    with client(gha) as c:
        r = lookup(c, "buildkit-blob-1-sha256:abc")
    assert r.status_code == 204
    assert r.content == b""


def test_save_then_hit_then_download_with_range(gha):
    data = blob(3 * MIB + 12345)
    cache_id = save(gha, "buildkit-blob-1-sha256:aaaa", data)
    assert gha.bytes_uploaded == len(data)
    assert gha.entry_count == 1
    with client(gha) as c:
        r = lookup(c, "buildkit-blob-1-sha256:aaaa")
    assert r.status_code == 200
    hit = r.json()
    assert hit["cacheKey"] == "buildkit-blob-1-sha256:aaaa"
    assert hit["scope"] == "refs/heads/main"
    assert hit["cacheVersion"] == V
    assert hit["archiveLocation"].startswith(gha.url.rstrip("/"))
    assert hit["archiveLocation"].endswith(f"/{cache_id}")
    with httpx.Client(timeout=10) as plain:  # no Authorization: the URL is pre-signed on GitHub
        whole = plain.get(hit["archiveLocation"])
        assert whole.status_code == 200
        assert whole.content == data
        offset = 2 * MIB + 7
        part = plain.get(hit["archiveLocation"], headers={"Range": f"bytes={offset}-"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes {offset}-{len(data) - 1}/{len(data)}"
        assert part.content == data[offset:]
        beyond = plain.get(hit["archiveLocation"], headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
    assert gha.bytes_downloaded == len(data) + len(data) - offset


def test_plain_content_length_chunks_work_too(gha):
    data = blob(100_000, seed=1)
    with client(gha) as c:
        cache_id = reserve(c, "k-plain")
        assert patch(c, cache_id, data[50_000:], 50_000, chunked=False).status_code == 204
        assert patch(c, cache_id, data[:50_000], 0, chunked=False).status_code == 204
        assert commit(c, cache_id, len(data)).status_code == 204
        location = lookup(c, "k-plain").json()["archiveLocation"]
        assert c.get(location).content == data


def test_prefix_match_returns_the_newest(gha):
    save(gha, "index-s-1-abcd#1", b"one")
    save(gha, "index-s-1-abcd#2", b"two")
    save(gha, "index-other-1-abcd#9", b"other")
    with client(gha) as c:
        assert lookup(c, "index-s-1-abcd#").json()["cacheKey"] == "index-s-1-abcd#2"
        assert lookup(c, "index-s-1-abcd").json()["cacheKey"] == "index-s-1-abcd#2"
        # keys are tried in order: the first that matches wins
        assert lookup(c, "nothing-", "index-s-1-abcd#1").json()["cacheKey"] == "index-s-1-abcd#1"
        assert lookup(c, "index-s-1-abcd#1", "index-other").json()["cacheKey"] == "index-s-1-abcd#1"
        # an exact match beats a newer entry that merely starts with the key
        save(gha, "index-s-1-abcd#1-newer", b"x")
        assert lookup(c, "index-s-1-abcd#1").json()["cacheKey"] == "index-s-1-abcd#1"
        assert lookup(c, "index-s-1-abcd#3").status_code == 204


def test_duplicate_key_is_409_already_exists_even_before_commit(gha):
    with client(gha) as c:
        reserve(c, "k")
        r = c.post(f"{API}/caches", json={"key": "k", "version": V})
        assert r.status_code == 409
        body = r.json()
        assert "AlreadyExists" in body["typeKey"]
        assert body["message"]  # the client only surfaces an error with a message
        # another version of the same key is another entry
        assert reserve(c, "k", version="other") > 0


def test_no_bearer_token_is_401(gha):
    save(gha, "k", b"data")
    with client(gha, token="") as c:
        assert lookup(c, "k").status_code == 401
        assert c.post(f"{API}/caches", json={"key": "k2", "version": V}).status_code == 401
        assert (
            c.get(f"{API}/cache", params={"keys": "k", "version": V}, headers={"Authorization": "Basic x"}).status_code
            == 401
        )
        assert (
            c.get(
                f"{API}/cache", params={"keys": "k", "version": V}, headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
    expired = make_token(now=time.time() - 7 * 3600)
    with client(gha, token=expired) as c:
        assert lookup(c, "k").status_code == 401
    with client(gha) as c:
        location = lookup(c, "k").json()["archiveLocation"]
    with httpx.Client(timeout=10) as plain:
        assert plain.get(location).status_code == 200  # archives need no token


def test_version_mismatch_is_a_miss(gha):
    save(gha, "k", b"data")
    with client(gha) as c:
        assert lookup(c, "k").status_code == 200
        assert lookup(c, "k", version="0" * 64).status_code == 204


def test_uncommitted_entries_are_invisible(gha):
    with client(gha) as c:
        cache_id = reserve(c, "k")
        assert patch(c, cache_id, b"abc", 0).status_code == 204
        assert lookup(c, "k").status_code == 204
        assert gha.entry_count == 0
        assert c.get(f"/_archives/{cache_id}").status_code == 404


def test_commit_with_wrong_size_or_a_hole_is_rejected(gha):
    with client(gha) as c:
        cache_id = reserve(c, "k")
        assert patch(c, cache_id, b"a" * 10, 0).status_code == 204
        assert patch(c, cache_id, b"c" * 10, 20).status_code == 204
        too_big = commit(c, cache_id, 40)
        assert too_big.status_code == 400
        assert "does not match" in too_big.json()["message"]
        assert commit(c, cache_id, 30).status_code == 400  # bytes 10-19 never arrived
        assert lookup(c, "k").status_code == 204
        assert patch(c, cache_id, b"b" * 10, 10).status_code == 204
        assert commit(c, cache_id, 30).status_code == 204  # the reservation survived the failed commits
        assert c.get(lookup(c, "k").json()["archiveLocation"]).content == b"a" * 10 + b"b" * 10 + b"c" * 10
        assert commit(c, cache_id, 30).status_code == 400  # committed once only
        assert patch(c, cache_id, b"x", 0).status_code == 400


def test_body_and_content_range_must_agree(gha):
    with client(gha) as c:
        cache_id = reserve(c, "k")
        headers = {"Content-Range": "bytes 0-9/*"}
        assert c.patch(f"{API}/caches/{cache_id}", content=b"short", headers=headers).status_code == 400
        assert c.patch(f"{API}/caches/{cache_id}", content=b"x", headers={"Content-Range": "0-0"}).status_code == 400
        assert c.patch(f"{API}/caches/999", content=b"x", headers={"Content-Range": "bytes 0-0/*"}).status_code == 404


def test_scopes_follow_the_token(gha):
    """Saves go to the token's write scope; a pull request's token also reads its base branch."""
    save(gha, "from-main", b"main")
    pr = gha.make_token([("refs/heads/main", 1), "refs/pull/7/merge"])
    save(gha, "from-pr", b"pr", token=pr)
    with client(gha, pr) as c:
        assert lookup(c, "from-main").json()["scope"] == "refs/heads/main"
        assert lookup(c, "from-pr").json()["scope"] == "refs/pull/7/merge"
    with client(gha) as c:
        assert lookup(c, "from-pr").status_code == 204  # main does not see a PR's entries
    # the PR's own scope is searched first: its entry shadows main's under the same key
    save(gha, "shared", b"main's")
    save(gha, "shared", b"pr's", token=pr)
    with client(gha, pr) as c:
        assert c.get(lookup(c, "shared").json()["archiveLocation"]).content == b"pr's"
    read_only = gha.make_token([("refs/heads/main", 1)])
    with client(gha, read_only) as c:
        assert lookup(c, "from-main").status_code == 200
        assert c.post(f"{API}/caches", json={"key": "x", "version": V}).status_code == 403


def test_token_claims_are_what_the_client_requires():
    token = make_token([("refs/heads/main", 1), "refs/pull/1/merge"])
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(claims["ac"], str)  # a string holding JSON, not a list
    assert json.loads(claims["ac"]) == [
        {"Scope": "refs/heads/main", "Permission": 1},
        {"Scope": "refs/pull/1/merge", "Permission": 3},
    ]
    assert claims["nbf"] <= time.time() < claims["exp"]
    parsed = parse_token(token)
    assert parsed.write_scope == "refs/pull/1/merge"
    assert parsed.read_scopes == ["refs/pull/1/merge", "refs/heads/main"]


def test_entries_survive_a_restart_and_ids_keep_growing(tmp_path):
    root = tmp_path / "gha"
    with GhaCacheServer(root) as first:
        first_id = save(first, "k", b"kept")
        with client(first) as c:
            cache_id = reserve(c, "half")
            patch(c, cache_id, b"x", 0)
    with GhaCacheServer(root) as second:
        assert [e.key for e in second.entries] == ["k"]
        with client(second) as c:
            assert c.get(lookup(c, "k").json()["archiveLocation"]).content == b"kept"
            assert lookup(c, "half").status_code == 204  # uploads in progress are dropped
            new_id = reserve(c, "new")
            assert new_id > max(first_id, cache_id)
    assert [p.name for p in (root / "uploads").iterdir()] == [f"{new_id}.part"]  # the first run's is gone


def test_request_log_and_counters(gha):
    save(gha, "k", b"12345")
    log = gha.requests
    assert [(r.method, r.status) for r in log] == [("POST", 201), ("PATCH", 204), ("POST", 204)]
    assert log[1].bytes_received == 5
    assert log[1].path == f"/{API}/caches/1"
    gha.clear_requests()
    assert gha.requests == []
    with client(gha) as c:
        c.get(lookup(c, "k").json()["archiveLocation"])
    assert [(r.method, r.status, r.bytes_sent) for r in gha.requests][-1] == ("GET", 200, 5)
    assert (gha.bytes_uploaded, gha.bytes_downloaded) == (5, 5)
    gha.reset_counters()
    assert (gha.bytes_uploaded, gha.bytes_downloaded) == (0, 0)


def test_stall_times_out_the_client_and_stop_still_returns(tmp_path):
    server = GhaCacheServer(tmp_path / "gha").start()
    url = server.url
    try:
        server.faults.stall = True
        with client(server, timeout=1) as c:
            started = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                lookup(c, "k")
            assert time.monotonic() - started < 5
        assert [(r.method, r.status) for r in server.requests] == [("GET", 0)]  # reached, never answered
        with client(server, timeout=30) as c, ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lookup, c, "k")  # a handler stalled right now, as in a stalled build
            time.sleep(0.3)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=5)  # the connection was closed, not left hanging
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as c:  # "down": a closed port
        c.get(url)


def test_stall_cleared_answers_again(gha):
    gha.faults.stall = True
    with client(gha, timeout=10) as c, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lookup, c, "k")
        time.sleep(0.3)
        assert not pending.done()
        gha.faults.clear()
        assert pending.result(timeout=5).status_code == 204


def test_cli_serve_prints_url_and_token_and_stops_on_sigterm(tmp_path):
    root = tmp_path / "cli-root"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelbake", "gha-cache", "serve", "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        fields = dict(part.split("=", 1) for part in line.split())
        assert set(fields) == {"url", "token"}, line
        assert fields["url"].startswith("http://127.0.0.1:") and fields["url"].endswith("/")
        parse_token(fields["token"])
        headers = {"Authorization": f"Bearer {fields['token']}"}
        with httpx.Client(base_url=fields["url"], headers=headers, timeout=10) as c:
            assert lookup(c, "k").status_code == 204
            reserve(c, "k")
        assert (root / "uploads").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_dash_m_entry_point_shows_help():
    proc = subprocess.run(
        [sys.executable, "-m", "modelbake.ghacache", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "--root" in proc.stdout
