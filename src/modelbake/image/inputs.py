"""Everything a build depends on that needs I/O, read once, before planning: `gather(options, ...) -> BuildInputs`.

Planning (plan.make_plan) is then a pure function of these inputs and the options. What is read here: the
manifest and its lock, the committed Dockerfile.models, the local files the options name, whether the outputs can
be written (checked before a build that may take minutes), the engine and its versions, which caches answer,
and whether the models image is already in the engine (or, given with --models-image, which lock it holds).
Bad input is refused before the engine is asked anything, a mirror no build step can reach included. A dry run
reads the files and the environment only: no engine, no network.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..cache.ghaenv import GhaTarget, resolve
from ..cache.spec import CacheBackend, models_scope
from ..errors import DestinationError, UsageError, write_error
from ..lockfile import Lock, lock_hash_of, read_lock, require_current
from ..manifest import Manifest, load_manifest
from ..mirrors import build_mirrors
from .dockerfile import LOCK_HASH_LABEL
from .engine import EngineInfo, check_engine
from .network import choose_network
from .options import BuildOptions, models_tag, profile_name

if TYPE_CHECKING:
    from docker import DockerClient

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"  # where GitHub Actions shows a step's Markdown summary


@dataclass(frozen=True)
class LocalFiles:
    """The local files and directories the options name, resolved and checked to exist."""

    ca_bundle: Path | None = None
    hf_token_file: Path | None = None
    wheelhouse: Path | None = None


@dataclass(frozen=True)
class BuildInputs:
    source: Path  # modelbake's own tree: Dockerfile.models' context (its fetch code)
    context: Path  # the app's build context, holding its Dockerfile
    manifest: Manifest
    manifest_bytes: bytes  # the manifest and lock as read, for a build context of their own
    lock: Lock | None
    lock_bytes: bytes | None
    lock_hash: str  # of models.lock, or `unlocked-<manifest hash>` without one
    committed_models_dockerfile: str | None  # source/Dockerfile.models, when there is one
    files: LocalFiles
    environ: Mapping[str, str]
    work: Path  # an empty directory for the files the plan writes
    gha: GhaTarget | None = None  # the Actions cache the runner's variables name, when --cache gha
    caches: tuple[CacheBackend, ...] = ()  # the --cache backends that answered the probe
    cache_warnings: tuple[str, ...] = ()  # one per backend dropped by the probe
    engine: EngineInfo | None = None  # None in a dry run
    client: DockerClient | None = field(default=None, compare=False, repr=False)  # its connection, for the report
    models_image_present: bool = False  # the models tag is in the engine, built with this SOURCE_DATE_EPOCH
    given_models_lock_hash: str | None = None  # --models-image: the lock hash its label names


def gather(
    options: BuildOptions,
    root: Path,
    environ: Mapping[str, str],
    work: Path,
    connect: Callable[[], DockerClient] | None = None,
) -> BuildInputs:
    """Read every input of a build; raises the project's typed errors for bad input (exit 2) and a missing
    engine (exit 1) before anything is built. `connect` (engine.docker_client) None: a dry run, which asks no
    engine and no network."""
    inputs = _read_files(options, root, environ, work)
    if connect is None:
        return inputs
    _check_writable_outputs(options, environ)
    return _ask_engine(inputs, options, connect())


def _read_files(options: BuildOptions, root: Path, environ: Mapping[str, str], work: Path) -> BuildInputs:
    """The files and the environment: everything bad input can be found in, so it is said before the engine."""
    source = root.resolve()
    context = (options.context or root).resolve()
    if not options.models_only and not (context / "Dockerfile").is_file():
        raise UsageError(
            f"--context {context}: no Dockerfile there",
            hint="point --context at your app's directory (it holds the app's Dockerfile), or copy modelbake's",
        )
    manifest = load_manifest((options.manifest or context / "models.toml").resolve())
    lock = read_lock(manifest.lock_path)
    require_current(manifest, lock, [s.id for s in manifest.select(options.profile)])
    manifest_bytes = manifest.path.read_bytes()
    lock_bytes = manifest.lock_path.read_bytes() if lock is not None else None
    lock_hash = lock_hash_of(lock_bytes) if lock_bytes is not None else "unlocked-" + lock_hash_of(manifest_bytes)
    committed = source / "Dockerfile.models"
    gha = resolve(environ) if any(b.kind == "gha" for b in options.caches) else None
    # A mirror the build steps cannot reach is bad input: said now, before the engine is asked anything.
    choose_network(options, build_mirrors(options.mirrors, manifest.mirrors), environ)
    return BuildInputs(
        source=source,
        context=context,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        lock=lock,
        lock_bytes=lock_bytes,
        lock_hash=lock_hash,
        committed_models_dockerfile=committed.read_text(encoding="utf-8") if committed.is_file() else None,
        files=_local_files(options),
        environ=MappingProxyType(dict(environ)),
        work=work,
        gha=gha,
        caches=options.caches,
    )


def _ask_engine(inputs: BuildInputs, options: BuildOptions, client: DockerClient) -> BuildInputs:
    """The engine's versions, the caches that answer the probe, and the models image it has or is given."""
    from ..cache.probe import usable_backends
    from .inspection import image_labels, local_image

    gha = inputs.gha
    engine = check_engine(
        client,
        need_containerd_store=bool(inputs.caches) and not options.builder,
        gha_version=gha.version if gha else None,
        builder=options.builder,
    )
    warnings: list[str] = []
    scope = models_scope(profile_name(options), inputs.lock_hash)
    backends = list(inputs.caches)
    alive = usable_backends(backends, options.cache_timeout, scope, warnings.append, inputs.environ, gha=gha)
    present = False
    if not options.models_image:
        image = local_image(client, models_tag(options, inputs.lock_hash))
        present = image is not None and _created_at(image.attrs.get("Created"), options.source_date_epoch)
    given = image_labels(options.models_image).get(LOCK_HASH_LABEL, "") if options.models_image else None
    return replace(
        inputs,
        caches=tuple(alive),
        cache_warnings=tuple(warnings),
        engine=engine,
        client=client,
        models_image_present=present,
        given_models_lock_hash=given,
    )


