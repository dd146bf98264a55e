"""The GitHub Actions cache emulator (v2 protocol), driven over HTTP the way BuildKit's client drives it.

Requests mirror go-actions-cache `cache_v2.go` and the Azure SDK's blockblob client it uses: twirp JSON calls
with `Authorization: Bearer`, the constant `version`; a blob under 1 MiB is one Put Blob, a larger one is
Put Block per 1 MiB block (one at a time) then Put Block List; a download is a GET with `x-ms-range: bytes=N-`
when it resumes at N. Answers are checked against what that client reads, and against what GitHub refuses.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import httpx
import pytest
from ghaclient import MIB, SERVICE, V, blob, download, held, lookup, save, twirp, upload, with_query

from conftest import REPO
from testkit.ghacache import GhaCacheServer, make_token, parse_token

pytestmark = [pytest.mark.unit, pytest.mark.loopback]


@pytest.fixture
def gha(tmp_path):
    with GhaCacheServer(tmp_path / "gha") as server:
        yield server


def test_a_miss_is_http_200_with_ok_false(gha):
    r = lookup(gha, "buildkit-blob-1-sha256:abc")
    assert r.status_code == 200
    assert r.json()["ok"] is False


def test_save_in_blocks_then_hit_then_download_with_x_ms_range(gha):
    data = blob(3 * MIB + 12345)
    save(gha, "buildkit-blob-1-sha256:aaaa", data)
    assert gha.bytes_uploaded == len(data)
    assert [e.key for e in gha.entries] == ["buildkit-blob-1-sha256:aaaa"]
    hit = lookup(gha, "buildkit-blob-1-sha256:aaaa").json()
    assert hit["ok"] is True and hit["matched_key"] == "buildkit-blob-1-sha256:aaaa"
    url = hit["signed_download_url"]
    assert url.startswith(gha.url.rstrip("/")) and "sig=" in url
    whole = download(url)  # no Authorization: a SAS URL carries its own
    assert whole.status_code == 200 and whole.content == data
    assert int(whole.headers["Content-Length"]) == len(data)
    for name in ("Last-Modified", "Date", "x-ms-creation-time"):  # the Go client parses these as RFC 1123
        parsedate_to_datetime(whole.headers[name])
    assert whole.headers["x-ms-request-id"] and whole.headers["x-ms-blob-type"] == "BlockBlob"
    offset = 2 * MIB + 7
    part = download(url, offset)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes {offset}-{len(data) - 1}/{len(data)}"
    assert part.content == data[offset:]
    assert download(url, len(data)).status_code == 416
    assert gha.bytes_downloaded == len(data) + len(data) - offset


def test_a_small_blob_is_one_put_blob_with_the_headers_the_client_reads(gha):
    r = twirp(gha, "CreateCacheEntry", {"key": "index-x-1-abcd#1", "version": V})
    url = r.json()["signed_upload_url"]
    with httpx.Client(timeout=10) as c:
        put = c.put(url, content=b"{}", headers={"x-ms-blob-type": "BlockBlob"})
    assert put.status_code == 201
    assert put.headers["x-ms-request-id"]  # dereferenced by go-actions-cache after the upload
    parsedate_to_datetime(put.headers["Last-Modified"])
    assert put.headers["ETag"].startswith('"') and put.headers["x-ms-request-server-encrypted"] == "true"
    r = twirp(gha, "FinalizeCacheEntryUpload", {"key": "index-x-1-abcd#1", "size_bytes": "2", "version": V})
    assert r.json()["ok"] is True  # size_bytes as a string: protobuf's JSON form of an int64
    assert download(lookup(gha, "index-x-1-abcd#").json()["signed_download_url"]).content == b"{}"


def test_prefix_match_returns_the_newest(gha):
    save(gha, "index-s-1-abcd#1", b"one")
    save(gha, "index-s-1-abcd#2", b"two")
    save(gha, "index-other-1-abcd#9", b"other")
    assert lookup(gha, "index-s-1-abcd#").json()["matched_key"] == "index-s-1-abcd#2"
    # restore keys are tried in order after the key: the first that matches wins
    assert lookup(gha, "nothing-", "index-s-1-abcd#1").json()["matched_key"] == "index-s-1-abcd#1"
    save(gha, "index-s-1-abcd#1-newer", b"x")
    assert lookup(gha, "index-s-1-abcd#1").json()["matched_key"] == "index-s-1-abcd#1"  # exact beats newer
    assert lookup(gha, "index-s-1-abcd#3").json()["ok"] is False


def test_a_duplicate_key_is_twirp_already_exists_even_before_finalize(gha):
    assert twirp(gha, "CreateCacheEntry", {"key": "k", "version": V}).status_code == 200
    r = twirp(gha, "CreateCacheEntry", {"key": "k", "version": V})
    assert r.status_code == 409
    assert r.json()["code"] == "already_exists"  # the client maps this code to os.ErrExist
    assert twirp(gha, "CreateCacheEntry", {"key": "k", "version": "other"}).json()["ok"] is True


def test_finalize_needs_the_uploaded_blob_of_exactly_that_size(gha):
    url = twirp(gha, "CreateCacheEntry", {"key": "k", "version": V}).json()["signed_upload_url"]
    early = twirp(gha, "FinalizeCacheEntryUpload", {"key": "k", "size_bytes": 3, "version": V})
    assert early.status_code == 412 and early.json()["code"] == "failed_precondition"
    upload(url, b"abc")
    wrong = twirp(gha, "FinalizeCacheEntryUpload", {"key": "k", "size_bytes": 4, "version": V})
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid_argument"
    assert lookup(gha, "k").json()["ok"] is False  # not visible before a good finalize
    assert twirp(gha, "FinalizeCacheEntryUpload", {"key": "k", "size_bytes": 3, "version": V}).json()["ok"]
    again = twirp(gha, "FinalizeCacheEntryUpload", {"key": "k", "size_bytes": 3, "version": V})
    assert again.status_code == 404
    with httpx.Client(timeout=10) as c:  # the upload URL is dead once the entry is final
        late = c.put(url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
    assert late.status_code == 404 and late.headers["x-ms-error-code"] == "BlobNotFound"


def test_a_block_list_naming_an_unstaged_block_is_refused(gha):
    url = twirp(gha, "CreateCacheEntry", {"key": "k", "version": V}).json()["signed_upload_url"]
    ghost = base64.b64encode(bytes(64)).decode()
    with httpx.Client(timeout=10) as c:
        r = c.put(with_query(url, comp="blocklist"), content=f"<BlockList><Latest>{ghost}</Latest></BlockList>")
        assert r.status_code == 400 and r.headers["x-ms-error-code"] == "InvalidBlockList"
        assert b"<Code>InvalidBlockList</Code>" in r.content
        bad_id = c.put(with_query(url, comp="block", blockid="not base64!"), content=b"x")
        assert bad_id.status_code == 400


def test_no_or_bad_bearer_token_is_twirp_unauthenticated(gha):
    save(gha, "k", b"data")
    assert lookup(gha, "k", token="").status_code == 401
    assert lookup(gha, "k", token="nope").json()["code"] == "unauthenticated"
    expired = make_token(now=time.time() - 7 * 3600)
    assert lookup(gha, "k", token=expired).status_code == 401
    with httpx.Client(timeout=10) as c:  # Basic is not Bearer
        headers = {"Authorization": "Basic eDp5", "Content-Type": "application/json"}
        r = c.post(f"{gha.url}{SERVICE}/GetCacheEntryDownloadURL", json={"key": "k", "version": V}, headers=headers)
    assert r.status_code == 401
    assert download(lookup(gha, "k").json()["signed_download_url"]).status_code == 200  # SAS URLs need no token


def test_twirp_routing_is_strict(gha):
    with httpx.Client(timeout=10) as c:
        headers = {"Authorization": f"Bearer {gha.token}"}
        wrong_type = c.post(f"{gha.url}{SERVICE}/GetCacheEntryDownloadURL", content=b"{}", headers=headers)
        assert wrong_type.status_code == 404 and wrong_type.json()["code"] == "bad_route"
        get = c.get(f"{gha.url}{SERVICE}/GetCacheEntryDownloadURL", headers=headers)
        assert get.status_code == 404
    assert twirp(gha, "DeleteCacheEntry", {"key": "k"}).status_code == 404
    assert twirp(gha, "GetCacheEntryDownloadURL", {"key": "", "version": V}).json()["code"] == "invalid_argument"
    r = twirp(gha, "GetCacheEntryDownloadURL", {"key": "k", "version": V, "restore_keys": "k"})
    assert r.status_code == 400


def test_the_retired_v1_api_is_not_served(gha):
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {gha.token}"}) as c:
        r = c.get(f"{gha.url}_apis/artifactcache/cache", params={"keys": "k", "version": V})
    assert r.status_code == 404
    assert [(x.method, x.status) for x in gha.requests] == [("GET", 404)]


def test_signed_urls_cannot_be_forged_or_reused_for_another_blob_or_verb(gha):
    save(gha, "a", b"aaa")
    save(gha, "b", b"bbb")
    url_a = lookup(gha, "a").json()["signed_download_url"]
    url_b = lookup(gha, "b").json()["signed_download_url"]
    forged = url_a.replace("/download/", "/upload/")
    other = url_b.split("?")[0] + "?" + url_a.split("?")[1]
    for url in (forged, other, url_a.split("?")[0], url_a.replace("sig=", "sig=x")):
        r = download(url)
        assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthenticationFailed", url
    with httpx.Client(timeout=10) as c:
        r = c.put(url_a, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
    assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"


def test_expired_urls_answer_403_and_a_fresh_lookup_works(gha):
    """What BuildKit meets when a long build outlives its signed URL: it asks the service again, once."""
    save(gha, "k", b"payload")
    stale = lookup(gha, "k").json()["signed_download_url"]
    gha.faults.expire_signed_urls()  # issued before now (an HTTP round trip ago): expired
    r = download(stale)
    assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthenticationFailed"
    fresh = lookup(gha, "k").json()["signed_download_url"]
    assert download(fresh).content == b"payload"


def test_short_lived_urls_expire_by_themselves(tmp_path, signer_clock):
    """A URL signed for 0.5 s answers 403 one second later: on a clock the test moves (the signer's `time`)."""
    with GhaCacheServer(tmp_path / "gha", url_ttl=0.5) as gha:
        save(gha, "k", b"x")
        url = lookup(gha, "k").json()["signed_download_url"]
        signer_clock.now += 0.4
        assert download(url).status_code == 200
        signer_clock.now += 0.6
        r = download(url)
        assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthenticationFailed"


def test_scopes_follow_the_token(gha):
    """Saves go to the token's write scope; a pull request's token also reads its base branch."""
    save(gha, "from-main", b"main")
    pr = gha.make_token([("refs/heads/main", 1), "refs/pull/7/merge"])
    save(gha, "from-pr", b"pr", token=pr)
    assert lookup(gha, "from-main", token=pr).json()["ok"] is True
    assert lookup(gha, "from-pr", token=pr).json()["ok"] is True
    assert lookup(gha, "from-pr").json()["ok"] is False  # main does not see a PR's entries
    save(gha, "shared", b"main's")
    save(gha, "shared", b"pr's", token=pr)  # the same key in another scope is another entry
    assert download(lookup(gha, "shared", token=pr).json()["signed_download_url"]).content == b"pr's"
    read_only = gha.make_token([("refs/heads/main", 1)])
    assert lookup(gha, "from-main", token=read_only).json()["ok"] is True
    denied = twirp(gha, "CreateCacheEntry", {"key": "x", "version": V}, token=read_only)
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"


def test_version_mismatch_is_a_miss(gha):
    save(gha, "k", b"data")
    assert lookup(gha, "k").json()["ok"] is True
    assert lookup(gha, "k", version="0" * 64).json()["ok"] is False


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


def test_entries_survive_a_restart_and_uploads_in_progress_do_not(tmp_path):
    root = tmp_path / "gha"
    with GhaCacheServer(root) as first:
        save(first, "k", b"kept")
        half = twirp(first, "CreateCacheEntry", {"key": "half", "version": V}).json()["signed_upload_url"]
        upload(half, b"x")
    with GhaCacheServer(root) as second:
        assert [e.key for e in second.entries] == ["k"]
        assert download(lookup(second, "k").json()["signed_download_url"]).content == b"kept"
        assert lookup(second, "half").json()["ok"] is False
        assert twirp(second, "CreateCacheEntry", {"key": "half", "version": V}).json()["ok"]  # free again
    assert list((root / "uploads").iterdir()) == []


def test_request_log_and_counters(gha):
    save(gha, "k", b"12345")
    log = gha.requests
    assert [(r.method, r.status) for r in log] == [("POST", 200), ("PUT", 201), ("POST", 200)]
    assert log[1].bytes_received == 5
    gha.clear_requests()
    download(lookup(gha, "k").json()["signed_download_url"])
    assert [(r.method, r.status, r.bytes_sent) for r in gha.requests][-1] == ("GET", 200, 5)
    assert [e.key for e in gha.downloaded_entries()] == ["k"]
    assert (gha.bytes_uploaded, gha.bytes_downloaded) == (5, 5)
    gha.reset_counters()
    assert (gha.bytes_uploaded, gha.bytes_downloaded) == (0, 0)


def test_stalled_downloads_hold_only_the_blob_and_stop_still_returns(tmp_path):
    server = GhaCacheServer(tmp_path / "gha").start()
    try:
        save(server, "k", b"bytes")
        url = lookup(server, "k").json()["signed_download_url"]
        server.faults.stall_downloads = ""
        assert lookup(server, "k").json()["ok"] is True  # the service still answers
        with httpx.Client(timeout=0.25) as c, pytest.raises(httpx.TimeoutException):
            c.get(url)
        stalled = held(server)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(download, url)  # a handler stalled right now, as in a stalled build
            assert stalled.wait(5)
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=5)  # the connection was closed, not left hanging
    finally:
        server.stop()


