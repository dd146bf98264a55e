"""Every environment variable and official URL modelbake reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path

FAMILIES = ("whisper", "spacy", "huggingface")

# The official URL prefixes. A mirror base replaces exactly this prefix and keeps the rest of the path.
OFFICIAL_BASES = {
    "whisper": "https://openaipublic.azureedge.net/main/whisper/models",
    "spacy": "https://github.com/explosion/spacy-models/releases/download",
    "huggingface": "https://huggingface.co",
}

MIRROR_ENV_PREFIX = "MODELBAKE_MIRROR_"  # MODELBAKE_MIRROR_WHISPER, ..._SPACY, ..._HUGGINGFACE
MIRRORS_FILE_ENV = "MODELBAKE_MIRRORS_FILE"  # a TOML [mirrors] table; how Docker builds pass mirrors as a secret
HF_TOKEN_FILE_ENV = "MODELBAKE_HF_TOKEN_FILE"

LOCK_VERSION = 1
STATE_DIRNAME = ".modelbake"


def env(name: str) -> str | None:
    """An environment variable, with empty treated as unset."""
    value = os.environ.get(name)
    return value if value else None


def hf_endpoint_env() -> str | None:
    return env("HF_ENDPOINT")


def default_whisper_root() -> Path:
    """MODELBAKE_WHISPER_ROOT (set in images), else where whisper.load_model(name) looks by default
    (whisper/__init__.py: XDG_CACHE_HOME/whisper)."""
    if env("MODELBAKE_WHISPER_ROOT"):
        return Path(os.environ["MODELBAKE_WHISPER_ROOT"])
    base = env("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisper"


def default_hf_hub_cache() -> Path:
    """huggingface_hub's cache: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if env("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = env("HF_HOME") or os.path.join(env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(hf_home) / "hub"


def default_state_dir() -> Path:
    """modelbake's own state for the default caches (stat markers of verified files)."""
    base = env("MODELBAKE_STATE_DIR")
    if base:
        return Path(base)
    return Path(env("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "modelbake"
