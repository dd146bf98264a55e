"""Find the profile's models in the manifest + lock and in the baked models directory (`modelbake preload --dest`).

- Whisper by path: `<models>/whisper/<name>.pt`
- spaCy by package name, with the pipeline's own directory (`<models>/spacy/<name>`, a pip --target dir) on
  sys.path
- Hugging Face by repo id at the LOCKED commit, from `<models>/huggingface/hub`; map/reduce chosen by `role`

Where each of these lives is modelbake's to say (`modelbake.paths`); only files are checked here (cheap);
loading happens in the stage modules.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from modelbake.errors import ModelbakeError, UsageError
from modelbake.lockfile import check_drift, read_lock
from modelbake.manifest import HuggingFaceSpec, SpacySpec, WhisperSpec, load_manifest
from modelbake.paths import Layout

from .errors import InputError, ModelSetupError

SEQ2SEQ_TASKS = ("summarization", "translation", "text2text-generation")


@dataclass(frozen=True)
class ModelRef:
    """One model the pipeline uses, as reported in the output's `models` list."""

    id: str
    family: str
    source: str  # whisper/spacy: name; huggingface: repo
    revision: str  # whisper: sha256; spacy: version; huggingface: commit
    path: Path  # whisper: the .pt; spacy: its directory for sys.path; huggingface: the hub cache dir
    role: str | None = None

    def describe(self, calls: int | None = None) -> dict:
        """The output's entry; `calls`: inference calls the run made with this model (proof it was used)."""
        key = "repo" if self.family == "huggingface" else "name"
        out = {"id": self.id, "family": self.family, key: self.source, "revision": self.revision}
        if self.role:
            out["role"] = self.role
        if calls is not None:
            out["calls"] = calls
        return out


@dataclass(frozen=True)
class ProfileModels:
    profile: str | None
    models_dir: Path
    whisper: ModelRef
    spacy: ModelRef
    map: ModelRef
    reduce: ModelRef  # the map model itself when the profile has no role = "reduce" model

    def used(self) -> list[ModelRef]:
        refs = [self.whisper, self.spacy, self.map]
        if self.reduce.id != self.map.id:
            refs.append(self.reduce)
        return refs

    def activate_spacy(self) -> None:
        """Put the baked spaCy pipeline's directory first on sys.path so `spacy.load(name)` finds it."""
        target = str(self.spacy.path)
        if target not in sys.path:
            sys.path.insert(0, target)


def resolve(manifest_file: Path, profile: str | None, models_dir: Path) -> ProfileModels:
    """The models the pipeline needs from `profile` (all manifest models when None), with files checked."""
    try:
        manifest = load_manifest(manifest_file)
        specs = manifest.select(profile)
        lock = read_lock(manifest.lock_path)
    except UsageError as exc:  # unknown profile: the caller's mistake
        raise InputError(str(exc)) from exc
    except ModelbakeError as exc:  # manifest or lock unreadable: the image's setup
        raise ModelSetupError(str(exc)) from exc
    where = f"{manifest_file}" + (f" profile {profile!r}" if profile else "")
    if lock is None:
        raise ModelSetupError(f"{manifest.lock_path}: lock not found (run `modelbake lock` and bake the models)")
    drift = check_drift(manifest, lock, [s.id for s in specs])
    if drift:
        raise ModelSetupError(f"{manifest.lock_path}: stale lock: {drift[0]} (run `modelbake lock`)")
    if not models_dir.is_dir():
        raise ModelSetupError(f"{models_dir}: models directory not found (set MODELBAKE_MODELS_DIR or --models)")

    def one(kind: type, label: str):
        found = [s for s in specs if isinstance(s, kind)]
        if len(found) != 1:
            ids = ", ".join(s.id for s in found) or "none"
            raise ModelSetupError(f"{where}: needs exactly one {label} model, found {len(found)} ({ids})")
        return found[0]

    whisper_spec: WhisperSpec = one(WhisperSpec, "whisper")
    spacy_spec: SpacySpec = one(SpacySpec, "spacy")
    hf = [s for s in specs if isinstance(s, HuggingFaceSpec)]
    map_spec = _by_role(hf, "map", where, required=True)
    reduce_spec = _by_role(hf, "reduce", where, required=False) or map_spec

    layout = Layout.dest(models_dir)
    whisper_path = layout.whisper_file(whisper_spec)
    if not whisper_path.is_file():
        raise ModelSetupError(f"model {whisper_spec.id}: {whisper_path} not found (bake it with modelbake preload)")
    spacy_dir = layout.spacy_import_dir(spacy_spec)
    if spacy_dir is None or not (spacy_dir / spacy_spec.name).is_dir():
        raise ModelSetupError(f"model {spacy_spec.id}: {layout.spacy_target(spacy_spec)} not found")
    hub = layout.hf_hub_cache

    def hf_ref(spec: HuggingFaceSpec) -> ModelRef:
        commit = lock.models[spec.id].revision
        snapshot = layout.hf_snapshot_dir(spec, commit)
        if not snapshot.is_dir():
            raise ModelSetupError(f"model {spec.id}: {spec.repo}@{commit[:12]} not in {hub}")
        if spec.task is not None and spec.task not in SEQ2SEQ_TASKS:
            raise ModelSetupError(
                f"model {spec.id}: task {spec.task!r} is not a seq2seq task ({', '.join(SEQ2SEQ_TASKS)})"
            )
        return ModelRef(spec.id, "huggingface", spec.repo, commit, hub, role=spec.role)

    return ProfileModels(
        profile=profile,
        models_dir=models_dir,
        whisper=ModelRef(
            whisper_spec.id, "whisper", whisper_spec.name, lock.models[whisper_spec.id].revision, whisper_path
        ),
        spacy=ModelRef(spacy_spec.id, "spacy", spacy_spec.name, lock.models[spacy_spec.id].revision, spacy_dir),
        map=hf_ref(map_spec),
        reduce=hf_ref(reduce_spec),
    )


def _by_role(specs: list[HuggingFaceSpec], role: str, where: str, required: bool) -> HuggingFaceSpec | None:
    found = [s for s in specs if s.role == role]
    if len(found) > 1:
        raise ModelSetupError(f"{where}: more than one model with role = {role!r}: {', '.join(s.id for s in found)}")
    if not found and required:
        raise ModelSetupError(f"{where}: no Hugging Face model with role = {role!r}")
    return found[0] if found else None