def test_a_full_stall_cleared_answers_again(gha):
    gha.faults.stall = True
    stalled = held(gha)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lookup, gha, "k")
        assert stalled.wait(5)
        assert not pending.done()
        assert [(r.method, r.status) for r in gha.requests] == [("POST", 0)]  # reached, never answered
        gha.faults.clear()
        assert pending.result(timeout=5).json()["ok"] is False


def test_cli_serve_prints_the_runner_variables_and_stops_on_sigterm(tmp_path):
    root = tmp_path / "cli-root"
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.ghacache", "serve", "--root", str(root)],
        cwd=REPO,  # testkit is test support beside src/, importable from the repository root
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert env["ACTIONS_CACHE_SERVICE_V2"] == "True"
        assert env["ACTIONS_RESULTS_URL"].startswith("http://127.0.0.1:") and env["ACTIONS_RESULTS_URL"].endswith("/")
        parse_token(env["ACTIONS_RUNTIME_TOKEN"])
        headers = {"Authorization": f"Bearer {env['ACTIONS_RUNTIME_TOKEN']}"}
        with httpx.Client(timeout=10, headers=headers) as c:
            r = c.post(
                f"{env['ACTIONS_RESULTS_URL']}{SERVICE}/GetCacheEntryDownloadURL", json={"key": "k", "version": V}
            )
        assert r.json()["ok"] is False
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_dash_m_entry_point_shows_help():
    proc = subprocess.run(
        [sys.executable, "-m", "testkit.ghacache", "serve", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--root" in proc.stdout
