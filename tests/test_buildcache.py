"""tests/buildcache.py's record bookkeeping, without an engine: which records a wipe must leave alone."""

from __future__ import annotations

import pytest

from buildcache import _kept_with_descendants, created_at

pytestmark = pytest.mark.unit


def _record(record_id: str, parent: str = "", description: str = "", *more_parents: str) -> dict:
    """A record as `docker buildx du --format json` prints it (a `COPY --link` record has several parents)."""
    return {"ID": record_id, "Parents": [p for p in (parent, *more_parents) if p], "Description": description}


def test_a_kept_record_protects_everything_built_on_it():
    records = [
        _record("base"),
        _record("deps", "base", "mount / from exec /bin/sh -c ... /opt/venv/bin/pip install torch"),
        _record("code", "deps", "COPY . ."),
        _record("download", "code", "RUN download"),
        _record("other", "base", "RUN something else"),
        _record("linked", "other", "COPY --link", "download"),  # merges a protected record: protected too
        _record("orphan", "gone", "parent pruned already"),
    ]
    protected = _kept_with_descendants(records, ("/opt/venv/bin/pip install",))
    assert protected == {"deps", "code", "download", "linked"}  # not its parent, not its siblings
    assert _kept_with_descendants(records, ()) == set()


def test_parent_cycles_end():
    records = [_record("a", "b"), _record("b", "a"), _record("k", "", "keep me")]
    assert _kept_with_descendants(records, ("keep me",)) == {"k"}


def test_created_at_reads_buildx_du_times():
    t = created_at({"CreatedAt": "2026-11-26 12:42:01.181913067 +0000 UTC"})
    assert t is not None and (t.hour, t.minute, t.microsecond) == (12, 42, 181913)
    assert created_at({}) is None
