"""Where a layer's bytes are: in the engine's content store, or which blob of a remote cache holds them.

A restore test must show that a layer came back from the cache, so it needs both ends: that the wipe really
removed the layer's blob from the engine (containerd's content store, which dockerd's BuildKit and image store
share with the containerd image store), and which blob of the cache the restore then had to read.

- The content store is read with `ctr` against the engine's own containerd (`docker info` names its address and
  namespace): the Docker SDK and `docker buildx du` show build records, not blobs. A layer's content is its
  uncompressed blob (digest = diff id, as build.py's uncompressed layers are) or a compressed blob labelled
  `containerd.io/uncompressed=<diff id>`.
- BuildKit's cache config (`application/vnd.buildkit.cacheconfig.v0`, cache/remotecache/v1/spec.go) lists every
  layer of a cache as `{"blob": ..., "annotations": {"containerd.io/uncompressed": <diff id>, ...}}`: the gha
  index entry is that JSON itself, a `local` or `registry` cache reaches it through an OCI index or manifest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable

CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
UNCOMPRESSED = "containerd.io/uncompressed"
_LABELLED = re.compile(rf"{re.escape(UNCOMPRESSED)}=(sha256:[0-9a-f]{{64}})")


class NoContentStore(RuntimeError):
    """The engine's content store cannot be read here (no `ctr`, or not the containerd image store)."""


def engine_containerd(run=subprocess.run) -> tuple[str, str]:
    """(address, namespace) of the engine's containerd, as `docker info` reports them."""
    out = run(["docker", "info", "--format", "{{json .Containerd}}"], capture_output=True, text=True, timeout=60)
    info = json.loads(out.stdout or "null") if out.returncode == 0 else None
    if not info or not info.get("Address"):
        raise NoContentStore(f"docker info names no containerd: {out.stdout.strip() or out.stderr.strip()}")
    return info["Address"], (info.get("Namespaces") or {}).get("Containers") or "moby"


def layer_content(diff_ids: Iterable[str], run=subprocess.run) -> set[str]:
    """The content-store digests that hold any of `diff_ids` (the uncompressed blob, or one labelled with it)."""
    if shutil.which("ctr") is None:
        raise NoContentStore("ctr missing (it ships with containerd)")
    address, namespace = engine_containerd(run)
    proc = run(
        ["ctr", "--address", address, "--namespace", namespace, "content", "ls"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise NoContentStore(f"ctr content ls: {proc.stderr.strip()}")
    wanted = set(diff_ids)
    found = set()
    for line in proc.stdout.splitlines()[1:]:
        digest = line.split(maxsplit=1)[0] if line.strip() else ""
        if digest in wanted or any(m in wanted for m in _LABELLED.findall(line)):
            found.add(digest)
    return found


def wait_content_gone(diff_ids: Iterable[str], timeout: float = 120) -> set[str]:
    """Wait until containerd's garbage collector, which runs on its own schedule after a delete, has dropped the
    layers' content; returns what is left (empty: gone)."""
    wanted = set(diff_ids)
    deadline = time.monotonic() + timeout
    while (left := layer_content(wanted)) and time.monotonic() < deadline:
        time.sleep(2)
    return left


def cache_layers(document: dict, read_blob: Callable[[str], dict]) -> list[dict]:
    """The `layers` of the BuildKit cache config reached from `document`: the config itself (gha's index
    entry), or an OCI index/manifest whose descriptors lead to it (`local`, `registry`)."""
    if "layers" in document and "records" in document:
        return list(document["layers"])
    descriptors = [*document.get("manifests", []), *document.get("layers", [])]
    if isinstance(document.get("config"), dict):
        descriptors.append(document["config"])
    for descriptor in descriptors:
        kind = descriptor.get("mediaType", "")
        if kind == CACHE_CONFIG:
            return list(read_blob(descriptor["digest"]).get("layers", []))
        if kind.endswith(("image.index.v1+json", "image.manifest.v1+json", "manifest.list.v2+json")):
            found = cache_layers(read_blob(descriptor["digest"]), read_blob)
            if found:
                return found
    return []


def cache_blob_of(layers: list[dict], diff_id: str) -> str | None:
    """The cache's blob digest for the layer whose diff id is `diff_id`, None when the cache has no such layer."""
    for layer in layers:
        annotations = layer.get("annotations") or {}
        if layer.get("blob") == diff_id or annotations.get(UNCOMPRESSED) == diff_id:
            return str(layer["blob"])
    return None
