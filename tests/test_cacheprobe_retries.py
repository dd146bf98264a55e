"""The gha probe survives what BuildKit's cache client survives, and drops only a cache that still fails.

Each transient fault the emulator answers as GitHub and Azure do (a refused or expired signed URL, blob storage
busy or resetting the connection, the service's 429 with Retry-After) must leave the cache in the build, through
`usable_backends` as build.py calls it, with the retries BuildKit's client makes: a fresh signed URL after a
failed blob GET, the answer's Retry-After (else a short backoff) before trying again. A cache that keeps
failing is dropped with one warning naming the exact cause, and every wait comes out of `--cache-timeout`.

Waits are recorded, never slept: `time.sleep` is replaced for the test (the probe looks it up at call time).
"""

from __future__ import annotations

import time

import pytest
from ghaclient import download, save

from modelbake.cache.ghaenv import resolve
from modelbake.cache.probe import probe_gha, usable_backends
from modelbake.cache.spec import gha_scope, parse_cache
from testkit.ghacache import GhaCacheServer

pytestmark = [pytest.mark.unit, pytest.mark.loopback]

MODELS_SCOPE = "models-test-abc"
BACKEND = parse_cache("gha")
RATE_LIMITED = "HTTP 429 (cache request rate limit exceeded for this repository)"


@pytest.fixture
def gha(tmp_path):
    """The emulator holding the cache index build.py's probe looks up (a hit: the probe follows it to its blob)."""
    with GhaCacheServer(tmp_path / "gha") as server:
        target = resolve(server.runner_env())
        save(server, target.index_key(gha_scope(BACKEND, MODELS_SCOPE)) + "#1", b'{"layers": []}')
        server.clear_requests()
        yield server


@pytest.fixture
def waits():
    """The seconds the code under test asked to sleep, in order (nothing is slept)."""
    asked: list[float] = []
    previous = time.sleep
    time.sleep = asked.append  # type: ignore[assignment]
    try:
        yield asked
    finally:
        time.sleep = previous


def probe(gha: GhaCacheServer, timeout: float = 20) -> tuple[list, list[str]]:
    warnings: list[str] = []
    env = gha.runner_env()
    kept = usable_backends([BACKEND], timeout, MODELS_SCOPE, warnings.append, env, gha=resolve(env))
    return kept, warnings


def exchanges(gha: GhaCacheServer) -> list[tuple[str, int, str]]:
    """("lookup" or "get", status, fault) for each request, in order."""
    return [("get" if r.method == "GET" else "lookup", r.status, r.fault) for r in gha.requests]


def blob_urls(gha: GhaCacheServer) -> list[str]:
    return [r.path for r in gha.requests if r.method == "GET"]


LOOKUP, SERVED = ("lookup", 200, ""), ("get", 206, "")


@pytest.mark.parametrize(
    ("fault", "waited", "expected"),
    [
        ("refused", [], [LOOKUP, ("get", 403, "refused"), LOOKUP, SERVED]),  # a fresh URL at once, as BuildKit
        ("expired", [], [LOOKUP, ("get", 403, "expired"), LOOKUP, SERVED]),
        ("busy", [1.0], [LOOKUP, ("get", 503, "busy"), LOOKUP, SERVED]),
        ("busy, Retry-After 4", [4.0], [LOOKUP, ("get", 503, "busy"), LOOKUP, SERVED]),
        ("reset", [1.0], [LOOKUP, ("get", 0, "reset"), LOOKUP, SERVED]),
        ("throttled, Retry-After 2", [2.0], [("lookup", 429, "throttled"), LOOKUP, SERVED]),
        ("throttled twice", [1.0, 2.0], [("lookup", 429, "throttled")] * 2 + [LOOKUP, SERVED]),
    ],
)
def test_the_probe_keeps_a_cache_through_what_buildkit_survives(gha, waits, fault, waited, expected):
    faults = gha.faults
    if fault == "refused":
        faults.refuse_downloads()
    elif fault == "expired":
        faults.expire_before_download = "index-"  # the URL ran out between the lookup and its use
    elif fault.startswith("busy"):
        faults.busy_downloads(retry_after=4 if "Retry-After" in fault else None)
    elif fault == "reset":
        faults.reset_downloads()
    else:
        faults.throttle(times=2 if "twice" in fault else 1, retry_after=2 if "Retry-After" in fault else None)
    kept, warnings = probe(gha)
    assert (kept, warnings) == ([BACKEND], [])
    assert exchanges(gha) == expected
    assert waits == waited  # Retry-After when the answer names one, else 1 s, 2 s
    urls = blob_urls(gha)
    assert len(set(urls)) == len(urls)  # every GET on its own signed URL: a fresh one after a failure


