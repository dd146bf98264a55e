"""Every environment variable the app reads, in one place, and the offline switches for the HF libraries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from modelbake.paths import MODELS_ROOT

MODELS_DIR_ENV = "MODELBAKE_MODELS_DIR"  # the baked `--dest` tree: whisper/, spacy/, huggingface/hub/
MANIFEST_ENV = "MODELBAKE_MANIFEST"  # models.toml (its models.lock lives beside it)
PROFILE_ENV = "MODELBAKE_PROFILE"  # default profile when --profile is not given
DEFAULT_MODELS_DIR = Path(MODELS_ROOT)  # where an image holds the baked tree (modelbake.paths)
DEFAULT_MANIFEST = Path("/app/models.toml")


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def models_dir(flag: str | None) -> Path:
    return Path(flag or _env(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR)


def manifest_path(flag: str | None) -> Path:
    return Path(flag or _env(MANIFEST_ENV) or DEFAULT_MANIFEST)


def profile(flag: str | None) -> str | None:
    return flag or _env(PROFILE_ENV)


def set_offline_defaults() -> None:
    """Offline defaults for huggingface_hub/transformers; they read these once, at import, so call it first.

    Without HF_HUB_OFFLINE and no network, `from_pretrained` retries for minutes before using the cache.
    `setdefault`: a user who really wants the Hub can still set the variables to 0.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hub = sys.modules.get("huggingface_hub")
    if hub is not None and os.environ["HF_HUB_OFFLINE"].lower() in ("1", "true", "yes", "on"):
        hub.constants.HF_HUB_OFFLINE = True  # imported before this call: its constant was read already
