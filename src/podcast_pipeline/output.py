"""The result file: checked writable before any work, written atomically (temp file + rename) at the end."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import InputError


def check_writable(out: Path) -> None:
    """Fail fast, before minutes of inference, when `out` could not be written."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory, expected a file path")
    if not parent.is_dir():
        raise InputError(f"--out {out}: directory {parent} does not exist")
    try:  # try it for real: os.access is wrong for root, ACLs and read-only mounts
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as exc:
        raise InputError(f"--out {out}: directory {parent} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"--out {out}: file exists and is not writable")


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def write_atomic(out: Path, text: str) -> None:
    """A reader never sees half a result, and a failed run leaves no file behind."""
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