def test_a_url_that_expires_while_the_probe_waits_is_not_used_again(gha, waits, monkeypatch):
    """Signed URLs live 2 s here; blob storage asks for 3 s. The probe's retry takes a fresh URL, since
    the one it waited on is dead by then (on the emulator's clock, which the recorded waits move)."""
    from testkit.ghacache import blobs

    class Clock:
        now = time.time()

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(blobs, "time", clock)

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds  # the emulator's clock moves; nothing is slept

    time.sleep = wait  # put back by the `waits` fixture
    gha.faults.url_ttl = 2
    gha.faults.busy_downloads(retry_after=3)
    assert probe(gha) == ([BACKEND], [])
    assert waits == [3]
    first, second = blob_urls(gha)
    assert exchanges(gha) == [LOOKUP, ("get", 503, "busy"), LOOKUP, SERVED]
    assert download(gha.url.rstrip("/") + first).status_code == 403  # the first URL is dead by now
    assert download(gha.url.rstrip("/") + second).status_code == 200


@pytest.mark.parametrize(
    ("fault", "cause", "waited"),
    [
        ("refused", "its blob storage (HOST) answered HTTP 403 (AuthenticationFailed) to 3 fresh signed URLs", []),
        ("expired", "its blob storage (HOST) answered HTTP 403 (AuthenticationFailed) to 3 fresh signed URLs", []),
        ("busy", "its blob storage (HOST) answered HTTP 503 (ServerBusy) to 3 fresh signed URLs", [1.0, 2.0]),
        (
            "busy, Retry-After 30",
            "its blob storage (HOST) answered HTTP 503 (ServerBusy) with Retry-After 30 s, beyond --cache-timeout 20 s",
            [],
        ),
        (
            "reset",
            "its blob storage (HOST) failed 3 fresh signed URLs with ReadError: [Errno 104] Connection reset by peer",
            [1.0, 2.0],
        ),
        ("throttled, Retry-After 120", f"its service answered {RATE_LIMITED} with Retry-After 120 s, beyond --cache-timeout 20 s", []),
        ("throttled", f"its service answered {RATE_LIMITED} to 5 tries within --cache-timeout 20 s", [1, 2, 4, 8]),
    ],
)  # fmt: skip
def test_a_cache_that_keeps_failing_is_dropped_with_its_exact_cause(gha, waits, fault, cause, waited):
    faults = gha.faults
    if fault == "refused":
        faults.refuse_downloads(times=100)
    elif fault == "expired":
        faults.url_ttl = 0  # every URL is dead on arrival
    elif fault.startswith("busy"):
        faults.busy_downloads(times=100, retry_after=30 if "Retry-After" in fault else None)
    elif fault == "reset":
        faults.reset_downloads(times=100)
    else:
        faults.throttle(times=100, retry_after=120 if "Retry-After" in fault else None)
    kept, warnings = probe(gha)
    host = gha.url.split("/")[2]
    assert kept == []
    assert warnings == [
        f"GitHub Actions cache (v2 at {gha.url}) unusable ({cause.replace('HOST', host)}): building without it"
    ]
    assert waits == waited and sum(waits) < 20  # the budget bounds the waits


def test_the_waits_come_out_of_the_budget(gha, waits):
    """Retry-After 1 s of a 2 s budget: the stalled blob GET that follows gets the 1 s left, not 2."""
    gha.faults.throttle(retry_after=1)
    gha.faults.stall_downloads = "index-"
    target = resolve(gha.runner_env())
    started = time.perf_counter()
    result = probe_gha(target, gha_scope(BACKEND, MODELS_SCOPE), 2, gha.runner_env())
    took = time.perf_counter() - started
    assert result.problem == f"its blob storage ({gha.url.split('/')[2]}) did not answer within 2 s"
    assert waits == [1] and 0.9 < took < 1.7, took
    gha.faults.clear()
