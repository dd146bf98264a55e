"""Where every model lives, in each context: the libraries' caches, a `--dest` tree, `/models` in an image, and
the root its image layer is built from.

One owner, so the layout cannot drift between the fetchers, the Dockerfile generator, clean, verify, the build
report and the app: each of them asks here and joins no model path of its own. Pure: nothing here touches the
file system except `spacy_import_dir`, which looks at what a tree holds.

A `--dest` tree (and `/models` in an image, which is one):

- `whisper/<name>.pt`
- `huggingface/hub/models--<org>--<name>/`: a hub cache
- `spacy/<package>/`: a pip `--target` directory per pipeline (`<package>/`, `<package>-<version>.dist-info/`),
  so each pipeline is a layer of its own and goes on `sys.path` by itself
- `.modelbake/`: modelbake's state (verified markers, locks, temp files); never part of a model layer
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .constants import (
    HF_HOME_ENV,
    HF_HUB_CACHE_ENV,
    OFFLINE_ENV,
    STATE_DIR_ENV,
    STATE_DIRNAME,
    WHISPER_ROOT_ENV,
    XDG_CACHE_HOME_ENV,
    env,
)
from .manifest import HuggingFaceSpec, ModelSpec, SpacySpec, WhisperSpec

# Where an image holds its `--dest` tree, and where each fetch step leaves its model's layer contents.
MODELS_ROOT = PurePosixPath("/models")
LAYERS_ROOT = PurePosixPath("/out")

# A `--dest` tree's family directories, relative to its root.
WHISPER_DIR = PurePosixPath("whisper")
HF_HUB_DIR = PurePosixPath("huggingface/hub")
SPACY_DIR = PurePosixPath("spacy")


def _cache_home() -> Path:
    return Path(env(XDG_CACHE_HOME_ENV) or os.path.join(os.path.expanduser("~"), ".cache"))


def default_whisper_root() -> Path:
    """MODELBAKE_WHISPER_ROOT (set in images), else where `whisper.load_model(name)` looks by default
    (whisper/__init__.py: XDG_CACHE_HOME/whisper)."""
    return Path(env(WHISPER_ROOT_ENV) or _cache_home() / "whisper")


def default_hf_hub_cache() -> Path:
    """huggingface_hub's cache: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub."""
    return Path(env(HF_HUB_CACHE_ENV) or Path(env(HF_HOME_ENV) or _cache_home() / "huggingface") / "hub")


def default_state_dir() -> Path:
    """modelbake's own state for the usual caches (stat markers of verified files): MODELBAKE_STATE_DIR, else
    XDG_CACHE_HOME/modelbake."""
    return Path(env(STATE_DIR_ENV) or _cache_home() / "modelbake")


def slug(model_id: str) -> str:
    """A model id as a lower-case name for Docker stages and layer roots (BuildKit's stage names are lower case)."""
    return re.sub(r"[^a-z0-9_.-]", "-", model_id.lower())


def hub_repo_folder(repo: str) -> str:
    """huggingface_hub's folder for a model repo in a hub cache: `models--org--name`."""
    return "models--" + repo.replace("/", "--")


