"""The engine's build cache records, read and removed one by one.

Tests that prove a restore from a remote cache must first make the engine forget what it built. Wiping the
whole build cache (`docker buildx prune -af`) would also throw away the app's deps layer that other tests
and the next CI run reuse, so these helpers remove only chosen records: `docker buildx prune --filter id=`
deletes exactly the named record (checked with buildx 0.29 and dockerd 28.5's builder).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterable
from datetime import datetime


def _buildx(builder: str | None, *args: str) -> list[str]:
    return ["docker", "buildx", *args, *(["--builder", builder] if builder else [])]


def cache_records(builder: str | None = None, run=subprocess.run) -> list[dict]:
    """Every record: `ID`, `Description`, `CreatedAt` (`2026-11-26 12:42:01.18 +0000 UTC`), `Parents`..."""
    out = run(_buildx(builder, "du", "--format", "json"), capture_output=True, text=True, check=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def prune_records(ids: Iterable[str], builder: str | None = None, run=subprocess.run) -> None:
    for record_id in ids:
        # --all: without it BuildKit keeps the mutable record a RUN step leaves beside its result; with the id
        # filter it still removes that one record only.
        run(
            _buildx(builder, "prune", "--force", "--all", "--filter", f"id={record_id}"),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )


def created_at(record: dict) -> datetime | None:
    """`2026-11-26 12:42:01.181913067 +0000 UTC` -> an aware datetime (microseconds)."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d{4})", record.get("CreatedAt") or "")
    if not m:
        return None
    frac = (m[2] or "0")[:6].ljust(6, "0")
    return datetime.strptime(f"{m[1]}.{frac} {m[3]}", "%Y-%m-%d %H:%M:%S.%f %z")


def prune_records_created_since(since: datetime, keep: tuple[str, ...] = (), descendants: bool = True) -> int:
    """Forget everything built after `since`, except records whose description contains one of `keep` and
    (with `descendants`) every record built on top of one of those (records in use by a running build are
    kept by BuildKit).

    Why the descendants too: with dockerd 26.1's BuildKit, pruning any record built on a kept one (checked
    with a child and with a grandchild of the deps layer) unlinks the kept record from its cache key, so the
    next build runs that step again although the record is still there. Without `descendants` the kept
    records stay on disk, but their next use may rebuild them: for freeing disk when that no longer matters.
    Records depend on each other (a layer on its parent), and BuildKit keeps a record another one still
    needs: repeat until nothing new goes away.
    """
    removed = 0
    for _ in range(6):
        records = cache_records()
        protected = _kept_with_descendants(records, keep) if descendants else _kept(records, keep)
        ids = [r["ID"] for r in records if (t := created_at(r)) is not None and t >= since and r["ID"] not in protected]
        if not ids:
            break
        prune_records(ids)
        left = {r["ID"] for r in cache_records()}
        gone = [i for i in ids if i not in left]
        removed += len(gone)
        if len(gone) == len(ids) or not gone:
            break
    return removed


def _kept(records: list[dict], keep: tuple[str, ...]) -> set[str]:
    """IDs of the records whose description contains one of `keep`."""
    return {r["ID"] for r in records if any(k in r.get("Description", "") for k in keep)}


def _kept_with_descendants(records: list[dict], keep: tuple[str, ...]) -> set[str]:
    """IDs of the records matching `keep`, and of every record with one of them among its ancestors."""
    parents = {r["ID"]: list(r.get("Parents") or []) for r in records}
    protected = _kept(records, keep)
    changed = True
    while changed:
        changed = False
        for record_id, ups in parents.items():
            if record_id not in protected and any(p in protected for p in ups):
                protected.add(record_id)
                changed = True
    return protected


def fresh_base_image(base: str, tag_prefix: str, timeout: float = 300) -> str:
    """`base` plus one tiny file: a new digest, so that no step built on it is cached yet (a cold build that
    leaves the rest of the engine's cache alone).

    (A LABEL alone would do, but BuildKit 0.13 then fails "not found" exporting an image whose only layer was
    imported with `docker import`.)"""
    tag = f"{tag_prefix}:{uuid.uuid4().hex[:12]}"
    proc = subprocess.run(
        ["docker", "buildx", "build", "--tag", tag, "--provenance", "false", "--quiet", "-"],
        input=f"FROM {base}\nRUN echo {tag.rsplit(':', 1)[1]} > /etc/modelbake-fresh-base\n",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"fresh base image from {base}: {proc.stderr.strip()[-500:]}")
    return tag


def remove_image(tag: str, timeout: float = 300) -> bool:
    """`docker image rm --force TAG`, given as long as a busy engine needs (the SDK's client gives up after
    10 s, and a wipe that silently left the image would restore nothing); False when there was no such image."""
    proc = subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        return True
    if "No such image" in proc.stderr:
        return False
    raise RuntimeError(f"docker image rm --force {tag}: {proc.stderr.strip()}")
