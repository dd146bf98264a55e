"""Every environment variable and official URL modelbake reads, in one place (the libraries' cache roots they
name are `paths.py`'s)."""

from __future__ import annotations

import os

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
WHISPER_ROOT_ENV = "MODELBAKE_WHISPER_ROOT"  # where Whisper checkpoints go without --dest (images set it)
STATE_DIR_ENV = "MODELBAKE_STATE_DIR"  # modelbake's own state without --dest

LOCK_VERSION = 1
STATE_DIRNAME = ".modelbake"


def env(name: str) -> str | None:
    """An environment variable, with empty treated as unset."""
    value = os.environ.get(name)
    return value if value else None


def hf_endpoint_env() -> str | None:
    return env("HF_ENDPOINT")
