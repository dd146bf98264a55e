"""Parse and validate models.toml into typed model specs.

Validation is strict (unknown fields are errors) because a typo such as `revison` would otherwise silently
fall back to a default and bake the wrong model. Every error names the file, the model id and the field.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import FAMILIES
from .errors import ManifestError, UsageError

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")
SPACY_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WHISPER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class WhisperSpec:
    id: str
    name: str
    sha256: str
    url: str | None = None
    family: str = "whisper"

    @property
    def source(self) -> str:
        return self.name


@dataclass(frozen=True)
class SpacySpec:
    id: str
    name: str
    version: str
    sha256: str
    url: str | None = None
    family: str = "spacy"

    @property
    def source(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def wheel_filename(self) -> str:
        return f"{self.name}-{self.version}-py3-none-any.whl"


@dataclass(frozen=True)
class HuggingFaceSpec:
    id: str
    repo: str
    revision: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    task: str | None = None
    role: str | None = None
    family: str = "huggingface"

    @property
    def source(self) -> str:
        return self.repo


ModelSpec = WhisperSpec | SpacySpec | HuggingFaceSpec


@dataclass(frozen=True)
class Manifest:
    path: Path
    models: dict[str, ModelSpec]
    profiles: dict[str, tuple[str, ...]]
    mirrors: dict[str, str] = field(default_factory=dict)

    @property
    def lock_path(self) -> Path:
        """The lock lives beside the manifest: models.toml -> models.lock."""
        return self.path.with_suffix(".lock")

    def select(self, profile: str | None = None, model_ids: list[str] | None = None) -> list[ModelSpec]:
        """The models of a profile (all models when None), narrowed to `model_ids` if given."""
        if profile is None:
            ids = list(self.models)
        elif profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise UsageError(f"{self.path}: unknown profile {profile!r} (profiles: {known})")
        else:
            ids = list(self.profiles[profile])
        if model_ids:
            for model_id in model_ids:
                if model_id not in self.models:
                    raise UsageError(f"{self.path}: unknown model id {model_id!r}")
                if model_id not in ids:
                    raise UsageError(f"{self.path}: model {model_id!r} is not in profile {profile!r}")
            ids = [i for i in ids if i in model_ids]
        return [self.models[i] for i in ids]


_FIELDS: dict[str, dict[str, bool]] = {
    # field -> required
    "whisper": {"family": True, "name": True, "sha256": True, "url": False},
    "spacy": {"family": True, "name": True, "version": True, "sha256": True, "url": False},
    "huggingface": {
        "family": True,
        "repo": True,
        "revision": True,
        "include": False,
        "exclude": False,
        "task": False,
        "role": False,
    },
}


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; raises ManifestError naming file, model and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found", hint="pass --manifest FILE") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")  # TOML is UTF-8 by definition
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); TOML must be UTF-8",
            hint="save the manifest as UTF-8",
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: malformed TOML: {exc}") from exc
    return parse_manifest(data, path)


def parse_manifest(data: dict[str, Any], path: Path) -> Manifest:
    """Validate an already-parsed TOML document (pure)."""
    unknown = sorted(set(data) - {"models", "profiles", "mirrors"})
    if unknown:
        raise ManifestError(f"{path}: {unknown[0]}: unknown top-level table (expected models, profiles, mirrors)")
    models_raw = data.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise ManifestError(f"{path}: models: at least one [models.<id>] table is required")
    models: dict[str, ModelSpec] = {}
    for model_id, entry in models_raw.items():
        models[model_id] = _parse_model(path, model_id, entry)
    profiles = _parse_profiles(path, data.get("profiles", {}), models)
    mirrors = _parse_mirrors(path, data.get("mirrors", {}))
    return Manifest(path=path, models=models, profiles=profiles, mirrors=mirrors)


def _parse_model(path: Path, model_id: str, entry: Any) -> ModelSpec:
    where = f"{path}: models.{model_id}"
    if not MODEL_ID_RE.match(model_id):
        raise ManifestError(f"{where}: invalid model id (letters, digits, '.', '_', '-')")
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: must be a table")
    family = entry.get("family")
    if family is None:
        raise ManifestError(f"{where}.family: missing required field (one of {', '.join(FAMILIES)})")
    if family not in FAMILIES:
        raise ManifestError(f"{where}.family: unknown family {family!r} (expected one of {', '.join(FAMILIES)})")
    fields = _FIELDS[family]
    for name in entry:
        if name not in fields:
            raise ManifestError(f"{where}.{name}: unknown field for family {family!r}")
    for name, required in fields.items():
        if required and name not in entry:
            raise ManifestError(f"{where}.{name}: missing required field")

    def text(name: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        value = entry.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ManifestError(f"{where}.{name}: must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise ManifestError(f"{where}.{name}: {what}, got {value!r}")
        return value

    def sha256() -> str:
        return text("sha256", SHA256_RE, "expected 64 lowercase hex digits") or ""

    def url() -> str | None:
        value = text("url")
        if value is not None and not value.startswith(("http://", "https://")):
            raise ManifestError(f"{where}.url: expected an http(s) URL, got {value!r}")
        return value

    if family == "whisper":
        name = text("name", WHISPER_NAME_RE, "expected a file-name-safe model name")
        return WhisperSpec(id=model_id, name=name or "", sha256=sha256(), url=url())
    if family == "spacy":
        name = text("name", SPACY_NAME_RE, "expected a Python package name such as en_core_web_sm")
        version = text("version", re.compile(r"^[0-9][0-9A-Za-z.+-]*$"), "expected a version such as 3.8.0")
        return SpacySpec(id=model_id, name=name or "", version=version or "", sha256=sha256(), url=url())
    repo = text("repo", REPO_RE, "expected a Hugging Face repo id such as facebook/bart-base")
    revision = text("revision")
    return HuggingFaceSpec(
        id=model_id,
        repo=repo or "",
        revision=revision or "",
        include=_globs(where, entry, "include"),
        exclude=_globs(where, entry, "exclude"),
        task=text("task"),
        role=text("role"),
    )


def _globs(where: str, entry: dict[str, Any], name: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ManifestError(f"{where}.{name}: must be a list of glob strings")
    return tuple(value)


def _parse_profiles(path: Path, raw: Any, models: dict[str, ModelSpec]) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: profiles: must be a table of name = [model ids]")
    profiles: dict[str, tuple[str, ...]] = {}
    for name, ids in raw.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ManifestError(f"{path}: profiles.{name}: must be a list of model ids")
        for model_id in ids:
            if model_id not in models:
                raise ManifestError(f"{path}: profiles.{name}: unknown model id {model_id!r}")
        if len(set(ids)) != len(ids):
            raise ManifestError(f"{path}: profiles.{name}: lists a model id twice")
        profiles[name] = tuple(ids)
    return profiles


def _parse_mirrors(path: Path, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: mirrors: must be a table of family = base URL")
    mirrors: dict[str, str] = {}
    for family, base in raw.items():
        if family not in FAMILIES:
            raise ManifestError(f"{path}: mirrors.{family}: unknown family (expected one of {', '.join(FAMILIES)})")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise ManifestError(f"{path}: mirrors.{family}: expected an http(s) base URL, got {base!r}")
        mirrors[family] = base.rstrip("/")
    return mirrors
