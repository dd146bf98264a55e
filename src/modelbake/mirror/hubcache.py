"""Read a Hugging Face hub cache (`models--org--name/{refs,snapshots,blobs}`) as the Hub would describe it.

The mirror answers the Hub API from this, so a `preload --dest` output or a `~/.cache/huggingface/hub` can be
served as is. Digests are cached per (file, size, mtime): hashing a 1.6 GB file on every HEAD would be slow.
Whether a file is LFS comes from its blob's name when the Hub populated the cache, else from the default
.gitattributes rule, so ETags (and the blob names clients derive from them) match the Hub's.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelbake.digests import git_blob_sha1, git_blob_sha1_bytes, sha256_file

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_HEX_RE = re.compile(r"[0-9a-f]+")

# Like the Hub's default .gitattributes: these suffixes, and anything of 10 MiB or more, are stored in LFS.
LFS_SUFFIXES = frozenset(
    ".bin .safetensors .pt .pth .ckpt .h5 .msgpack .onnx .ot .model .pkl .npz .tflite .gguf".split()
)
LFS_MIN_SIZE = 10 * 1024 * 1024

REPO_PREFIXES = {"model": "models", "dataset": "datasets"}


def is_lfs(path: str, size: int) -> bool:
    """Whether the Hub would keep this file in LFS (then its ETag is the sha256, not the git blob id)."""
    return size >= LFS_MIN_SIZE or os.path.splitext(path)[1].lower() in LFS_SUFFIXES


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer the Hub stores in git for an LFS file; the tree `oid` is this pointer's blob id."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def hub_time(timestamp: float) -> str:
    """The Hub's date format, the only one `huggingface_hub.utils.parse_datetime` accepts."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def safe_parts(path: str) -> list[str] | None:
    """Split a repo-relative path; None if it could escape its directory."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        return None
    return parts


class DigestCache:
    """sha256 and git blob ids keyed by (real path, size, mtime), computed once per file version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, int, int], str] = {}
        self._busy: dict[tuple[str, str, int, int], threading.Lock] = {}

    def sha256(self, path: Path) -> str:
        return self._get(path, "sha256")

    def git_blob(self, path: Path) -> str:
        return self._get(path, "git")

    def _get(self, path: Path, kind: str) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        key = (real, kind, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._values:
                return self._values[key]
            busy = self._busy.setdefault(key, threading.Lock())
        # One thread hashes a given file version; parallel requests for it wait instead of hashing again.
        with busy:
            with self._lock:
                if key in self._values:
                    return self._values[key]
            value = sha256_file(Path(real)) if kind == "sha256" else git_blob_sha1(Path(real))
            with self._lock:
                self._values[key] = value
                self._busy.pop(key, None)
            return value


@dataclass(frozen=True)
class HubFile:
    """A file of a snapshot: `path` inside the repo, `local` on disk (maybe a symlink into blobs/)."""

    path: str
    local: Path
    size: int
    mtime: float
    stored_as_lfs: bool | None = None  # what the blob's name says, for a cache the Hub populated

    @property
    def lfs(self) -> bool:
        return is_lfs(self.path, self.size) if self.stored_as_lfs is None else self.stored_as_lfs


def _blob_kind(local: Path) -> bool | None:
    """LFS or not, from the name of the blob a snapshot file links to: huggingface_hub names blobs by the
    Hub's ETag, a sha256 (64 hex) for LFS files and a git blob id (40 hex) otherwise. None if not a blob."""
    if not local.is_symlink():
        return None
    target = Path(os.path.realpath(local))
    if target.parent.name != "blobs" or not _HEX_RE.fullmatch(target.name):
        return None
    return {64: True, 40: False}.get(len(target.name))


class HubCache:
    """Repos, revisions and files of the hub cache under `root/huggingface[/hub]`."""

    def __init__(self, root: Path, digests: DigestCache) -> None:
        self.root = root
        self.digests = digests

    @property
    def hub_dir(self) -> Path:
        base = self.root / "huggingface"
        return base / "hub" if (base / "hub").is_dir() else base

    def repo_dir(self, repo_type: str, repo_id: str) -> Path | None:
        parts = repo_id.split("/")
        if repo_type not in REPO_PREFIXES or not 1 <= len(parts) <= 2:
            return None
        if any(not _NAME_RE.fullmatch(p) or p in (".", "..") for p in parts):
            return None
        folder = self.hub_dir / "--".join([REPO_PREFIXES[repo_type], *parts])
        return folder if (folder / "snapshots").is_dir() else None

    def resolve_revision(self, repo_dir: Path, revision: str) -> str | None:
        """Commit for a branch/tag in refs/ (e.g. `main`, `refs/pr/1`) or a commit with a snapshot."""
        parts = safe_parts(revision)
        if parts is None:
            return None
        ref = repo_dir.joinpath("refs", *parts)
        commit = revision
        if ref.is_file():
            commit = ref.read_text(encoding="utf-8").strip()
        if COMMIT_RE.fullmatch(commit) and (repo_dir / "snapshots" / commit).is_dir():
            return commit
        return None

    def snapshot_time(self, repo_dir: Path, commit: str) -> str:
        return hub_time((repo_dir / "snapshots" / commit).stat().st_mtime)

    def files(self, repo_dir: Path, commit: str) -> list[HubFile]:
        """Every file of the snapshot, sorted by path; broken symlinks (blob missing) are left out."""
        base = repo_dir / "snapshots" / commit
        found: list[HubFile] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, base)
            for name in filenames:
                local = Path(dirpath) / name
                try:
                    st = local.stat()
                except OSError:
                    continue
                rel = name if rel_dir == "." else f"{Path(rel_dir).as_posix()}/{name}"
                found.append(HubFile(rel, local, st.st_size, st.st_mtime, _blob_kind(local)))
        return sorted(found, key=lambda f: f.path)

    def file(self, repo_dir: Path, commit: str, path: str) -> HubFile | None:
        parts = safe_parts(path)
        if parts is None:
            return None
        local = repo_dir.joinpath("snapshots", commit, *parts)
        try:
            st = local.stat()
        except OSError:
            return None
        if not local.is_file():
            return None
        return HubFile(path, local, st.st_size, st.st_mtime, _blob_kind(local))

    def etag(self, f: HubFile) -> str:
        """What the Hub puts in ETag: sha256 for LFS files, git blob id otherwise (always computed, so a
        damaged blob is reported as what it is, not as what its name claims)."""
        return self.digests.sha256(f.local) if f.lfs else self.digests.git_blob(f.local)

    def tree_entry(self, f: HubFile) -> dict[str, object]:
        """One `/tree` entry. For LFS files `oid` is the pointer's blob id, as on the Hub."""
        if not f.lfs:
            return {"type": "file", "oid": self.digests.git_blob(f.local), "size": f.size, "path": f.path}
        sha = self.digests.sha256(f.local)
        pointer = lfs_pointer(sha, f.size)
        return {
            "type": "file",
            "oid": git_blob_sha1_bytes(pointer),
            "size": f.size,
            "path": f.path,
            "lfs": {"oid": sha, "size": f.size, "pointerSize": len(pointer)},
        }

    def sibling(self, f: HubFile, blobs: bool) -> dict[str, object]:
        """One `siblings` item of model info; with `blobs=true` also size, blobId and lfs (sha256 key)."""
        if not blobs:
            return {"rfilename": f.path}
        entry = self.tree_entry(f)
        out: dict[str, object] = {"rfilename": f.path, "size": f.size, "blobId": entry["oid"]}
        lfs = entry.get("lfs")
        if isinstance(lfs, dict):
            out["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
        return out

    def tree(self, repo_dir: Path, commit: str, prefix: str, recursive: bool) -> list[dict[str, object]] | None:
        """`/tree` entries under `prefix` ("" = root), directories included; None if `prefix` is no directory."""
        files = self.files(repo_dir, commit)
        if prefix:
            files = [f for f in files if f.path.startswith(prefix + "/")]
            if not files:
                return None
        start = len(prefix) + 1 if prefix else 0
        dirs: set[str] = set()
        chosen: list[HubFile] = []
        for f in files:
            rel_parts = f.path[start:].split("/")
            if recursive:
                chosen.append(f)
                for depth in range(1, len(rel_parts)):
                    dirs.add(f.path[: start + len("/".join(rel_parts[:depth]))])
            elif len(rel_parts) == 1:
                chosen.append(f)
            else:
                dirs.add(f.path[: start + len(rel_parts[0])])
        entries: list[dict[str, object]] = [self.tree_entry(f) for f in chosen]
        entries += [
            # Synthetic but stable tree ids: nothing downstream checks them, and real ones need every digest.
            {"type": "directory", "oid": hashlib.sha1(f"tree {commit}/{d}".encode()).hexdigest(), "size": 0, "path": d}
            for d in dirs
        ]
        return sorted(entries, key=lambda e: str(e["path"]))
