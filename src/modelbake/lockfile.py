"""models.lock: pinned revisions and a size and sha256 for every file, as versioned, sorted JSON.

Regenerating the lock from the same sources gives byte-identical output (sorted keys, sorted files, no
timestamps), which is what makes it safe to commit and to key caches on (`hashFiles('models.lock')`).
Each entry carries the manifest fields it was resolved from, so one entry alone is enough to fetch a model
(the Docker model stage fetches from a single entry, so one model's pin change touches one layer only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_write_text
from .constants import LOCK_VERSION
from .digests import sha256_bytes
from .errors import LockError, UsageError, write_error
from .manifest import HuggingFaceSpec, Manifest, ModelSpec, SpacySpec, WhisperSpec


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedModel:
    id: str
    family: str
    spec: dict[str, Any]  # the manifest fields this entry was resolved from (without id)
    revision: str  # whisper: sha256; spacy: version; huggingface: commit sha
    files: tuple[LockedFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "spec": self.spec,
            "revision": self.revision,
            "files": [asdict(f) for f in sorted(self.files, key=lambda f: f.path)],
        }

    def digest(self) -> str:
        """A short digest of this entry alone: what a per-model build step keys on."""
        text = json.dumps({"id": self.id, **self.to_json()}, sort_keys=True, separators=(",", ":"))
        return sha256_bytes(text.encode())[:16]

    def to_spec(self) -> ModelSpec:
        """Rebuild the manifest spec from the entry, for fetching without the manifest."""
        fields = dict(self.spec)
        if self.family == "whisper":
            return WhisperSpec(id=self.id, **fields)
        if self.family == "spacy":
            return SpacySpec(id=self.id, **fields)
        for key in ("include", "exclude"):
            fields[key] = tuple(fields.get(key, ()))
        return HuggingFaceSpec(id=self.id, **fields)


@dataclass(frozen=True)
class Lock:
    models: dict[str, LockedModel]

    def get(self, model_id: str) -> LockedModel | None:
        return self.models.get(model_id)


def spec_fields(spec: ModelSpec) -> dict[str, Any]:
    """The manifest fields of a spec, normalised (no id, no family, no None values, lists for globs)."""
    data = asdict(spec)
    data.pop("id")
    data.pop("family")
    for key in ("include", "exclude"):
        if key in data:
            data[key] = list(data[key])
            if not data[key]:
                data.pop(key)
    return {k: v for k, v in data.items() if v is not None}


def dumps(lock: Lock) -> str:
    doc = {
        "lock_version": LOCK_VERSION,
        "models": {model_id: lock.models[model_id].to_json() for model_id in sorted(lock.models)},
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_lock(lock: Lock, path: Path) -> None:
    """Write atomically (temp file + rename), so a crash or a full disk never leaves half a lock."""
    try:
        atomic_write_text(path, dumps(lock))
    except OSError as exc:
        raise write_error(exc, path) from exc


def entry_from_json(model_id: str, data: Any, where: str) -> LockedModel:
    try:
        files = tuple(
            LockedFile(path=str(f["path"]), size=int(f["size"]), sha256=str(f["sha256"])) for f in data["files"]
        )
        entry = LockedModel(
            id=model_id,
            family=str(data["family"]),
            spec=dict(data["spec"]),
            revision=str(data["revision"]),
            files=files,
        )
        entry.to_spec()
    except (KeyError, TypeError, ValueError) as exc:
        raise LockError(f"{where}: models.{model_id}: malformed entry ({exc})") from exc
    return entry


def parse_lock(text: str, where: str) -> Lock:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockError(f"{where}: malformed JSON: {exc}", hint="regenerate it with `modelbake lock`") from exc
    version = doc.get("lock_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > LOCK_VERSION:
        raise LockError(
            f"{where}: lock_version {version}: written by a newer modelbake; "
            f"this one ({__version__}) reads lock_version {LOCK_VERSION}",
            hint="upgrade modelbake (pip install -U modelbake) to the release that wrote this lock",
        )
    if version != LOCK_VERSION:
        raise LockError(
            f"{where}: lock_version: expected {LOCK_VERSION}, got {version!r}",
            hint="regenerate it with `modelbake lock`",
        )
    models = doc.get("models")
    if not isinstance(models, dict):
        raise LockError(f"{where}: models: must be an object")
    return Lock(models={mid: entry_from_json(mid, data, where) for mid, data in models.items()})


def _decode(data: bytes, where: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}), so not a {what}",
            hint="regenerate it with `modelbake lock`",
        ) from exc


def _read_text(path: Path, what: str) -> str:
    """A lock or entry file's text; unreadable or non-UTF-8 bytes are a LockError naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise LockError(f"{path}: cannot read {what}: {exc.strerror or exc}") from exc
    return _decode(data, str(path), what)


