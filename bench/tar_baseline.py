"""`tar -x` of the same bytes into a fresh directory (model files, or an image's files): the disk limit a cache restore
is measured against.

Why apart: bench.cache_restore and `python -m bench` both compare their restores to it, and it needs no engine.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TarBaseline:
    bytes: int
    files: int
    extract: list[float]
    extract_sync: float
    gunzip_extract: float
    unzstd_extract: float
    gzip_bytes: int
    zstd_bytes: int
    sha256: float  # one sha256 pass over the uncompressed tarball


def tar_baseline(tree, profile: str, work: Path, runs: int, compressed: bool = True) -> TarBaseline:
    """`tar -x` of a tarball of the profile's model files into a fresh directory (page cache warm, as the
    engine's are): the disk limit. Also gzip and zstd tarballs of the same files, for the decompression floor
    (unless `compressed` is False: zeros then, and two minutes saved at 3 GB)."""
    ids = set(tree.profiles[profile])
    files = [f for f in tree.files if f.model_id in ids]
    ball = work / "models.tar"
    with tarfile.open(ball, "w") as tar:
        for f in files:
            tar.add(tree.root / f.path, arcname=f.path)
    total = sum(f.size for f in files)

    def timed(cmd: list[str], sync: bool = False) -> float:
        dest = work / f"x-{uuid.uuid4().hex[:6]}"
        dest.mkdir()
        started = time.perf_counter()
        subprocess.run(cmd + ["-C", str(dest)], check=True)
        if sync:
            subprocess.run(["sync"], check=True)
        took = time.perf_counter() - started
        shutil.rmtree(dest)
        return took

    extract = [timed(["tar", "-xf", str(ball)]) for _ in range(runs)]
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(ball)], check=True, capture_output=True)
    sha256 = time.perf_counter() - started
    extract_sync = timed(["tar", "-xf", str(ball)], sync=True)
    if not compressed:
        ball.unlink()
        return TarBaseline(total, len(files), extract, extract_sync, 0.0, 0.0, 0, 0, sha256)
    gz, zst = work / "models.tar.gz", work / "models.tar.zst"
    subprocess.run(f"gzip -1 -c {ball} > {gz}", shell=True, check=True)
    subprocess.run(["zstd", "-q", "-3", "-T0", str(ball), "-o", str(zst)], check=True)
    gunzip = timed(["tar", "-xzf", str(gz)])
    unzstd = timed(["tar", "--zstd", "-xf", str(zst)])
    baseline = TarBaseline(
        total, len(files), extract, extract_sync, gunzip, unzstd, gz.stat().st_size, zst.stat().st_size, sha256
    )
    for path in (ball, gz, zst):
        path.unlink()
    return baseline


def export_image_files(tag: str, ball: Path) -> Path:
    """An image's files as one uncompressed tarball (`docker export` of a container created from it, never
    started): the same bytes a restore of that image writes."""
    cid = subprocess.run(["docker", "create", tag], capture_output=True, text=True, check=True, timeout=300)
    container = cid.stdout.strip()
    try:
        subprocess.run(["docker", "export", "--output", str(ball), container], check=True, timeout=1800)
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, timeout=300)
    return ball


def tarball_baseline(ball: Path, work: Path, runs: int) -> TarBaseline:
    """`tar -x` of a tarball into a fresh directory, `runs` times (page cache warm), once more with sync, and one
    sha256 pass over it; the tarball is removed after."""
    with tarfile.open(ball) as tar:
        members = [m for m in tar if m.isfile()]
    total = sum(m.size for m in members)

    def timed(sync: bool = False) -> float:
        dest = work / f"x-{uuid.uuid4().hex[:6]}"
        dest.mkdir()
        started = time.perf_counter()
        subprocess.run(["tar", "-xf", str(ball), "-C", str(dest)], check=True)
        if sync:
            subprocess.run(["sync"], check=True)
        took = time.perf_counter() - started
        shutil.rmtree(dest)
        return took

    try:
        extract = [timed() for _ in range(runs)]
        started = time.perf_counter()
        subprocess.run(["sha256sum", str(ball)], check=True, capture_output=True)
        sha256 = time.perf_counter() - started
        extract_sync = timed(sync=True)
    finally:
        ball.unlink(missing_ok=True)
    return TarBaseline(total, len(members), extract, extract_sync, 0.0, 0.0, 0, 0, sha256)
