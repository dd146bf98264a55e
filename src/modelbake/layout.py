"""Where each family's files go: the `--dest DIR` layout, or the libraries' usual caches."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .constants import STATE_DIRNAME, default_hf_hub_cache, default_state_dir, default_whisper_root
from .errors import write_error


@dataclass(frozen=True)
class Layout:
    whisper_root: Path
    hf_hub_cache: Path
    spacy_target: Path | None  # None: install into the active Python environment
    state_dir: Path
    is_dest: bool  # True for --dest DIR (an image's model tree), False for the usual caches

    @classmethod
    def dest(cls, root: Path) -> Layout:
        root = Path(root).absolute()
        return cls(
            whisper_root=root / "whisper",
            hf_hub_cache=root / "huggingface" / "hub",
            spacy_target=root / "spacy",
            state_dir=root / STATE_DIRNAME,
            is_dest=True,
        )

    @classmethod
    def default(cls) -> Layout:
        return cls(
            whisper_root=default_whisper_root(),
            hf_hub_cache=default_hf_hub_cache(),
            spacy_target=None,
            state_dir=default_state_dir(),
            is_dest=False,
        )

    def marker_path(self, model_id: str) -> Path:
        return self.state_dir / "verified" / f"{model_id}.json"

    def lock_path(self, model_id: str) -> Path:
        return self.state_dir / "locks" / f"{model_id}.lock"

    def prepare(self) -> None:
        """Create the state directories, before any download: a `--dest` that is a file, unwritable or on a
        read-only file system fails here, in one line naming it, instead of mid-work in a fetcher thread."""
        try:
            for sub in ("locks", "verified", "tmp"):
                (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.state_dir / "tmp", prefix=".probe-")  # noqa: SIM115
            probe.close()  # removes it: writing a directory's entries needs more than the directory existing
        except OSError as exc:
            # Name what the user chose (the --dest tree, or the state dir), or the file in the way inside it.
            where = self.state_dir.parent if self.is_dest else self.state_dir
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a full disk leaves no half marker behind
        raise


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
