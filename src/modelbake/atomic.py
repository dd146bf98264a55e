"""Writes that never leave half a file: the bytes go to a temp file beside the target (one directory, so one
file system and the rename is atomic), which is renamed over the target only when everything was written; on
any failure (a full disk, a failed check, an interrupt) the temp file is removed and the target is as it was.

The one owner of "temp file + `os.replace`" for files and symlinks. Moving whole directories into place (the
fetchers' staging trees) is a different job and stays with the fetchers. In the fetch path (FETCH_SOURCES):
the standard library only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o644  # world-readable whatever the umask: images run the models as a non-root user


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A temp name beside `path`, unique to this call: `.<name>.<8 hex><suffix>`."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_writer(path: Path, *, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Stream bytes into `path`: the file yielded is a temp file beside it, which replaces `path` (mode 0644) when
    the block ends normally; an exception in the block (a failed check, too) discards it. `path`'s directory
    must exist. The temp file's removal never hides the error that caused it (a file system gone read-only)."""
    tmp = temp_path(path, suffix)
    try:
        with open(tmp, "wb") as f:
            yield f
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            try:
                tmp.unlink()
            except OSError:  # the file system went read-only under us: nothing more can be done here
                pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` at once (temp file + rename); `path`'s directory must exist."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_symlink(target: str, link: Path) -> None:
    """Make `link` a symlink to `target`, replacing whatever `link` was at once (a new link + rename)."""
    tmp = temp_path(link)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
