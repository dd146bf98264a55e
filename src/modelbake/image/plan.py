"""What build.py will run, decided without side effects: `make_plan(inputs, options) -> BuildPlan`.

A pure function of the inputs gathered once (inputs.gather: files, engine, cache probes, images present) and
the options: no I/O, nothing printed. Its result is final: the bake targets exactly as `bake.run_bake` runs them,
the files they need (written under `inputs.work` by `materialize`), the warnings and notes for the caller to
print. So a plan is made and checked in a unit test, and a dry run writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from ..cache.spec import CacheBackend, CacheSpecs, specs_for
from ..errors import UsageError, write_error
from ..lockfile import Lock, unpinned_warning
from ..manifest import ModelSpec
from ..mirrors import build_mirrors, mirrors_toml, unforwarded_variables
from .bake import BuildSpec
from .dockerfile import render_models_dockerfile
from .inputs import BuildInputs
from .layers import Layer, plan_layers
from .network import choose_network
from .options import DEFAULT_MODEL_LAYER_COMPRESSION, BuildOptions, app_tag, models_tag, profile_name

# Where the models image comes from: built by this bake, already in the engine and up to date with the lock
# (not rebuilt), or given with --models-image (built elsewhere).
MODELS_BUILT, MODELS_REUSED, MODELS_GIVEN = "built", "reused", "given"


@dataclass(frozen=True)
class BuildPlan:
    targets: Mapping[str, BuildSpec]  # the bake's targets, `models` and/or `app`, final
    models_tag: str
    app_tag: str | None  # None: --models-only
    models_from: str  # MODELS_BUILT / MODELS_REUSED / MODELS_GIVEN
    specs: tuple[ModelSpec, ...]  # the profile's models
    layers: tuple[Layer, ...]  # the models image's layers, bottom to top (layers.plan_layers)
    lock: Lock | None
    lock_hash: str
    caches: tuple[CacheBackend, ...]  # the caches the targets read and write
    files: Mapping[Path, bytes] = field(default_factory=dict)  # what `materialize` writes before the bake
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # choices build.py made for the user, one line each

    @property
    def models_stages(self) -> frozenset[str]:
        """The stages of Dockerfile.models: in the app's graph too (`target:models`), reported as the models'."""
        return frozenset({layer.stage for layer in self.layers} | {"fetch", "models"})


def make_plan(inputs: BuildInputs, options: BuildOptions) -> BuildPlan:
    """The bake of this build. Raises UsageError for a combination the inputs refuse (a --models-image of
    another lock, a loopback mirror another builder cannot reach)."""
    specs = tuple(inputs.manifest.select(options.profile))
    layers = tuple(plan_layers(specs, inputs.lock, options.file_layers_over))
    files: dict[Path, bytes] = {}
    warnings = list(inputs.cache_warnings)
    notes = []
    if inputs.lock is None:
        warnings.append(unpinned_warning(inputs.manifest.lock_path))
    if not specs:
        notes.append(f"profile {options.profile!r} has no models: the models image has no layers")
    mirrors = build_mirrors(options.mirrors, inputs.manifest.mirrors)
    if unforwarded := unforwarded_variables(mirrors, inputs.environ):
        warnings.append(
            f"{', '.join(unforwarded)} set here, but build steps get only --mirror and the manifest's [mirrors]: "
            "pass the mirror as --mirror FAMILY=URL"
        )
    warnings += _gha_warnings(inputs)
    network = choose_network(options, mirrors, inputs.environ)
    notes += [network.note] if network.note else []
    models_from = _models_from(inputs, options)
    targets: dict[str, BuildSpec] = {}
    if models_from == MODELS_BUILT:
        targets["models"] = _models_target(inputs, options, layers, mirrors, network.models, files)
    if not options.models_only:
        source: str | None = (
            "target:models"
            if models_from == MODELS_BUILT
            else f"docker-image://{models_tag(options, inputs.lock_hash)}"
        )
        if models_from == MODELS_BUILT and not specs:
            # A models image without layers has no filesystem, and bake hands a target on to another target only
            # as a filesystem: buildx leaves `target:models` as it is and the app fails to solve ("unsupported
            # context source target for models"). The app starts FROM scratch instead, which is the same image.
            source = None
            notes.append("the app image starts FROM scratch (the models image it would start from is empty)")
        targets["app"] = _app_target(inputs, options, source, network.app, files)
    return BuildPlan(
        targets=targets,
        models_tag=models_tag(options, inputs.lock_hash),
        app_tag=None if options.models_only else app_tag(options),
        models_from=models_from,
        specs=specs,
        layers=layers,
        lock=inputs.lock,
        lock_hash=inputs.lock_hash,
        caches=tuple(_with_gha_version(inputs)),
        files=files,
        warnings=tuple(warnings),
        notes=tuple(notes),
    )


def _models_from(inputs: BuildInputs, options: BuildOptions) -> str:
    """MODELS_GIVEN (checked to hold this lock), MODELS_REUSED, or MODELS_BUILT.

    The default tag names the lock hash and the image holds exactly the locked files: when it is already in the
    engine, built with this SOURCE_DATE_EPOCH, building it again could only give the same layers. Unless a cache
    export, a refresh, a push, another builder or platform, or another compression asks for the build itself.
    """
    if options.models_image:
        found = inputs.given_models_lock_hash
        if found is not None and found != inputs.lock_hash:
            raise UsageError(
                f"--models-image {options.models_image}: built from lock {found or '(unknown)'}, not this lock "
                f"({inputs.lock_hash})",
                hint="build the models image from this models.lock (build.py --models-only --push), or check out "
                "the lock it was built from",
            )
        return MODELS_GIVEN
    reusable = (
        options.models_tag is None
        and inputs.lock is not None
        and options.layer_compression == DEFAULT_MODEL_LAYER_COMPRESSION  # the engine cannot show a layer's
        and not (
            options.caches
            or options.refresh_models
            or options.no_cache
            or options.push
            or options.builder
            or options.platform
        )
    )
    return MODELS_REUSED if reusable and inputs.models_image_present else MODELS_BUILT


def _spec(options: BuildOptions, inputs: BuildInputs) -> partial[BuildSpec]:
    """A BuildSpec with what both targets take from the command line alike."""
    return partial(
        BuildSpec,
        no_cache=options.no_cache,
        builder=options.builder,
        platform=options.platform,
        push=options.push,
        force_compression=True,
        stall_seconds=options.cache_timeout if inputs.caches else None,
    )


def _models_target(
    inputs: BuildInputs,
    options: BuildOptions,
    layers: tuple[Layer, ...],
    mirrors: Mapping[str, str],
    network: str | None,
    files: dict[Path, bytes],
) -> BuildSpec:
    """Dockerfile.models' `models` target: the committed file when it is what this manifest and profile give,
    else a generated one; the mirrors, CA bundle, token and (for file layers) lock as secrets."""
    text = render_models_dockerfile(inputs.manifest, inputs.lock, options.profile, options.file_layers_over)
    dockerfile = inputs.source / "Dockerfile.models"
    if inputs.committed_models_dockerfile != text:
        dockerfile = inputs.work / "Dockerfile.models"
        files[dockerfile] = text.encode()
    secrets = _ca_secret(inputs)
    if mirrors:
        # A secret, not a build arg: a mirror's address must never change a layer's cache key.
        secrets["mirrors"] = inputs.work / "mirrors.toml"
        files[secrets["mirrors"]] = mirrors_toml(mirrors).encode()
    if inputs.lock is not None and any(layer.file is not None for layer in layers):
        # A big file's own step reads where to fetch it from the lock: as a secret, so a new revision that keeps
        # the file keeps the step (see dockerfile.LOCK_MOUNT).
        secrets["lock"] = inputs.manifest.lock_path
    if inputs.files.hf_token_file:
        secrets["hf_token"] = inputs.files.hf_token_file
    cache = _cache_specs(inputs, options, "models", options.layer_compression)
    return _spec(options, inputs)(
        context=inputs.source,
        dockerfile=dockerfile,
        target="models",
        tags=[models_tag(options, inputs.lock_hash)],
        build_args={
            "BASE_IMAGE": options.base_image,
            # The fetch steps stamp every file and directory of a model layer with this time, and BuildKit uses it
            # for the image's created time: two cold builds of one lock give the same layers and image.
            "SOURCE_DATE_EPOCH": str(options.source_date_epoch),
            "MODELBAKE_LOCK_HASH": inputs.lock_hash,  # a label of the models image: --models-image checks it
        },
        secrets=secrets,
        cache_from=cache.cache_from,
        cache_to=cache.cache_to,
        network=network,
        no_cache_filter=list(dict.fromkeys(layer.stage for layer in layers)) if options.refresh_models else [],
        layer_compression=options.layer_compression,
    )


def _app_target(
    inputs: BuildInputs,
    options: BuildOptions,
    models_source: str | None,
    network: str | None,
    files: dict[Path, bytes],
) -> BuildSpec:
    """The app's Dockerfile in its context, FROM the models image (`models_source`: the models target, or an
    image; None: an empty models image, so FROM scratch); a manifest other than the context's own goes in as the
    `manifest` context."""
    contexts = {"models": models_source} if models_source is not None else {}
    if inputs.files.wheelhouse:
        contexts["wheels"] = str(inputs.files.wheelhouse)
    if inputs.manifest.path != inputs.context / "models.toml":
        staged = inputs.work / "manifest"
        files[staged / "models.toml"] = inputs.manifest_bytes
        if inputs.lock_bytes is not None:
            files[staged / "models.lock"] = inputs.lock_bytes
        contexts["manifest"] = str(staged)
    cache = _cache_specs(inputs, options, "app", options.app_layer_compression)
    return _spec(options, inputs)(
        context=inputs.context,
        dockerfile=inputs.context / "Dockerfile",
        target="app",
        tags=[app_tag(options)],
        build_args={
            "BASE_IMAGE": options.base_image,
            "MODELS_IMAGE": models_tag(options, inputs.lock_hash) if models_source is not None else "scratch",
            "MODELBAKE_PROFILE": options.profile or "",
        },
        build_contexts=contexts,
        secrets=_ca_secret(inputs),
        cache_from=cache.cache_from,
        cache_to=cache.cache_to,
        network=network,
        layer_compression=options.app_layer_compression,
    )


def _ca_secret(inputs: BuildInputs) -> dict[str, Path]:
    return {"ca": inputs.files.ca_bundle} if inputs.files.ca_bundle else {}


def _cache_specs(inputs: BuildInputs, options: BuildOptions, build: str, layer_compression: str) -> CacheSpecs:
    # Cache blobs default to the image's own layer compression, so the cache export uploads the blobs the
    # image export just wrote instead of recompressing every layer into a second copy.
    return specs_for(
        list(_with_gha_version(inputs)),
        build,
        profile_name(options),
        inputs.lock_hash,
        read_only=options.cache_read_only,
        compression=options.cache_compression or layer_compression,
        models_mode=options.models_cache_mode,
        environ=dict(inputs.environ),
    )


def _with_gha_version(inputs: BuildInputs) -> list[CacheBackend]:
    """The caches, each gha one set to the protocol the runner's variables select (ghaenv.resolve)."""
    version = inputs.gha.version if inputs.gha else None
    return [replace(b, gha_version=version) if b.kind == "gha" and version else b for b in inputs.caches]


def _gha_warnings(inputs: BuildInputs) -> list[str]:
    if inputs.gha and inputs.gha.version == 1 and inputs.environ.get("GITHUB_SERVER_URL") == "https://github.com":
        return [
            "GitHub.com serves only the cache v2 protocol (v1 was shut down on 2025-04-15): set "
            "ACTIONS_CACHE_SERVICE_V2=true for the step, as hosted runners do"
        ]
    return []


def materialize(plan: BuildPlan) -> None:
    """Write the plan's files (under its work directory) before a build: the one write step of planning."""
    for path, data in plan.files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise write_error(exc, path) from exc


__all__ = ["MODELS_BUILT", "MODELS_GIVEN", "MODELS_REUSED", "BuildPlan", "make_plan", "materialize"]
