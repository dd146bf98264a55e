"""The cache probe: one real, authenticated question to each cache, bounded by --cache-timeout.

The gha probe runs against the v2 emulator with a runner's variables; it must tell a refused token from a
dead or stalled service, look up the very index key BuildKit will read, and try the blob behind a hit.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from ghaclient import save

from modelbake.cache.ghaenv import CLIENT_VERSION, resolve
from modelbake.cache.probe import probe_gha, probe_registry, proxy_for, usable_backends
from modelbake.cache.spec import parse_cache
from testkit.ghacache import GhaCacheServer, make_token
from testkit.ghacache.server import refusing_url

pytestmark = [pytest.mark.unit, pytest.mark.loopback]

SCOPE = "modelbake-models-test-abc"


@pytest.fixture
def gha(tmp_path):
    with GhaCacheServer(tmp_path / "gha") as server:
        yield server


def test_an_empty_cache_answers_and_the_lookup_is_buildkits_own(gha):
    target = resolve(gha.runner_env())
    assert probe_gha(target, SCOPE, 5).ok
    (request,) = gha.requests
    assert request.path.endswith("CacheService/GetCacheEntryDownloadURL") and request.status == 200


def test_a_hit_is_followed_to_its_blob(gha):
    target = resolve(gha.runner_env())
    save(gha, target.index_key(SCOPE) + "#1", b"{}")
    gha.clear_requests()
    assert probe_gha(target, SCOPE, 5).ok
    assert [(r.method, r.path.split("/")[2], r.status) for r in gha.requests] == [
        ("POST", "github.actions.results.api.v1.CacheService", 200),
        ("GET", "download", 206),  # one byte: x-ms-range bytes=0-0
    ]
    assert gha.bytes_downloaded == 1


def test_a_refused_token_is_told_apart_from_a_dead_server(gha):
    expired = make_token(now=time.time() - 7 * 3600)
    result = probe_gha(resolve(gha.runner_env(token=expired)), SCOPE, 5)
    assert result.refused and "refused the runtime token: HTTP 401 token expired" in (result.problem or "")
    gha.stop()
    dead = probe_gha(resolve(gha.runner_env()), SCOPE, 5)
    assert not dead.ok and not dead.refused and "ConnectError" in (dead.problem or "")


def test_a_stalled_service_or_blob_store_is_given_up_on_within_the_timeout(gha):
    target = resolve(gha.runner_env())
    save(gha, target.index_key(SCOPE) + "#1", b"{}")
    gha.faults.stall_downloads = "index-"
    started = time.perf_counter()
    result = probe_gha(target, SCOPE, 0.5)  # short: the stalled side never answers; the emulator's lookup does
    assert "blob storage (127.0.0.1:" in (result.problem or "") and "within 0.5 s" in (result.problem or "")
    gha.faults.clear()
    gha.faults.stall = True
    result = probe_gha(target, SCOPE, 0.5)
    assert result.problem == f"no answer from {target.url} within 0.5 s"
    assert time.perf_counter() - started < 8
    gha.faults.clear()


def test_something_else_at_the_url_is_not_a_cache(tmp_path):
    """Another server at the URL (here the model mirror, which refuses the POST): not the v2 service."""
    from modelbake.mirror.server import MirrorServer

    (tmp_path / "whisper").mkdir()
    with MirrorServer(tmp_path) as mirror:
        env = {"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RESULTS_URL": mirror.url + "/",
               "ACTIONS_RUNTIME_TOKEN": make_token()}  # fmt: skip
        result = probe_gha(resolve(env), SCOPE, 5)
    assert not result.ok and not result.refused and "HTTP 405 from" in (result.problem or "")


def test_usable_backends_keeps_what_answers_and_warns_once_for_each_other(gha, monkeypatch):
    for name, value in gha.runner_env().items():
        monkeypatch.setenv(name, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens here
    warnings: list[str] = []
    backends = [parse_cache("gha"), parse_cache(f"registry:127.0.0.1:{port}/c"), parse_cache("local:/tmp/x")]
    kept = usable_backends(backends, 2, "models-test-abc", warnings.append, gha=resolve())
    assert [b.kind for b in kept] == ["gha", "local"]
    assert len(warnings) == 1 and warnings[0].startswith(f"registry cache 127.0.0.1:{port}/c unreachable (")
    monkeypatch.setenv("ACTIONS_RUNTIME_TOKEN", make_token(now=time.time() - 7 * 3600))
    warnings.clear()
    assert usable_backends([parse_cache("gha")], 2, "models-test-abc", warnings.append, gha=resolve()) == []
    assert warnings == [
        f"GitHub Actions cache (v2 at {gha.url}): it refused the runtime token: HTTP 401 token expired at "
        + warnings[0].split("token expired at ")[1]
    ]
    assert "building without it (an expired token, or one from another job?)" in warnings[0]


def test_a_registry_that_accepts_and_never_answers_is_given_up_on():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    started = time.perf_counter()
    result = probe_registry(f"127.0.0.1:{listener.getsockname()[1]}/cache", 0.5)
    assert "no answer" in (result.problem or "") and time.perf_counter() - started < 5
    listener.close()
    for conn in held:
        conn.close()


def test_the_v1_probe_for_enterprise_server_is_the_v1_lookup(tmp_path):
    """GHES still serves v1: the probe asks `_apis/artifactcache/cache` with BuildKit's key and version."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class V1(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.append(self.path)
            self.send_response(204)  # a v1 miss
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), V1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        target = resolve({"ACTIONS_CACHE_URL": url, "ACTIONS_RUNTIME_TOKEN": make_token()})
        assert target.version == 1 and probe_gha(target, SCOPE, 5).ok
    finally:
        server.shutdown()
        server.server_close()
    assert seen[0].startswith(f"/_apis/artifactcache/cache?keys=index-{SCOPE}-1-") and CLIENT_VERSION in seen[0]


def test_a_service_that_is_down_is_a_refusing_url():
    target = resolve({"ACTIONS_CACHE_SERVICE_V2": "1", "ACTIONS_RESULTS_URL": refusing_url(),
                      "ACTIONS_RUNTIME_TOKEN": make_token()})  # fmt: skip
    result = probe_gha(target, SCOPE, 2)
    assert not result.ok and "ConnectError" in (result.problem or "")


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://results.example/x", {"HTTPS_PROXY": "proxy:3128"}, "http://proxy:3128"),
        ("https://results.example/x", {"https_proxy": "http://p:1", "HTTP_PROXY": "http://q:2"}, "http://p:1"),
        ("http://results.example/x", {"HTTPS_PROXY": "http://p:1"}, None),  # scheme decides
        ("http://results.example/x", {"HTTP_PROXY": "http://q:2"}, "http://q:2"),
        ("https://127.0.0.1:9/x", {"HTTPS_PROXY": "http://p:1"}, None),  # loopback: never proxied
        ("https://localhost/x", {"HTTPS_PROXY": "http://p:1"}, None),
        ("https://a.example.com/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, None),
        ("https://example.com/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example.com"}, "http://p:1"),
        ("https://a.example.com/", {"HTTPS_PROXY": "http://p:1", "no_proxy": ".example.com"}, None),
        ("https://10.1.2.3/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://h.example:8443/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "h.example:443"}, "http://p:1"),
        ("https://h.example:8443/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "h.example:8443"}, None),
        ("https://anything/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        ("https://anything/", {"ALL_PROXY": "http://p:1"}, None),  # Go does not read ALL_PROXY
    ],
)
def test_proxies_follow_gos_proxy_from_environment(url, env, expected):
    assert proxy_for(url, env) == expected
