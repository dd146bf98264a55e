"""modelbake's state in a layout: its directories, and the stat markers that let a second preload skip verified
files without network. Where the state lives is `paths.Layout`'s to say."""

from __future__ import annotations

import errno
import json
import tempfile
from pathlib import Path

from .atomic import atomic_write_text
from .errors import write_error
from .paths import Layout


def prepare(layout: Layout) -> None:
    """Create the state directories, before any download: a `--dest` that is a file, unwritable or on a
    read-only file system fails here, in one line naming it, instead of mid-work in a fetcher thread."""
    try:
        for sub in ("locks", "verified", "tmp"):
            (layout.state_dir / sub).mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=layout.tmp_dir, prefix=".probe-")  # noqa: SIM115
        probe.close()  # removes it: writing a directory's entries needs more than the directory existing
    except OSError as exc:
        # Name what the user chose (the --dest tree, or the state dir), or the file in the way inside it.
        where = layout.dest_root or layout.state_dir
        in_the_way = exc.errno in (errno.ENOTDIR, errno.EEXIST)
        raise write_error(exc, exc.filename if in_the_way and exc.filename else where) from exc


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def write_marker(layout: Layout, model_id: str, revision: str, files: list[Path]) -> None:
    """Record the stat of every verified file, so the next run can skip them without hashing or network.

    Like git's index: a file whose size and mtime are unchanged since it was verified is trusted.
    """
    path = layout.marker_path(model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"revision": revision, "files": {str(f): _stat_key(f) for f in sorted(files)}}
    atomic_write_text(path, json.dumps(doc, sort_keys=True))  # a full disk leaves no half marker behind


def marker_valid(layout: Layout, model_id: str, revision: str, files: list[Path] | None = None) -> bool:
    """True when every file is present, unchanged since verification, and verified for this revision.

    `files=None` trusts the marker's own file list (for packages whose file list only the install knows).
    """
    try:
        doc = json.loads(layout.marker_path(model_id).read_text())
    except (OSError, ValueError):
        return False
    if doc.get("revision") != revision:
        return False
    recorded = doc.get("files", {})
    if files is None:
        files = [Path(f) for f in recorded]
    if not files or set(recorded) != {str(f) for f in files}:
        return False
    try:
        return all(recorded[str(f)] == _stat_key(f) for f in files)
    except OSError:
        return False


def drop_marker(layout: Layout, model_id: str) -> None:
    layout.marker_path(model_id).unlink(missing_ok=True)
