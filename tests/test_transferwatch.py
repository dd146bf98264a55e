"""The stall watch on buildx's rawjson stream: only cache transfers count, and only when they stop moving.

The lines are shaped like what dockerd 28.5's BuildKit printed against a stalled emulator (a cached RUN
step whose layer blob downloads lazily; the cache index import), with the clock injected.
"""

from __future__ import annotations

import json

import pytest

from modelbake.image.rawjson import decode_line
from modelbake.image.stallwatch import TransferWatch

pytestmark = pytest.mark.unit

BLOB = "sha256:08049cdcd907bdf573da8a439afc98283050b1d17864240887446e0000000000"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(**doc) -> str:
    return json.dumps(doc)


def feed(watch: TransferWatch, text: str) -> None:
    """One line of buildx's stream, decoded as build.py decodes it (rawjson.decode_line): other text is skipped."""
    doc = decode_line(text)
    if doc is not None:
        watch.feed(doc)


def test_a_cached_steps_blob_that_stops_moving_is_a_stall():
    clock = Clock()
    watch = TransferWatch(20, clock)
    feed(watch, line(vertexes=[{"digest": "v1", "name": "[2/2] RUN x", "cached": True, "started": "t"}]))
    for current in (0, 1_000_000, 2_000_000):
        clock.now += 5
        feed(watch, line(statuses=[{"vertex": "v1", "id": BLOB, "current": current, "total": 41946846}]))
    assert watch.stalled() is None
    for _ in range(5):  # BuildKit keeps repeating the status every 150 ms, with the same `current`
        clock.now += 5
        feed(watch, line(statuses=[{"vertex": "v1", "id": BLOB, "current": 2_000_000, "total": 41946846}]))
    stalled = watch.stalled()
    assert stalled == (
        "the download of blob sha256:08049cdcd907 from the cache stopped at 2,000,000 of 41,946,846 bytes for 25 s"
    )


def test_a_finished_blob_is_no_stall():
    clock = Clock()
    watch = TransferWatch(20, clock)
    feed(watch, line(vertexes=[{"digest": "v1", "name": "[2/2] RUN x", "cached": True}]))
    feed(watch, line(statuses=[{"vertex": "v1", "id": BLOB, "current": 5, "total": 5, "completed": "t"}]))
    clock.now += 600
    assert watch.stalled() is None


def test_work_that_is_not_a_cache_transfer_never_counts():
    """A long RUN (a model download) and a base image pull make no stall however long they take."""
    clock = Clock()
    watch = TransferWatch(20, clock)
    feed(watch, line(vertexes=[{"digest": "run", "name": "[fetch-bart 1/1] RUN modelbake preload", "started": "t"}]))
    feed(watch, line(statuses=[{"vertex": "pull", "id": BLOB, "current": 0, "total": 10}]))  # not cached
    feed(watch, "ERROR: not json")
    feed(watch, "{broken json")
    clock.now += 3600
    assert watch.stalled() is None


def test_a_cache_index_import_that_never_completes_is_a_stall():
    clock = Clock()
    watch = TransferWatch(20, clock)
    name = "importing cache manifest from gha:4501407485514207131"
    feed(watch, line(vertexes=[{"digest": "imp", "name": name, "started": "t"}]))
    clock.now += 19
    assert watch.stalled() is None
    clock.now += 2
    assert watch.stalled() == f"{name!r} made no progress for 21 s"
    done = TransferWatch(20, clock)
    feed(done, line(vertexes=[{"digest": "imp", "name": name, "started": "t"}]))
    feed(done, line(vertexes=[{"digest": "imp", "name": name, "started": "t", "completed": "u"}]))
    clock.now += 100
    assert done.stalled() is None
