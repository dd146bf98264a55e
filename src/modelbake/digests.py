"""Digests, in one place: sha256 (the pins of the lock, of files, bytes and streams) and git blob ids (the Hub's
ids of its non-LFS files)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1024 * 1024


def _file_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def sha256_stream(chunks: Iterable[bytes]) -> str:
    """sha256 (hex) of the concatenated chunks, each hashed as it comes (a body being downloaded, a file)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB pieces."""
    return sha256_stream(_file_chunks(path))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The id git (and the Hub's tree API `oid`) gives a file: sha1 of `blob <size>\\0<bytes>`."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    for chunk in _file_chunks(path):
        h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_bytes(data: bytes) -> str:
    """`git_blob_sha1` of content in memory (the git-lfs pointer of an LFS file, whose id the tree API lists)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
