"""What the Docker benchmarks need from the engine around a build: a fresh base, a registry, a wipe, cleanup.

Why: a benchmark must measure cold and restored builds without `docker buildx prune -af` (the engine's build
cache holds other people's work, e.g. the app's 2 GB deps layer). Builds run on a base image of their own (a
new digest, so no older record can match). `python -m bench` wipes only the records that descend from its own
base images (`prune_own_records`), so another user's build, running beside it, keeps its cache. The older
benchmarks (bench.layers, bench.cache_restore, bench.filelayers) do the same with their own models' names.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from localregistry import Registry  # noqa: E402,F401  (tests/localregistry.py; bench.scenarios takes it from here)

import buildcache  # noqa: E402  (tests/buildcache.py)

BASE_IMAGE = "modelbake/python-base:3.11-bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
WHEELHOUSE = Path("/opt/wheels")
CTR = ["ctr", "--address", "/var/run/docker/containerd/containerd.sock", "--namespace", "moby"]


def own_records(records: list[dict], since: datetime, names: tuple[str, ...] = ()) -> set[str]:
    """IDs of the records created at or after `since` that this run made, and no other user's.

    The roots: a base image of the run's own (`imported_base_image`: one layer, imported, so its record has no
    parents and no description, unlike every image built FROM another), created since `since`; and any record
    whose description holds one of `names` (what only this run's builds say: the sha256 of its own models' files,
    their layers' digests, which a cache import's `imported sha256:...` names). Then every record with one of
    them among its ancestors; and a record without parents made since `since` whose every child is the run's
    (the `COPY --link` of the venv or of the base's files, which say nothing of whose they are, used by the run's
    merges only). Other users' builds start from other images and build other models."""
    parents = {r["ID"]: list(r.get("Parents") or []) for r in records}
    children: dict[str, list[str]] = {}
    for record_id, ups in parents.items():
        for up in ups:
            children.setdefault(up, []).append(record_id)
    recent = {r["ID"] for r in records if (t := buildcache.created_at(r)) is not None and t >= since}
    mine = {r["ID"] for r in records if r["ID"] in recent and not r.get("Parents") and not r.get("Description")}
    mine |= {r["ID"] for r in records if any(n in r.get("Description", "") for n in names)}
    changed = True
    while changed:
        changed = False
        for record_id, ups in parents.items():
            if record_id in mine:
                continue
            if any(p in mine for p in ups) or (
                record_id in recent and not ups and children.get(record_id) and set(children[record_id]) <= mine
            ):
                mine.add(record_id)
                changed = True
    return mine & recent


def record_names(manifests: list[Path], profile: str | None = None) -> tuple[str, ...]:
    """What the build records of these models' steps and layers say and no other build's do, for benchmark
    models no one else builds (bench/realsize.py's: random weights): the sha256 of each locked file (the fetch
    steps' entries, the file layers' stages), each layer's root (`/out/<id>/`) and each model's path in an image."""
    from modelbake.image.layers import DEFAULT_FILE_LAYERS_OVER, plan_layers
    from modelbake.lockfile import read_lock
    from modelbake.manifest import load_manifest
    from modelbake.paths import image_paths

    names: set[str] = set()
    for path in manifests:
        manifest = load_manifest(path)
        lock = read_lock(manifest.lock_path)
        specs = manifest.select(profile)
        names.update(f"{layer.root}/" for layer in plan_layers(specs, lock, DEFAULT_FILE_LAYERS_OVER))
        names.update(p.strip("/") for s in specs for p in image_paths(s))  # the old layout's excludes name them
        if lock is not None:
            names.update(f.sha256 for s in specs if s.id in lock.models for f in lock.models[s.id].files)
    return tuple(sorted(names))


def prune_own_records(since: datetime, names: tuple[str, ...] = ()) -> int:
    """Remove this run's build records (`own_records`), leaves first: BuildKit keeps a record that another one
    still has as a parent, so each pass removes those no remaining record builds on (a chain of cache imports is
    as many passes as it is long). The set is taken once: a record freed by the passes stays the run's."""
    records = buildcache.cache_records()
    ids = own_records(records, since, names)
    removed = 0
    for _ in range(40):
        left = {r["ID"]: list(r.get("Parents") or []) for r in buildcache.cache_records()}
        mine = ids & left.keys()
        if not mine:
            break
        used = {p for record_id, ups in left.items() for p in ups}
        leaves = sorted(mine - used) or sorted(mine)
        buildcache.prune_records(leaves)
        gone = mine - {r["ID"] for r in buildcache.cache_records()}
        removed += len(gone)
        if not gone:
            break
    return removed


def remove_images(tags: list[str]) -> None:
    for tag in tags:
        subprocess.run(["docker", "image", "rm", "--force", tag], capture_output=True, text=True, timeout=120)


def fresh_base_image(tag_prefix: str = "modelbake-bench/base") -> str:
    """The local base image plus one tiny file (tests/buildcache.py): no step built on it is cached yet."""
    return buildcache.fresh_base_image(BASE_IMAGE, tag_prefix)


def imported_base_image(tag_prefix: str = "modelbake-bench/base", base: str = BASE_IMAGE) -> str:
    """`base`'s files plus one file naming the tag, imported as an image of ONE layer of its own: no step built on
    it is cached yet, and its build record has no parents (see `own_records`), whoever prunes what meanwhile.
    (`fresh_base_image`'s RUN record would mark the run's records, but other users' tests prune the records
    created since they started, that one included, and BuildKit then makes a plain child of `base`'s record.)"""
    tag = f"{tag_prefix}:{uuid.uuid4().hex[:12]}"
    created = subprocess.run(["docker", "create", base, "true"], capture_output=True, text=True, timeout=120)
    if created.returncode != 0:
        raise RuntimeError(f"docker create {base}: {created.stderr.strip()[-300:]}")
    container = created.stdout.strip()
    try:
        marker = subprocess.run(
            ["docker", "cp", "-", f"{container}:/etc/"],
            input=_one_file_tar("modelbake-bench-base", tag.encode() + b"\n"),
            capture_output=True,
            timeout=120,
        )
        if marker.returncode != 0:
            raise RuntimeError(f"docker cp: {marker.stderr.decode(errors='replace')[-300:]}")
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", tag], stdin=export.stdout, capture_output=True, text=True, timeout=600
        )
        export.wait(timeout=600)
        if imported.returncode != 0 or export.returncode != 0:
            raise RuntimeError(f"docker import {tag}: {imported.stderr.strip()[-300:]}")
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, timeout=120)
    return tag


def _one_file_tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


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


def other_builds_since(since: datetime, names: tuple[str, ...] = ()) -> str:
    """What else the engine built during a run: the build records created since `since` that are not the run's,
    and the load average (other engineers' tests share the engine and add noise)."""
    try:
        records = buildcache.cache_records()
    except (OSError, subprocess.SubprocessError):
        return "unknown (`docker buildx du` failed)"
    mine = own_records(records, since, names)
    theirs = [r for r in records if r["ID"] not in mine and (t := buildcache.created_at(r)) and t >= since]
    sample = sorted({r.get("Description", "")[:60] for r in theirs if r.get("Description", "").startswith("[")})[:3]
    text = f"{len(theirs)} build records not descended from the run's base images were created during it (other builds, and the run's own context sources and code layers)"
    return text + (f" (e.g. {'; '.join(sample)})" if sample else "")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
