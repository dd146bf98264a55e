"""The emulator's transient faults, each answered as the real service answers it.

Blob storage is Azure's: an XML `<Error>` body, `x-ms-error-code`, `x-ms-request-id`, and for a refused SAS an
`<AuthenticationErrorDetail>`. The service is twirp's: a JSON `{"code", "msg"}` with the status twirp assigns
to the code (`resource_exhausted` is 429), and GitHub's `Retry-After`. Each fault hits the first tries *of
each key* and lets later ones through, so a client that tries again (as BuildKit's does) gets through.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from xml.etree import ElementTree

import httpx
import pytest
from ghaclient import SERVICE, V, download, lookup, save, twirp

from conftest import REPO
from testkit.ghacache import GhaCacheServer

pytestmark = [pytest.mark.unit, pytest.mark.loopback]


@pytest.fixture
def gha(tmp_path):
    with GhaCacheServer(tmp_path / "gha") as server:
        save(server, "k1", b"payload one")
        save(server, "k2", b"payload two")
        server.clear_requests()
        yield server


def url_of(gha: GhaCacheServer, key: str) -> str:
    return lookup(gha, key).json()["signed_download_url"]


def azure_error(response: httpx.Response) -> dict[str, str]:
    """The elements of Azure's XML error body; the header and the body must name the same code."""
    assert response.headers["content-type"] == "application/xml"
    assert response.headers["x-ms-request-id"] and response.headers["x-ms-version"]
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Error"
    fields = {child.tag: (child.text or "") for child in root}
    assert fields["Code"] == response.headers["x-ms-error-code"]
    assert "\nRequestId:" in fields["Message"] and "\nTime:" in fields["Message"]
    return fields


def test_refused_downloads_are_403_authentication_failed_once_per_blob(gha):
    gha.faults.refuse_downloads()
    url = url_of(gha, "k1")
    refused = download(url)
    assert refused.status_code == 403
    error = azure_error(refused)
    assert error["Code"] == "AuthenticationFailed"
    assert error["Message"].startswith("Server failed to authenticate the request.")
    assert error["AuthenticationErrorDetail"].startswith("Signed expiry time [")
    assert download(url).content == b"payload one"  # the same blob again: served
    assert download(url_of(gha, "k2")).status_code == 403  # another blob's first download: refused too
    assert [(r.key, r.status, r.fault) for r in gha.requests if r.method == "GET"] == [
        ("k1", 403, "refused"),
        ("k1", 200, ""),
        ("k2", 403, "refused"),
    ]


def test_busy_downloads_are_503_server_busy_with_retry_after_when_given(gha):
    gha.faults.busy_downloads(times=2, retry_after=3)
    url = url_of(gha, "k1")
    for _ in range(2):
        busy = download(url)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "3"
        assert azure_error(busy)["Code"] == "ServerBusy"
    assert download(url).content == b"payload one"
    gha.faults.busy_downloads(prefix="k2")
    assert "Retry-After" not in download(url_of(gha, "k2")).headers  # none unless asked for
    assert download(url_of(gha, "k1")).status_code == 200  # k1 does not match the prefix


def test_reset_downloads_cut_the_connection_without_an_answer(gha):
    gha.faults.reset_downloads()
    url = url_of(gha, "k1")
    with pytest.raises(httpx.ReadError) as caught:
        download(url)
    assert "reset" in str(caught.value).lower()  # ECONNRESET, not a clean close
    assert download(url).content == b"payload one"
    assert [(r.status, r.fault) for r in gha.requests if r.method == "GET"] == [(0, "reset"), (200, "")]


def test_throttled_twirp_calls_are_429_resource_exhausted_with_retry_after(gha):
    gha.faults.throttle(retry_after=7)
    first = lookup(gha, "k1")
    assert first.status_code == 429 and first.headers["Retry-After"] == "7"
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "code": "resource_exhausted",
        "msg": "cache request rate limit exceeded for this repository",
    }
    assert lookup(gha, "k1").json()["ok"] is True  # the key's next call goes through
    created = twirp(gha, "CreateCacheEntry", {"key": "k3", "version": V})  # every method that names a key
    assert created.status_code == 429 and created.json()["code"] == "resource_exhausted"
    assert twirp(gha, "CreateCacheEntry", {"key": "k3", "version": V}).json()["ok"] is True
    assert [(r.key, r.fault) for r in gha.requests] == [
        ("k1", "throttled"),
        ("k1", ""),
        ("k3", "throttled"),
        ("k3", ""),
    ]


def test_url_ttl_expires_urls_issued_while_it_is_set(gha, signer_clock):
    """URLs live `url_ttl` seconds from their issue, on a clock the test moves (the signer's `time`)."""
    long_lived = url_of(gha, "k1")  # issued before the fault: the server's own hour
    gha.faults.url_ttl = 5
    short = url_of(gha, "k1")
    signer_clock.now += 4
    assert download(short).status_code == 200
    signer_clock.now += 2
    expired = download(short)
    assert expired.status_code == 403
    error = azure_error(expired)
    assert error["Code"] == "AuthenticationFailed"
    assert error["AuthenticationErrorDetail"].startswith("Signed expiry time [")
    assert "must be after current time [" in error["AuthenticationErrorDetail"]
    assert download(long_lived).status_code == 200
    assert download(url_of(gha, "k1")).status_code == 200  # a fresh URL works
    assert [r.fault for r in gha.requests if r.method == "GET"] == ["", "expired", "", ""]


def test_clear_heals_every_fault(gha):
    gha.faults.refuse_downloads(times=9)
    gha.faults.throttle(times=9)
    gha.faults.url_ttl = 0
    gha.faults.clear()
    assert download(url_of(gha, "k1")).status_code == 200


def test_cli_serve_sets_the_faults_it_is_given(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.ghacache", "serve", "--root", str(tmp_path / "root"),
         "--fault", "throttled", "--retry-after", "4", "--fault-times", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        headers = {"Authorization": f"Bearer {env['ACTIONS_RUNTIME_TOKEN']}"}
        url = f"{env['ACTIONS_RESULTS_URL']}{SERVICE}/GetCacheEntryDownloadURL"
        with httpx.Client(timeout=10, headers=headers) as c:
            answers = [c.post(url, json={"key": "k", "version": V}) for _ in range(3)]
        assert [(r.status_code, r.headers.get("Retry-After")) for r in answers] == [(429, "4"), (429, "4"), (200, None)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
