"""Map Whisper and spaCy download URLs onto files of the mirror directory.

Whisper's own URLs carry the checkpoint's sha256 (`/<sha256>/<name>.pt`): a flat `whisper/<name>.pt` is served
for such a URL only if its digest matches, so the mirror never answers a pin with other bytes by accident.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelbake.mirror.hubcache import DigestCache

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class NotInMirror(Exception):
    """The URL names nothing the mirror has; the message says what was looked for."""


def safe_name(name: str) -> bool:
    """A single path component that cannot leave its directory (no separators, no dot files)."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name and "\0" not in name


def whisper_file(root: Path, digests: DigestCache, sha256: str, name: str) -> Path:
    """`whisper/<sha256>/<name>`, else `whisper/<name>` when its sha256 is the one in the URL."""
    sha256 = sha256.lower()
    if not _SHA256_RE.fullmatch(sha256) or not safe_name(name):
        raise NotInMirror(f"not a Whisper checkpoint URL: /whisper/{sha256}/{name}")
    nested = root / "whisper" / sha256 / name
    if nested.is_file():
        return nested
    flat = root / "whisper" / name
    if not flat.is_file():
        raise NotInMirror(f"no whisper/{sha256}/{name} or whisper/{name} in {root}")
    actual = digests.sha256(flat)
    if actual != sha256:
        raise NotInMirror(f"whisper/{name} in {root} has sha256 {actual}, not {sha256}")
    return flat


def spacy_file(root: Path, parts: list[str]) -> Path:
    """`/spacy/<name>-<version>/<file>` -> `spacy/<name>-<version>/<file>` or `spacy/<file>`."""
    if not 1 <= len(parts) <= 2 or not all(safe_name(p) for p in parts):
        raise NotInMirror(f"not a spaCy package URL: /spacy/{'/'.join(parts)}")
    candidates = (
        [root / "spacy" / parts[0] / parts[1], root / "spacy" / parts[1]]
        if len(parts) == 2
        else [root / "spacy" / parts[0]]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NotInMirror(f"no spacy/{'/'.join(parts)} or spacy/{parts[-1]} in {root}")