@dataclass(frozen=True)
class Layout:
    """The roots of one context: a `--dest` tree, or the libraries' usual caches."""

    whisper_root: Path
    hf_hub_cache: Path
    spacy_root: Path | None  # None: pipelines are pip-installed into the active Python environment
    state_dir: Path
    is_dest: bool  # True for --dest DIR (an image's model tree), False for the usual caches

    @classmethod
    def dest(cls, root: Path | str) -> Layout:
        root = Path(root).absolute()
        return cls(
            whisper_root=root / WHISPER_DIR,
            hf_hub_cache=root / HF_HUB_DIR,
            spacy_root=root / SPACY_DIR,
            state_dir=root / STATE_DIRNAME,
            is_dest=True,
        )

    @classmethod
    def default(cls) -> Layout:
        """Where the libraries look by default: `~/.cache/whisper`, the hub cache, spaCy in the environment."""
        return cls(
            whisper_root=default_whisper_root(),
            hf_hub_cache=default_hf_hub_cache(),
            spacy_root=None,
            state_dir=default_state_dir(),
            is_dest=False,
        )

    @classmethod
    def state_only(cls, state_dir: Path) -> Layout:
        """A layout for `modelbake lock`, which writes models nowhere: only its state (temp files, locks)."""
        unused = state_dir / "unused"
        return cls(whisper_root=unused, hf_hub_cache=unused, spacy_root=None, state_dir=state_dir, is_dest=False)

    @property
    def dest_root(self) -> Path | None:
        """The `--dest` tree this layout is, or None for the usual caches."""
        return self.state_dir.parent if self.is_dest else None

    # --- one model's files -------------------------------------------------------------------------------

    def whisper_file(self, spec: WhisperSpec) -> Path:
        """Where `whisper.load_model(path)` finds the checkpoint (and where whisper itself caches `<name>.pt`)."""
        return self.whisper_root / f"{spec.name}.pt"

    def hf_repo_dir(self, spec: HuggingFaceSpec) -> Path:
        return self.hf_hub_cache / hub_repo_folder(spec.repo)

    def hf_snapshot_dir(self, spec: HuggingFaceSpec, commit: str) -> Path:
        return self.hf_repo_dir(spec) / "snapshots" / commit

    def hf_ref_file(self, spec: HuggingFaceSpec, ref: str) -> Path:
        return self.hf_repo_dir(spec) / "refs" / ref

    def hf_blob_file(self, spec: HuggingFaceSpec, sha256: str) -> Path:
        """Where the hub cache keeps an LFS file's bytes: `blobs/<sha256>` (its snapshot entry links here)."""
        return self.hf_repo_dir(spec) / "blobs" / sha256

    def spacy_target(self, spec: SpacySpec) -> Path | None:
        """The pipeline's own pip `--target` directory, or None when it goes into the active environment."""
        return None if self.spacy_root is None else self.spacy_root / spec.name

    def legacy_spacy_paths(self, spec: SpacySpec) -> list[Path]:
        """What a `--dest` tree written before one directory per pipeline holds of this pipeline beside the
        others: `spacy/<package>-<version>.dist-info` (its `spacy/<package>/` is now the pipeline's directory)."""
        if self.spacy_root is None:
            return []
        return sorted(self.spacy_root.glob(f"{spec.name}-*.dist-info"))

    def model_paths(self, spec: ModelSpec) -> list[Path]:
        """The entries that hold exactly this model here (what `clean-cache` removes, what its layer copies).

        A pipeline in the active environment has no path of its own here: pip owns it.
        """
        if isinstance(spec, WhisperSpec):
            return [self.whisper_file(spec)]
        if isinstance(spec, HuggingFaceSpec):
            return [self.hf_repo_dir(spec)]
        if isinstance(spec, SpacySpec):
            target = self.spacy_target(spec)
            return [] if target is None else [target]
        raise TypeError(f"unknown spec type {type(spec).__name__}")

    def spacy_import_dir(self, spec: SpacySpec) -> Path | None:
        """The directory to put on `sys.path` so `spacy.load(<package>)` finds this pipeline (None: the active
        environment already has it). `spacy.load` needs the package's dist-info on `sys.path` as much as the
        package itself. A tree written before one directory per pipeline (flat `spacy/`) still loads: then it
        is `spacy/` itself."""
        target = self.spacy_target(spec)
        if target is None or self.spacy_root is None:
            return None
        if installed_version(spec.name, target) is None and self.legacy_spacy_paths(spec):
            return self.spacy_root
        return target

    def spacy_import_dirs(self, specs: Iterable[ModelSpec]) -> list[Path]:
        """`spacy_import_dir` of every pipeline among `specs`, each once, in order."""
        dirs = [self.spacy_import_dir(s) for s in specs if isinstance(s, SpacySpec)]
        return list(dict.fromkeys(d for d in dirs if d is not None))

    # --- modelbake's own state -----------------------------------------------------------------------------

    def marker_path(self, model_id: str) -> Path:
        return self.state_dir / "verified" / f"{model_id}.json"

    def lock_path(self, model_id: str) -> Path:
        return self.state_dir / "locks" / f"{model_id}.lock"

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"


def installed_version(name: str, target: Path | None) -> str | None:
    """The version of an installed distribution, in the pip `--target` directory `target` or (None) in the
    active environment."""
    try:
        if target is None:
            return importlib.metadata.version(name)
        for dist in importlib.metadata.distributions(path=[str(target)]):
            if (dist.metadata["Name"] or "").replace("-", "_").lower() == name.lower():
                return dist.version
    except importlib.metadata.PackageNotFoundError:
        return None
    return None


# --- in an image ---------------------------------------------------------------------------------------------

_IMAGE = Layout.dest(Path(MODELS_ROOT))


def image_paths(spec: ModelSpec) -> list[str]:
    """The paths under /models that hold exactly this model in an image: what its layer holds. The `--dest`
    tree's own paths, with the tree at /models."""
    return [path.as_posix() for path in _IMAGE.model_paths(spec)]


def image_spacy_path(specs: Iterable[ModelSpec]) -> str:
    """The image's pipeline directories, `:`-separated, for `PYTHONPATH` (empty without pipelines)."""
    return ":".join(image_paths(s)[0] for s in specs if isinstance(s, SpacySpec))


def tree_env(layout: Layout, specs: Iterable[ModelSpec]) -> dict[str, str]:
    """What points the libraries at a `--dest` tree, offline, as the image points them at /models: the hub cache,
    the Whisper root, and the spaCy pipelines' directories (`MODELBAKE_SPACY_PATH`, for `PYTHONPATH`)."""
    return {
        HF_HUB_CACHE_ENV: str(layout.hf_hub_cache),
        **OFFLINE_ENV,
        WHISPER_ROOT_ENV: str(layout.whisper_root),
        "MODELBAKE_SPACY_PATH": ":".join(str(d) for d in layout.spacy_import_dirs(specs)),
    }


def image_env() -> dict[str, str]:
    """The variables that point the libraries at /models in an image (the app Dockerfile sets these)."""
    return {HF_HUB_CACHE_ENV: _IMAGE.hf_hub_cache.as_posix(), WHISPER_ROOT_ENV: _IMAGE.whisper_root.as_posix()}


def layer_root(spec: ModelSpec) -> str:
    """Where a fetch step leaves its model, as `<root>/models/...`, every entry stamped with SOURCE_DATE_EPOCH.

    The models stage copies this directory's contents to `/` so that every directory of the layer (`models/`,
    `models/huggingface/hub/`, ...) comes from the fetch step with a fixed time. Copying `/models/x` to
    `/models/x` instead makes BuildKit create the parents with the build's clock, and two cold builds of one
    lock then differ in every layer (checked on BuildKit 0.13, which cannot fix that time itself).
    """
    return (LAYERS_ROOT / slug(spec.id)).as_posix()


def image_blob_path(spec: HuggingFaceSpec, sha256: str) -> str:
    """An LFS file's blob under /models in an image (what a file layer of its own holds)."""
    return _IMAGE.hf_blob_file(spec, sha256).as_posix()


def file_layer_name(repo: str, sha256: str) -> str:
    """`file-<sha256[:16]>-<org>--<name>`: a big file's own build stage and layer root. The repo is part of it
    because its hub cache folder is part of the layer's path: two repos holding the same file (a fork, a
    shared tokenizer) are two layers, and must be two stages."""
    return f"file-{sha256[:16]}-{slug(hub_repo_folder(repo).removeprefix('models--'))}"


def file_layer_root(repo: str, sha256: str) -> str:
    """Where a file's own fetch step leaves it, as `<root>/models/...`, stamped like a model's layer root."""
    return (LAYERS_ROOT / file_layer_name(repo, sha256)).as_posix()


def in_layer_root(root: str, image_path: str) -> str:
    """Where an image path (`/models/...`, with or without its leading `/`) sits under a fetch step's layer root."""
    return f"{root}/{image_path.lstrip('/')}"


def layer_paths(spec: ModelSpec) -> list[str]:
    """Where each of `image_paths(spec)` sits under the layer root in the fetch step."""
    root = layer_root(spec)
    return [in_layer_root(root, path) for path in image_paths(spec)]