def _local_files(options: BuildOptions) -> LocalFiles:
    return LocalFiles(
        ca_bundle=_existing(options.ca_bundle, "--ca-bundle"),
        hf_token_file=_existing(options.hf_token_file, "--hf-token-file"),
        wheelhouse=_existing(options.wheelhouse, "--wheelhouse", directory=True),
    )


def _existing(path: Path | None, option: str, directory: bool = False) -> Path | None:
    if path is None:
        return None
    path = path.resolve()
    if not (path.is_dir() if directory else path.is_file()):
        raise UsageError(f"{option} {path}: no such {'directory' if directory else 'file'}")
    return path


def _check_writable_outputs(options: BuildOptions, environ: Mapping[str, str]) -> None:
    """`--json FILE` and `$GITHUB_STEP_SUMMARY` can be written, said before a build that may take minutes."""
    if options.json is not None:
        target = options.json.resolve()
        if target.is_dir():
            raise UsageError(f"--json {options.json}: is a directory", hint="name a file to write the report to")
        try:
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".probe"):
                pass
        except OSError as exc:
            raise write_error(exc, target) from exc
    summary = environ.get(STEP_SUMMARY_ENV)
    if summary:
        try:
            with open(summary, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            error = write_error(exc, Path(summary))
            raise DestinationError(f"{STEP_SUMMARY_ENV}: {error.message}", error.hint, error.exit_code) from exc


def _created_at(created: object, epoch: int) -> bool:
    """Whether an image's `Created` time is `epoch` (the models image stamps SOURCE_DATE_EPOCH there)."""
    try:
        return datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp() == epoch
    except ValueError:
        return False


__all__ = ["STEP_SUMMARY_ENV", "BuildInputs", "LocalFiles", "gather"]
