"""Every environment variable modelbake reads or sets, and every official URL, named in one place.

The values of the libraries' cache-root variables are read by `paths.py` (where each model lives); the GitHub
runner's variables (ACTIONS_*, GITHUB_*) are `ghaenv.py`'s, which reads them as buildx and BuildKit do.
"""

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
MANIFEST_ENV = "MODELBAKE_MANIFEST"  # the CLI's default --manifest
DEBUG_ENV = "MODELBAKE_DEBUG"  # verify prints a failing loader's traceback
HF_TOKEN_ENV = "HF_TOKEN"  # huggingface_hub's own token variable, the last place a token is looked for
HF_ENDPOINT_ENV = "HF_ENDPOINT"  # huggingface_hub's mirror variable
DOCKER_HOST_ENV = "DOCKER_HOST"  # the Docker client's engine address
# The libraries' cache roots (values read in paths.py) and what verify sets so that they load offline.
XDG_CACHE_HOME_ENV, HF_HOME_ENV, HF_HUB_CACHE_ENV = "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
QUIET_LIBRARIES_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}

LOCK_VERSION = 1
STATE_DIRNAME = ".modelbake"


def env(name: str) -> str | None:
    """An environment variable, with empty treated as unset."""
    value = os.environ.get(name)
    return value if value else None


def hf_endpoint_env() -> str | None:
    return env(HF_ENDPOINT_ENV)
