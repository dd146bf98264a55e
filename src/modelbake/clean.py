"""Remove the manifest's models from a layout (the inverse of preload)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .fetchers.huggingface import repo_folder
from .layout import Layout, drop_marker
from .manifest import ModelSpec


def clean_models(specs: list[ModelSpec], layout: Layout) -> list[Path]:
    """Delete each model's files and markers; returns what was removed. Other models are left alone."""
    removed: list[Path] = []
    for spec in specs:
        drop_marker(layout, spec.id)
        if spec.family == "whisper":
            paths = [layout.whisper_root / f"{spec.name}.pt"]
        elif spec.family == "huggingface":
            paths = [layout.hf_hub_cache / repo_folder(spec)]
        elif layout.spacy_target is not None:
            paths = sorted(layout.spacy_target.glob(f"{spec.name}")) + sorted(
                layout.spacy_target.glob(f"{spec.name}-*.dist-info")
            )
        else:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "uninstall", "-y", spec.name], capture_output=True, text=True
            )
            if proc.returncode == 0 and "Successfully uninstalled" in proc.stdout:
                removed.append(Path(spec.name))
            continue
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed
