"""A client that pulls the app from a registry: what each new version costs it in time, downloads and unpacking.

Why: a registry shares blobs, an image store unpacks chains. Whether a new version of the app (a base-image
bump, a dependency bump, a model's pin change) makes a client unpack the models again depends only on where
the model layers sit, which is what the two layouts differ in. The client is the engine's containerd itself
(`ctr images pull`: the pull and unpack dockerd's image store does) in a namespace of its own, so its image
store holds nothing of the builds before it (a namespace has its own snapshots: no chain the builder unpacked
is reused). It pulls the first version, then each new one, measured, and forgets each new one before the next.

Downloads are the registry's own count: the bytes its request log says it wrote for blob GETs. containerd
shares content across namespaces, so a blob the builder's engine still holds is not asked for again; the
benchmark wipes its builds first, and says what the registry sent. Unpacking is bench/diskuse.py's count on
disk.
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


CONTAINERD = "/var/run/docker/containerd/containerd.sock"


def ctr(namespace: str, *args: str) -> list[str]:
    return ["ctr", "--address", CONTAINERD, "--namespace", namespace, *args]


def pull(registry, ref: str, roots: tuple[str, ...], namespace: str) -> Pull:
    """`ctr images pull` of `ref` into the client's namespace, timed; the registry's blob bytes and the
    snapshots it added on disk."""
    before = disk_state(roots)
    offset = registry.log_offset()
    started = time.perf_counter()
    proc = subprocess.run(
        ctr(namespace, "images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = round(time.perf_counter() - started, 2)
    added = added_since(before, roots)
    downloaded = blob_bytes_sent(registry, offset)
    ok = proc.returncode == 0
    _say(
        f"pull {ref}: {wall:.1f} s, {downloaded / 1e6:,.1f} MB downloaded, {added.bytes / 1e6:,.1f} MB unpacked "
        f"({added.model_bytes / 1e6:,.1f} MB of models)" + ("" if ok else " FAILED")
    )
    return Pull(ref, wall, downloaded, added, ok, "" if ok else _tail(proc.stderr))


def forget(
    refs: list[str], roots: tuple[str, ...], namespace: str, model_bytes_at_most: int, timeout: float = 300
) -> bool:
    """Remove `refs` from the client (`--sync`: containerd collects their content and snapshots before it
    answers) and wait until the model files on disk are back to `model_bytes_at_most`; False if they are not."""
    subprocess.run(ctr(namespace, "images", "rm", "--sync", *refs), capture_output=True, text=True, timeout=600)
    return wait_until(lambda: disk_state(roots).model_bytes <= model_bytes_at_most, timeout)


def drop_namespace(namespace: str) -> None:
    """The client's namespace gone: its images (and with them its content and snapshots), then the namespace."""
    listed = subprocess.run(ctr(namespace, "images", "ls", "-q"), capture_output=True, text=True, timeout=120)
    refs = listed.stdout.split()
    if refs:
        subprocess.run(ctr(namespace, "images", "rm", "--sync", *refs), capture_output=True, timeout=600)
    subprocess.run(["ctr", "--address", CONTAINERD, "namespaces", "rm", namespace], capture_output=True, timeout=120)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines or ["no output"])[-1][:300]


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
