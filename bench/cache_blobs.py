"""What each remote cache stores: its layer descriptors (a local directory, a registry, the gha emulator's
index entry) and a one-line summary by compression.

Why apart: reading a cache's own index is independent of how the builds that wrote it were run, and the
report only needs the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx


def local_cache_layers(directory: Path) -> list[dict]:
    """Layer descriptors of a `type=local` cache (OCI layout: index.json -> cache manifest)."""
    index = json.loads((directory / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((directory / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
    if "layers" in manifest:
        return list(manifest["layers"])
    # A manifest list: the layers are its entries, next to the cache config.
    return [m for m in manifest.get("manifests", []) if "cacheconfig" not in m.get("mediaType", "")]


def registry_cache_layers(ref: str) -> list[dict]:
    """Layer descriptors of a registry cache pushed with image-manifest=true."""
    host, _, rest = ref.partition("/")
    name, _, tag = rest.rpartition(":")
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    manifest = httpx.get(f"http://{host}/v2/{name}/manifests/{tag}", headers={"Accept": accept}, timeout=30).json()
    return list(manifest.get("layers", []))


def gha_cache_layers(server, scope_prefix: str) -> list[dict]:
    """Layer descriptors from the gha cache's index entry (BuildKit's cache config JSON)."""
    index = [e for e in server.entries if e.key.startswith(f"index-{scope_prefix}")]
    if not index:
        return []
    entry = max(index, key=lambda e: e.seq)
    config = json.loads(server.store.data_path(entry).read_bytes())
    return [
        {"mediaType": layer["annotations"]["mediaType"], "size": layer["annotations"]["size"], "digest": layer["blob"]}
        for layer in config.get("layers", [])
    ]


def compression_of(media_type: str) -> str:
    if media_type.endswith("+gzip") or media_type.endswith(".gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    if media_type.endswith(".tar") or media_type.endswith("tar"):
        return "uncompressed"
    return media_type.rsplit("/", 1)[-1]


def summarize_layers(layers: list[dict]) -> str:
    """`3 gzip 1,234 MB + 2 uncompressed 10 MB`."""
    by: dict[str, list[int]] = {}
    seen: set[str] = set()
    for layer in layers:
        if layer.get("digest") in seen:
            continue  # a blob listed twice (two records sharing it) is stored once
        seen.add(layer.get("digest", ""))
        by.setdefault(compression_of(layer["mediaType"]), []).append(int(layer["size"]))
    return " + ".join(f"{len(v)} {k} {sum(v) / 1e6:,.0f} MB" for k, v in sorted(by.items())) or "-"
