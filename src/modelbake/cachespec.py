"""`build.py --cache` values -> buildx `--cache-from`/`--cache-to` specs, with scopes, checks and a probe.

Three backends people use: `gha[,scope=PREFIX]` (the GitHub Actions cache), `local:DIR` and `registry:REF`,
plus any raw `type=...` spec passed through. Each build gets its own scope so the two never evict each other:
the models image is scoped by profile and lock hash (a model change starts a fresh scope by itself, and the
old one ages out), the app image by profile and branch (reading the default branch's scope as a fallback).
Model layers export with `mode=max` (every fetch step is worth keeping); the app with `mode=min`.

Written by hand because buildx has no notion of "the same cache, scoped per image", and because buildx 0.13
silently ignores `type=gha` without the runner's variables and has no HTTP timeout for a stalled cache: a
build that waits forever, or quietly caches nothing, is worse than a clear warning and a cold build.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

GHA_URL_VARIABLES = ("ACTIONS_CACHE_URL", "ACTIONS_RESULTS_URL")
GHA_TOKEN_VARIABLE = "ACTIONS_RUNTIME_TOKEN"
DEFAULT_GHA_PREFIX = "modelbake"
DEFAULT_BRANCH = "main"
# Cache blobs: model weights barely compress (gzip -1 saves ~8%, BuildKit's zstd under 1%); from a registry,
# uncompressed blobs restore fastest, zstd close behind, gzip twice as slow and ~24 s per GiB to write
# (bench/results-cache.md). build.py passes each image's own layer compression (imagebuild.py), so a cache
# export reuses the blobs the image export wrote. Forced, so a layer whose blob has another compression is
# converted rather than uploaded as it is. (BuildKit 0.13's gha exporter ignores the setting and uploads the
# blob each layer has: hence the models image's own layers are uncompressed.)
CACHE_COMPRESSIONS = ("zstd", "uncompressed", "gzip")
DEFAULT_CACHE_COMPRESSION = "zstd"
CACHE_MODES = ("max", "min")


@dataclass
class CacheBackend:
    """One `--cache` value, parsed."""

    kind: str  # gha / local / registry / raw
    value: str  # prefix (gha), directory (local), reference (registry), the spec itself (raw)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return {"gha": "GitHub Actions cache", "local": f"local cache {self.value}"}.get(
            self.kind, f"{self.kind} cache {self.value}"
        )


@dataclass
class CacheSpecs:
    """What one build passes to buildx."""

    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)


def parse_cache(value: str) -> CacheBackend:
    """`gha`, `gha,scope=ci`, `local:DIR`, `registry:REF` or `type=...`; anything else is a usage error."""
    if value.startswith("type="):
        return CacheBackend("raw", value)
    head, _, rest = value.partition(",")
    if head == "gha":
        options = dict(_pairs(value, rest))
        unknown = set(options) - {"scope", "timeout"}
        if unknown:
            raise UsageError(f"--cache {value!r}: unknown option {sorted(unknown)[0]!r} (gha takes scope=, timeout=)")
        prefix = options.pop("scope", DEFAULT_GHA_PREFIX)
        if not re.fullmatch(r"[A-Za-z0-9._-]+", prefix):
            raise UsageError(f"--cache {value!r}: scope must be letters, digits, '.', '_' or '-'")
        return CacheBackend("gha", prefix, options)
    kind, sep, target = value.partition(":")
    if sep and target and kind == "local":
        return CacheBackend("local", str(Path(target).resolve()))
    if sep and target and kind == "registry":
        return CacheBackend("registry", target)
    raise UsageError(f"--cache {value!r}: expected gha[,scope=PREFIX], local:DIR, registry:REF or type=...")


def _pairs(value: str, rest: str):
    for item in filter(None, rest.split(",")):
        key, sep, val = item.partition("=")
        if not sep or not val:
            raise UsageError(f"--cache {value!r}: expected key=value, got {item!r}")
        yield key.strip(), val.strip()


def require_gha_environment(environ: dict[str, str] | None = None) -> None:
    """Stop when buildx would silently skip `type=gha` (it needs the runner's URL and token)."""
    env = os.environ if environ is None else environ
    missing = []
    if not any(env.get(name) for name in GHA_URL_VARIABLES):
        missing.append(" or ".join(GHA_URL_VARIABLES))
    if not env.get(GHA_TOKEN_VARIABLE):
        missing.append(GHA_TOKEN_VARIABLE)
    if missing:
        raise UsageError(
            f"--cache gha: {' and '.join(missing)} not set, and buildx would silently build without the cache",
            hint="in a workflow, expose them with crazy-max/ghaction-github-runtime before build.py",
        )


def branch_scope(environ: dict[str, str] | None = None) -> str:
    """The branch this build caches the app for: the PR's head, else the ref name, else the default branch."""
    env = os.environ if environ is None else environ
    name = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or DEFAULT_BRANCH
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or DEFAULT_BRANCH


def specs_for(
    backends: list[CacheBackend],
    build: str,
    label: str,
    pin: str,
    *,
    read_only: bool = False,
    compression: str = DEFAULT_CACHE_COMPRESSION,
    models_mode: str = "max",
    environ: dict[str, str] | None = None,
) -> CacheSpecs:
    """The cache-from/to of one build (`build` is "models" or "app"; `label` the profile; `pin` the lock hash).

    `models_mode`: "max" (default) also keeps every fetch step's own layer, so a profile that gains a model or
    loses one reuses the others' fetches; "min" keeps only the model layers, which is all a restore needs
    (each `COPY --link` layer's cache key derives from its fetch step's definition, not its result) and halves
    the bytes stored and uploaded. With gha, whose exporter in BuildKit 0.13 gzips every layer that has no blob
    yet, "max" also gzips the fetch steps' layers on every cold export (bench/results.md).
    """
    env = os.environ if environ is None else environ
    models = build == "models"
    if models_mode not in CACHE_MODES:
        raise UsageError(f"--models-cache-mode {models_mode!r}: expected one of {', '.join(CACHE_MODES)}")
    mode = models_mode if models else "min"
    if models:
        scopes = [f"models-{label}-{pin}"]
    else:
        branch = branch_scope(env)
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", env.get("GITHUB_BASE_REF") or DEFAULT_BRANCH)
        scopes = [f"app-{label}-{branch}"] + ([f"app-{label}-{base}"] if base != branch else [])
    if compression not in CACHE_COMPRESSIONS:
        raise UsageError(f"--cache-compression {compression!r}: expected one of {', '.join(CACHE_COMPRESSIONS)}")
    packed = f"compression={compression},force-compression=true"
    out = CacheSpecs()
    for backend in backends:
        if backend.kind == "gha":
            timeout = backend.options.get("timeout", "10m")
            for i, scope in enumerate(scopes):
                full = f"{backend.value}-{scope}"
                out.cache_from.append(f"type=gha,scope={full},timeout={timeout}")
                if i == 0 and not read_only:
                    out.cache_to.append(
                        f"type=gha,scope={full},mode={mode},{packed},ignore-error=true,timeout={timeout}"
                    )
        elif backend.kind == "local":
            path = f"{backend.value}/{scopes[0]}"
            out.cache_from.append(f"type=local,src={path}")
            if not read_only:
                out.cache_to.append(f"type=local,dest={path},mode={mode},{packed},ignore-error=true")
        elif backend.kind == "registry":
            for i, scope in enumerate(scopes):
                ref = f"{backend.value}:{scope}" if _has_no_tag(backend.value) else f"{backend.value}-{scope}"
                out.cache_from.append(f"type=registry,ref={ref}")
                if i == 0 and not read_only:
                    out.cache_to.append(
                        f"type=registry,ref={ref},mode={mode},{packed},ignore-error=true,image-manifest=true"
                    )
        else:
            out.cache_from.append(backend.value)
            if not read_only:
                out.cache_to.append(backend.value)
    return out


def _has_no_tag(ref: str) -> bool:
    """`host:5000/cache` has no tag; `host:5000/cache:v1` has one (a port is not a tag)."""
    last = ref.rsplit("/", 1)[-1]
    return ":" not in last and "@" not in last


def probe(backend: CacheBackend, timeout: float, environ: dict[str, str] | None = None) -> str | None:
    """None when the backend answers within `timeout`; else why not, for the warning.

    Any HTTP answer counts as alive: the point is to catch a cache server that is down or stalls, which would
    otherwise fail or hang the whole build (BuildKit 0.13's gha client has no HTTP timeout).
    """
    import httpx

    env = os.environ if environ is None else environ
    if backend.kind == "gha":
        url = next((env[name] for name in GHA_URL_VARIABLES if env.get(name)), None)
        if not url:
            return "no cache URL in the environment"
        headers = {"Authorization": f"Bearer {env.get(GHA_TOKEN_VARIABLE, '')}"}
    elif backend.kind == "registry":
        host = backend.value.split("/", 1)[0]
        scheme = "http" if host.startswith(("127.", "localhost", "[::1]")) else "https"
        url, headers = f"{scheme}://{host}/v2/", {}
    else:
        return None  # local directories and raw specs: nothing to probe
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), verify=_ca_bundle(env), trust_env=False) as client:
            client.get(url, headers=headers)
    except httpx.TimeoutException:
        return f"no answer from {url} within {timeout:g} s"
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


def _ca_bundle(env) -> str | bool:
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        if env.get(name) and Path(env[name]).is_file():
            return env[name]
    return True


def usable_backends(backends: list[CacheBackend], timeout: float, warn=None) -> list[CacheBackend]:
    """The backends that answer; a warning for each that does not (the build then runs without it)."""
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr, flush=True))
    alive = []
    for backend in backends:
        reason = probe(backend, timeout)
        if reason is None:
            alive.append(backend)
        else:
            warn(f"{backend.label} unreachable ({reason}): building without it")
    return alive


__all__ = [
    "CacheBackend",
    "CacheSpecs",
    "branch_scope",
    "parse_cache",
    "probe",
    "require_gha_environment",
    "specs_for",
    "usable_backends",
]
