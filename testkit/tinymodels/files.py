"""File helpers of the model generators: the tiny models here and the real-size ones (``bench/realsize*.py``).

Standard library only, so importing :mod:`testkit.tinymodels` stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` next to ``path`` and rename it into place (creating the parent directories)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def copy_atomic(src: Path, target: Path) -> None:
    """Copy ``src`` next to ``target`` and rename it into place (``target``'s directory must exist)."""
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)


def make_world_readable(root: Path) -> None:
    """Files 0644, directories 0755 whatever the umask: images run the models as a non-root user, and wheels
    record the modes of what they pack."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for filename in filenames:
            os.chmod(os.path.join(dirpath, filename), 0o644)


def library_versions(distributions: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when missing): what a generator's stamp records."""
    versions: dict[str, str | None] = {}
    for dist in distributions:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions
