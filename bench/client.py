"""A client that pulls the app from a registry: what each new version costs it in time, downloads and unpacking.

Why: a registry shares blobs, an image store unpacks chains. Whether a new version of the app (a base-image
bump, a dependency bump, a model's pin change) makes a client unpack the models again depends only on where
the model layers sit, which is what the two layouts differ in. The client is this engine itself, emptied of the
benchmark's images, build records and their snapshots first (containerd then drops the content too): it pulls
the first version, then each new one, measured, and forgets each new one before the next.

Downloads are the registry's own count: the bytes its request log says it wrote for blob GETs (a blob the
client's content store holds is never asked for). Unpacking is bench/diskuse.py's count on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass

from bench.diskuse import Added, added_since, disk_state, wait_until


@dataclass
class Pull:
    ref: str
    wall: float
    downloaded: int
    added: Added
    ok: bool = True
    error: str = ""


@dataclass
class Push:
    ref: str
    wall: float
    uploaded: int
    ok: bool = True
    error: str = ""


def blob_bytes_sent(registry, since: int) -> int:
    """Bytes the registry wrote for blob GETs completed after log offset `since` (its JSON request log)."""
    with registry.log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    total = 0
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if (
            doc.get("msg") == "response completed"
            and doc.get("http.request.method") == "GET"
            and "/blobs/sha256:" in doc.get("http.request.uri", "")
            and int(doc.get("http.response.status") or 0) in (200, 206)
        ):
            total += int(doc.get("http.response.written") or 0)
    return total


def push(registry, ref: str) -> Push:
    offset = registry.log_offset()
    started = time.perf_counter()
    proc = subprocess.run(["docker", "push", ref], capture_output=True, text=True, timeout=3600)
    wall = round(time.perf_counter() - started, 2)
    uploaded = sum(registry.uploaded_blobs(offset).values())
    ok = proc.returncode == 0
    _say(f"push {ref}: {wall:.1f} s, {uploaded / 1e6:,.1f} MB uploaded" + ("" if ok else " FAILED"))
    return Push(ref, wall, uploaded, ok, "" if ok else _tail(proc.stderr))


def pull(registry, ref: str, roots: tuple[str, ...]) -> Pull:
    """`docker pull ref`, timed; the registry's blob bytes and the snapshots it added on disk."""
    before = disk_state(roots)
    offset = registry.log_offset()
    started = time.perf_counter()
    proc = subprocess.run(["docker", "pull", ref], capture_output=True, text=True, timeout=3600)
    wall = round(time.perf_counter() - started, 2)
    added = added_since(before, roots)
    downloaded = blob_bytes_sent(registry, offset)
    ok = proc.returncode == 0
    _say(
        f"pull {ref}: {wall:.1f} s, {downloaded / 1e6:,.1f} MB downloaded, {added.bytes / 1e6:,.1f} MB unpacked "
        f"({added.model_bytes / 1e6:,.1f} MB of models)" + ("" if ok else " FAILED")
    )
    return Pull(ref, wall, downloaded, added, ok, "" if ok else _tail(proc.stderr))


def forget(refs: list[str], roots: tuple[str, ...], model_bytes_at_most: int, timeout: float = 300) -> bool:
    """Remove `refs` and wait until the model files on disk are back to `model_bytes_at_most` and the snapshot
    directories stop going away (containerd's collector has run); False if that does not happen in time."""
    subprocess.run(["docker", "image", "rm", "--force", *refs], capture_output=True, text=True, timeout=300)
    ok = wait_until(lambda: disk_state(roots).model_bytes <= model_bytes_at_most, timeout)
    settled = [len(disk_state(roots).snapshots)]

    def stable() -> bool:
        settled.append(len(disk_state(roots).snapshots))
        return settled[-1] == settled[-2]

    return wait_until(stable, 60, interval=3.0) and ok


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines or ["no output"])[-1][:300]


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
