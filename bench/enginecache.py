"""What the Docker benchmarks need from the engine around a build: a fresh base, a registry, a wipe, cleanup.

Why: a benchmark must measure cold and restored builds without `docker buildx prune -af` (the engine's build
cache holds other people's work, e.g. the app's 2 GB deps layer). As tests/test_docker_cache.py does, builds run
on a base image of their own (a new digest, so no older record can match) and a "wipe" removes only the
records created since a given time, with tests/buildcache.py's functions, plus a guard that never removes
the deps layer (`pip install` into /opt/venv) even when someone else's build created it meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from localregistry import Registry  # noqa: E402,F401  (tests/localregistry.py; bench.scenarios takes it from here)

import buildcache  # noqa: E402  (tests/buildcache.py)
from buildcache import prune_records_created_since  # noqa: E402

BASE_IMAGE = "modelbake/python-base:3.11-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WHEELHOUSE = Path("/opt/wheels")
CTR = ["ctr", "--address", "/var/run/docker/containerd/containerd.sock", "--namespace", "moby"]
# Records never removed by a wipe: the app's deps layer (and its pip cache mount) is other people's cache, and
# with it every record built on it (the naive build's code and download layers, the app's layers): pruning
# one of those made the next build run the deps step again (40 s, in both naive and modelbake builds).
KEEP_DESCRIPTIONS = ("/opt/venv/bin/pip install", "id=modelbake-pip")


def wipe_records_since(since: datetime, keep: tuple[str, ...] = (), descendants: bool = True) -> int:
    """Remove every build cache record created at or after `since`, except the deps layer and `keep` (and,
    with `descendants`, what was built on them: else the deps step's next use runs it again)."""
    return prune_records_created_since(since, keep=KEEP_DESCRIPTIONS + tuple(keep), descendants=descendants)


def remove_images(tags: list[str]) -> None:
    for tag in tags:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, text=True, timeout=120)


def fresh_base_image(tag_prefix: str = "modelbake-bench/base") -> str:
    """The local base image plus one tiny file (tests/buildcache.py): no step built on it is cached yet."""
    return buildcache.fresh_base_image(BASE_IMAGE, tag_prefix)


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark through its `finally` (images and build records removed, servers stopped)."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (a local cache directory, a registry's storage)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def image_layer_blobs(tag: str) -> list[dict]:
    """The image's layer descriptors (mediaType, size, digest) as the containerd image store holds them: the
    compressed size of each layer, which `docker image inspect` does not show."""
    import json

    first = tag.split("/")[0]
    if "/" not in tag:
        ref = f"docker.io/library/{tag}"
    elif "." in first or ":" in first or first == "localhost":
        ref = tag
    else:
        ref = f"docker.io/{tag}"
    listed = subprocess.run([*CTR, "images", "ls"], capture_output=True, text=True, timeout=60).stdout
    digest = next((line.split()[2] for line in listed.splitlines() if line.split() and line.split()[0] == ref), None)
    if digest is None:
        return []
    manifest = json.loads(subprocess.run([*CTR, "content", "get", digest], capture_output=True, timeout=60).stdout)
    if "manifests" in manifest:  # an index: the first (only) platform
        digest = manifest["manifests"][0]["digest"]
        manifest = json.loads(subprocess.run([*CTR, "content", "get", digest], capture_output=True, timeout=60).stdout)
    return list(manifest.get("layers", []))


def engine_versions() -> str:
    """`dockerd 26.1.5, buildx 0.13.1` style, for the results files."""
    server = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, timeout=30).stdout.split()
    return f"dockerd {server}, buildx {buildx[1] if len(buildx) > 1 else '?'} (containerd image store, docker driver)"


def machine() -> str:
    import os
    import platform

    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {mem / 2**30:.0f} GiB RAM, {platform.machine()}, {engine_versions()}"


def code_stamp(repo: Path) -> str:
    """Short sha256 of build.py's modules in `repo`: which version of the build code a results file measured."""
    import hashlib

    names = (
        "imagebuild.py",
        "buildoptions.py",
        "buildplan.py",
        "bake.py",
        "dockerfile.py",
        "layers.py",
        "buildx.py",
        "rawjson.py",
        "cachespec.py",
        "report.py",
    )
    parts = []
    for name in names:
        path = repo / "src" / "modelbake" / name
        if path.is_file():
            parts.append(f"{name} {hashlib.sha256(path.read_bytes()).hexdigest()[:10]}")
    return ", ".join(parts)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
