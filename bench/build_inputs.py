"""What every real-size benchmark's builds read: a snapshot copy of the repository, and the real-size manifest
with the benchmarks' own profiles, locked against the mirror.

Why a copy: the benchmarks edit app code (`edit_app_code`) in the copy, never in src/, and one version of
build.py is measured even while src/ is being edited. Used by bench.layers, bench.cache_restore,
bench.scenarios and bench.filelayers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROFILE_NONE = "bench-none"  # appended to the manifest copy: an empty profile, the app with no models at all
EDITED_FILE = Path("src/podcast_pipeline/settings.py")


def copy_repo(dest: Path) -> Path:
    """The files an app build needs, copied, so the benchmark can edit app code without touching src/."""
    from testkit.checkout import copy_checkout

    if dest.exists():
        shutil.rmtree(dest)  # a --workdir reused from an earlier run
    return copy_checkout(dest)


def bench_manifest(tree_manifest: Path, dest: Path) -> Path:
    """The real-size manifest plus the empty profile of this benchmark (appended to its last table, [profiles])."""
    text = tree_manifest.read_text()
    last_table = [line for line in text.splitlines() if line.startswith("[")][-1]
    if last_table != "[profiles]":
        raise RuntimeError(f"{tree_manifest}: expected [profiles] as the last table, found {last_table}")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "models.toml"
    path.write_text(text.rstrip("\n") + f"\n{PROFILE_NONE} = []\n")
    return path


def lock(manifest: Path, mirror_args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelbake.cli", "lock", "--manifest", str(manifest), *mirror_args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"modelbake lock: {proc.stderr.strip()}")


def edit_app_code(repo: Path, n: int) -> None:
    """A one-line change of the app's code: a new src/ layer, nothing else (unique per run, so never cached)."""
    path = repo / EDITED_FILE
    path.write_text(path.read_text() + f"# bench.layers edit {n} {uuid.uuid4().hex[:8]}\n")
