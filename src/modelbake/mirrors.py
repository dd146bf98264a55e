"""Resolve each family's base URL, and build the file URLs under it.

Precedence: --mirror FAMILY=URL > MODELBAKE_MIRROR_<FAMILY> > (huggingface) HF_ENDPOINT >
MODELBAKE_MIRRORS_FILE (a [mirrors] table; Docker builds pass it as a secret so a mirror's address never
changes a layer's cache key) > the manifest's [mirrors] > the official URL.

A Docker build's steps see no variable of the shell that runs build.py: they get the mirrors secret alone, which
holds `build_mirrors()` (--mirror over the manifest's [mirrors]); `unforwarded_variables()` names the mirror
variables set in that shell which the build would therefore not follow.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

from .constants import (
    FAMILIES,
    HF_ENDPOINT_ENV,
    MIRROR_ENV_PREFIX,
    MIRRORS_FILE_ENV,
    OFFICIAL_BASES,
    env,
    hf_endpoint_env,
)
from .errors import UsageError


def parse_mirror_args(values: list[str] | None) -> dict[str, str]:
    """Parse repeated `--mirror FAMILY=URL` values."""
    result: dict[str, str] = {}
    for value in values or []:
        family, sep, url = value.partition("=")
        if not sep or family not in FAMILIES or not url.startswith(("http://", "https://")):
            raise UsageError(
                f"--mirror {value!r}: expected FAMILY=URL with FAMILY one of {', '.join(FAMILIES)} and an http(s) URL"
            )
        result[family] = url.rstrip("/")
    return result


def _mirrors_file() -> dict[str, str]:
    path = env(MIRRORS_FILE_ENV)
    if not path or not Path(path).is_file():
        return {}
    try:
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{path}: malformed mirrors file ({MIRRORS_FILE_ENV}): {exc}") from exc
    table = data.get("mirrors", data)
    if not isinstance(table, dict):
        raise UsageError(f"{path}: mirrors: must be a table of family = base URL ({MIRRORS_FILE_ENV})")
    return {k: str(v).rstrip("/") for k, v in table.items() if k in FAMILIES and v}


def resolve_mirrors(cli: dict[str, str] | None = None, manifest: dict[str, str] | None = None) -> dict[str, str]:
    """The base URL for every family, after applying the precedence above."""
    from_file = _mirrors_file()
    resolved: dict[str, str] = {}
    for family in FAMILIES:
        candidates = [
            (cli or {}).get(family),
            env(MIRROR_ENV_PREFIX + family.upper()),
            hf_endpoint_env() if family == "huggingface" else None,
            from_file.get(family),
            (manifest or {}).get(family),
            OFFICIAL_BASES[family],
        ]
        resolved[family] = next(c for c in candidates if c).rstrip("/")
    return resolved


def build_mirrors(cli: Mapping[str, str], manifest: Mapping[str, str]) -> dict[str, str]:
    """The mirrors a Docker build's steps get (its mirrors secret): --mirror over the manifest's [mirrors]."""
    return {**manifest, **cli}


def mirrors_toml(mirrors: Mapping[str, str]) -> str:
    """A `[mirrors]` table, as MODELBAKE_MIRRORS_FILE reads it."""
    return "[mirrors]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in sorted(mirrors.items()))


def unforwarded_variables(mirrors: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """The mirror variables set in `environ` that a build whose steps get `mirrors` would not follow."""
    names = [MIRROR_ENV_PREFIX + family.upper() for family in FAMILIES] + [HF_ENDPOINT_ENV, MIRRORS_FILE_ENV]
    found = []
    for name in names:
        value = environ.get(name)
        family = name.removeprefix(MIRROR_ENV_PREFIX).lower() if name.startswith(MIRROR_ENV_PREFIX) else None
        family = "huggingface" if name == HF_ENDPOINT_ENV else family
        if value and (family is None or mirrors.get(family) != value.rstrip("/")):
            found.append(name)
    return found


def whisper_url(base: str, name: str, sha256: str, explicit: str | None = None) -> str:
    """`<base>/<sha256>/<name>.pt`; an explicit manifest URL wins only when no mirror replaces the official base."""
    if explicit and base == OFFICIAL_BASES["whisper"]:
        return explicit
    return f"{base}/{sha256}/{name}.pt"


def spacy_url(base: str, name: str, version: str, explicit: str | None = None) -> str:
    """`<base>/<name>-<version>/<name>-<version>-py3-none-any.whl` (the GitHub release path)."""
    if explicit and base == OFFICIAL_BASES["spacy"]:
        return explicit
    return f"{base}/{name}-{version}/{name}-{version}-py3-none-any.whl"
