"""The files of this repository that a build needs, copied elsewhere: tests and the benchmark edit or regenerate
a copy (app code, Dockerfiles, the manifest) and build from it, never touching the checkout itself."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What build.py and both Dockerfiles read of a checkout.
BUILD_FILES = (
    "pyproject.toml", "requirements", "src", "docker", "Dockerfile", "Dockerfile.models", ".dockerignore", "build.py",
    "models.toml",
)  # fmt: skip
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def copy_checkout(dest: Path, names: tuple[str, ...] = BUILD_FILES) -> Path:
    """`names` of the repository copied into `dest` (created if missing)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=_IGNORE)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest
