"""Remove the manifest's models from a layout (the inverse of preload)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .errors import DestinationError, write_error
from .manifest import ModelSpec, SpacySpec
from .paths import Layout
from .state import drop_marker


def clean_models(specs: list[ModelSpec], layout: Layout) -> list[Path]:
    """Delete each model's files and markers; returns what was removed. Other models are left alone.

    A `--dest` that does not exist has nothing to remove; one that is a file, or a file system that refuses
    the removal (read-only, no permission), is a DestinationError naming the path.
    """
    root = layout.dest_root
    if root is not None and (root.exists() or root.is_symlink()) and not root.is_dir():
        raise DestinationError(
            f"cannot clean {root}: not a directory", hint="--dest names a tree written by `modelbake preload --dest`"
        )
    removed: list[Path] = []
    for spec in specs:
        try:
            _clean_one(spec, layout, removed)
        except OSError as exc:
            raise write_error(exc, model_id=spec.id) from exc
    return removed


def _clean_one(spec: ModelSpec, layout: Layout, removed: list[Path]) -> None:
    drop_marker(layout, spec.id)
    if isinstance(spec, SpacySpec) and layout.spacy_target(spec) is None:  # in the environment: pip's to remove
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", spec.name], capture_output=True, text=True
        )
        if proc.returncode == 0 and "Successfully uninstalled" in proc.stdout:
            removed.append(Path(spec.name))
        return
    paths = layout.model_paths(spec)
    if isinstance(spec, SpacySpec):
        paths += layout.legacy_spacy_paths(spec)  # a tree from before one directory per pipeline
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
            removed.append(path)