def read_lock(path: Path) -> Lock | None:
    """The lock at `path`, or None when there is none."""
    try:
        text = _read_text(path, "models.lock")
    except FileNotFoundError:
        return None
    return parse_lock(text, str(path))


def read_entry(path: Path | str, data: bytes | None = None) -> LockedModel:
    """A single-model entry file `{"id": ..., <entry>}` (what Dockerfile.models hands each model step);
    `data`: its bytes, already read (stdin)."""
    where = str(path)
    if data is not None:
        text = _decode(data, where, "lock entry")
    else:
        try:
            text = _read_text(Path(path), "lock entry")
        except FileNotFoundError as exc:
            raise LockError(f"{where}: lock entry not found", hint="check the --entry path") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LockError(f"{where}: malformed JSON: {exc}") from exc
    if not isinstance(doc, dict) or "id" not in doc:
        raise LockError(f"{where}: expected an object with an id")
    return entry_from_json(str(doc["id"]), doc, where)


def entry_json(entry: LockedModel) -> str:
    """One line of canonical JSON for a single entry (stable, so build steps keyed on it stay cached)."""
    return json.dumps({"id": entry.id, **entry.to_json()}, sort_keys=True, separators=(",", ":"))


def check_drift(manifest: Manifest, lock: Lock, model_ids: list[str] | None = None) -> list[str]:
    """Pure: which models' lock entries are missing or no longer match the manifest (one line each)."""
    problems = []
    for model_id in model_ids if model_ids is not None else list(manifest.models):
        spec = manifest.models[model_id]
        entry = lock.get(model_id)
        if entry is None:
            problems.append(f"models.{model_id}: not in the lock")
        elif entry.family != spec.family or entry.spec != spec_fields(spec):
            problems.append(f"models.{model_id}: manifest entry changed since the lock was written")
    return problems


@dataclass(frozen=True)
class FileRef:
    """One locked file of a model: what a big file's own build step is keyed on (layers.py, filelayers.py)."""

    model_id: str
    repo: str
    path: str  # in the repo, e.g. model-00001-of-00003.safetensors
    sha256: str
    size: int

    def to_json(self) -> str:
        """The step's key, as Dockerfile.models writes it: one sorted JSON object."""
        doc = {"model": self.model_id, "repo": self.repo, "path": self.path, "sha256": self.sha256, "size": self.size}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> FileRef:
        """What `to_json` wrote, checked: a UsageError naming `where` for anything else."""
        try:
            doc = json.loads(text)
            return cls(str(doc["model"]), str(doc["repo"]), str(doc["path"]), str(doc["sha256"]), int(doc["size"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{where}: not a file reference ({type(exc).__name__}: {exc})") from exc


def require_current(manifest: Manifest, lock: Lock | None, model_ids: list[str]) -> None:
    """LockError naming the first model whose lock entry is missing or stale (no lock at all: nothing to check)."""
    if lock is None:
        return
    drift = check_drift(manifest, lock, model_ids)
    if drift:
        raise LockError(f"{manifest.lock_path}: out of date: {drift[0]}", hint="run `modelbake lock`")


def unpinned_warning(lock_path: Path) -> str:
    """The warning for models fetched without a lock (`modelbake preload`, `build.py`), worded in one place."""
    return f"{lock_path} missing: models are fetched unpinned; run `modelbake lock`"


def lock_hash(path: Path) -> str:
    """Short hash of the lock file's bytes (image tags and cache scopes carry it)."""
    return lock_hash_of(path.read_bytes())


def lock_hash_of(data: bytes) -> str:
    return sha256_bytes(data)[:12]
