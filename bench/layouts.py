"""One layout's scenarios in `python -m bench`: the builder, the gha restore, a second app, the pulling client.

The two layouts (bench/contexts.py: NEW, the app FROM the models image; OLD, base -> deps -> a copy of each model
layer -> app) run the same scenarios in turn, in a block of their own with a registry of their own. The block
goes in phases, each ending with a wipe (bench.scenarios.Bench.wipe) so the engine holds one phase's images at a
time (at 3 GB of models every copy counts: the engine's disk is shared):

1. core: cold build (model steps new to the layout: a `--source-date-epoch` of its own), app-code rebuilds, one
   model's pin change;
2. restore: the first version's build exported to the gha emulator (a runner's variables), a wipe, then the same
   build reading the gha cache only, timed; the restored first version, its models image and the pin change
   pushed to the registry;
3. second app: on that engine (the first app restored on it), an app with a smaller lock on the same models:
   model bytes it adds on disk;
4. dependency bump and base-image bump: each built on the pushed models image (`--models-image`, as an app's CI
   builds on a models image built once) and pushed;
5. client: `docker pull` of the first version, then of each new version in turn (base bump, dependency bump, pin
   change), timed, with the registry's bytes and the bytes unpacked on disk.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import client, sdkprobe
from bench.build_inputs import edit_app_code
from bench.contexts import LOCK_A, LOCK_BUMP, LOCK_SMALL, NEW, Context
from bench.diskuse import added_since, disk_state
from bench.enginecache import Registry
from bench.scenarios import Bench, Measure, say, stages_run

UPDATES = ("base", "deps", "pin")  # the new versions a client pulls, in this order
UPDATE_LABELS = {
    "base": "a base-image bump",
    "deps": "a dependency bump",
    "pin": "one model's pin change",
}


@dataclass
class LayoutResult:
    layout: str
    epoch: int = 0  # --source-date-epoch of its builds (a new one when the cold build is measured again)
    warm_up: dict[str, float] = field(default_factory=dict)
    cold: Measure | None = None
    rebuilds: list[Measure] = field(default_factory=list)
    pin: Measure | None = None
    export: Measure | None = None
    restore: Measure | None = None
    second_app: Measure | None = None  # a smaller lock, the same models, on the engine of the first app
    dep_bump: Measure | None = None
    base_bump: Measure | None = None
    pushes: list[client.Push] = field(default_factory=list)
    first_pull: client.Pull | None = None
    pulls: dict[str, client.Pull] = field(default_factory=dict)  # UPDATES -> the pull of that version
    verify: Measure | None = None
    sdk_seconds: float = 0.0  # the report's SDK calls on the first app and models images, right after the build
    sdk_load: sdkprobe.LoadProbe | None = None  # images.load() of the models image with a 10 s and a 600 s timeout

    @property
    def builds(self) -> list[Measure]:
        found = [self.cold, *self.rebuilds, self.pin, self.export, self.restore, self.second_app]
        return [m for m in [*found, self.dep_bump, self.base_bump] if m is not None]


def loopback_address() -> str:
    """A loopback address of the registry's own: containerd keys a blob's registry sources by host without the
    port, so content from an earlier registry on 127.0.0.1 would name repositories this one never had."""
    return "127." + ".".join(str(random.randint(1, 254)) for _ in range(3))


def run_layout(
    bench: Bench,
    layout: str,
    epoch: int,
    *,
    repeat: int,
    verify: bool,
    after_client_pull: Callable[[str, Callable[[], None]], None] | None = None,
) -> LayoutResult:
    """Every scenario of one layout. `after_client_pull(ref, drop_registry)` runs last, with the registry still
    up (the `tar -x` baseline pulls the first version and exports its files, then drops the registry)."""
    r = LayoutResult(layout, epoch)
    ctx = {lock: bench.context(layout, lock) for lock in (LOCK_A, LOCK_BUMP, LOCK_SMALL)}
    with Registry(bench.work / f"registry-{layout}", address=loopback_address()) as registry:
        refs = {v: f"{registry.host}/bench/app-{layout}:{v}" for v in ("v1", "small", *UPDATES)}
        models = {v: f"{registry.host}/bench/models-{layout}:{v}" for v in ("v1", "pin")}
        bench.pulled_from.append(f"{registry.host}/bench/models-{layout}")  # its wipes prune the pulls' records
        try:
            _core(bench, r, ctx[LOCK_A], refs, models, repeat, verify)
            _restore(
                bench, r, ctx[LOCK_A], (refs["v1"], models["v1"]),
                then=lambda cache, env: _publish(bench, r, ctx[LOCK_A], refs, models, registry, cache, env),
            )  # fmt: skip
            _second_app(bench, r, ctx[LOCK_SMALL], (refs["small"], models["v1"]))
            digest, _ = registry.manifest(f"bench/models-{layout}", "v1")
            on_models = models["v1"].rsplit(":", 1)[0] + "@" + digest
            bump = (ctx[LOCK_BUMP], refs["deps"], on_models, bench.base)
            r.dep_bump = _built_on(bench, r, "dependency bump", *bump, registry)
            bump = (ctx[LOCK_A], refs["base"], on_models, bench.bumped_base)
            r.base_bump = _built_on(bench, r, "base-image bump", *bump, registry)
            _client(bench, r, registry, refs)
            if after_client_pull is not None:
                after_client_pull(refs["v1"], lambda: shutil.rmtree(registry.data, ignore_errors=True))
        finally:
            bench.wipe()
            shutil.rmtree(registry.data, ignore_errors=True)
    return r


def _core(bench: Bench, r: LayoutResult, ctx: Context, refs, models, repeat: int, verify: bool) -> None:
    """Cold build, app-code rebuilds, pin change. A measured build whose warmed stages ran again (another user
    pruned their records) is measured again once: the cold build with a new epoch (new model steps), a rebuild
    after another edit; the pin change keeps its measurement and says so."""
    bench.wait_for_disk(int(6.5 * bench.models.total_bytes), f"{r.layout}: the cold build")
    r.warm_up |= bench.warm_deps(r.layout, ctx, bench.base)
    r.warm_up |= bench.warm_fetch(r.epoch)
    v1 = (refs["v1"], models["v1"])
    for attempt in (1, 2):
        before = disk_state(bench.roots)
        cold = bench.build(f"{r.layout} cold build", ctx, v1, epoch=r.epoch)
        r.cold = cold.with_added(added_since(before, bench.roots))
        _check(r.cold)
        if not _lost(bench, r.cold, models_too=False, retry=attempt == 1):
            break
        r.epoch += 1000
        r.warm_up |= {f"{k}, again": v for k, v in bench.warm_fetch(r.epoch).items()}
    r.sdk_seconds = sdkprobe.inspection_seconds([refs["v1"], models["v1"]])
    if verify:
        r.verify = bench.verify(refs["v1"])
    edits = 0
    while len(r.rebuilds) < repeat and edits < repeat + 2:
        edits += 1
        edit_app_code(ctx.path, edits)
        rebuild = bench.build(f"{r.layout} app-code change {edits}", ctx, v1, epoch=r.epoch)
        _check(rebuild)
        if not _lost(bench, rebuild, models_too=True, retry=edits <= repeat):
            r.rebuilds.append(rebuild)
    pin = (refs["pin"], models["pin"])
    r.pin = bench.build(f"{r.layout} pin change", ctx, pin, epoch=r.epoch, manifest=bench.pin_manifest)
    _check(r.pin)
    _lost(bench, r.pin, models_too=False, retry=False)
    bench.remove(refs["pin"], models["pin"])


def _publish(
    bench: Bench, r: LayoutResult, ctx: Context, refs, models, registry: Registry, cache: list[str], env: dict[str, str]
) -> None:
    """After the restore (the engine holds the first version again): it and its models image pushed, and the pin
    change built again (untimed: its own record went with the wipe) and pushed, for the client. The pin change
    reads the gha cache the first version was restored from (`cache`, `env`), as a CI job would: without it the
    deps stage runs again, and a venv installed again is a new layer (new file times) that the client would
    download and unpack on top of the pin change itself. In the first block, the SDK's `images.load()` probed on
    the models image first (the disk has room for its tarball now)."""
    if r.layout == NEW:
        bench.wait_for_disk(int(1.2 * bench.models.total_bytes), "the SDK load probe")
        r.sdk_load = sdkprobe.load_probe(models["v1"], bench.work)
    r.pushes = [client.push(registry, ref) for ref in (refs["v1"], models["v1"])]
    r.warm_up |= {f"{k}, for the registry's pin change": v for k, v in bench.warm_fetch(r.epoch).items()}
    pin = bench.build(
        f"{r.layout} pin change for the registry", ctx, (refs["pin"], models["pin"]), epoch=r.epoch,
        manifest=bench.pin_manifest, extra=cache, env=env,
    )  # fmt: skip
    _check(pin)
    r.pushes.append(client.push(registry, refs["pin"]))
    bench.remove(refs["pin"], models["pin"])


def _restore(
    bench: Bench,
    r: LayoutResult,
    ctx: Context,
    tags: tuple[str, str],
    then: Callable[[list[str], dict[str, str]], None],
) -> None:
    """Export the first version's build to the gha emulator (everything cached here: the export alone), wipe,
    then the same build reading that cache only, timed; then `then(cache_args, env)` with the cache still up
    (read-only). `--models-cache-mode min`: the cache keeps the model layers (all a restore reads), not the fetch
    steps' own layers too, which halves the bytes on this disk."""
    from testkit.ghacache import GhaCacheServer

    store = ram_or(bench.work, 2 * bench.models.total_bytes) / f"modelbake-bench-gha-{bench.run_id}-{r.layout}"
    gha = GhaCacheServer(store).start()
    try:
        env = gha.runner_env()  # a hosted runner's variables, pointed at the v2 emulator
        spec = ["--cache", f"gha,scope=bench{bench.run_id}{r.layout}", "--models-cache-mode", "min"]
        r.export = bench.build(f"{r.layout} export to gha", ctx, tags, epoch=r.epoch, extra=spec, env=env)
        _check(r.export)
        bench.wipe()
        gha.reset_counters()
        before = disk_state(bench.roots)
        restore = bench.build(
            f"{r.layout} restore from gha", ctx, tags, epoch=r.epoch, extra=[*spec, "--cache-read-only"], env=env
        )
        r.restore = restore.with_added(added_since(before, bench.roots))
        r.restore.downloaded = gha.bytes_downloaded
        _check(r.restore)
        ran = [f"{s['build']}/{s['stage']}" for s in restore.report.get("stages", []) if s["status"] == "built"]
        r.restore.detail = "stages run: " + (", ".join(ran) or "none (every stage from the cache)")
        then([*spec, "--cache-read-only"], env)
    finally:
        gha.stop()
        shutil.rmtree(store, ignore_errors=True)


def ram_or(work: Path, need: int) -> Path:
    """/dev/shm when it has `need` bytes free, else `work`: the emulator's blobs out of the engine's shared disk.
    (The restore reads them back minutes after the export wrote them, from the page cache either way.)"""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and shutil.disk_usage(shm).free > need else work


def _second_app(bench: Bench, r: LayoutResult, ctx: Context, tags: tuple[str, str]) -> None:
    """On the engine that holds the first app (restored just before), another app on the same models."""
    bench.wait_for_disk(2 * bench.models.total_bytes, f"{r.layout}: the second app")
    r.warm_up |= bench.warm_deps(r.layout, ctx, bench.base)
    before = disk_state(bench.roots)
    r.second_app = bench.build(f"{r.layout} second app", ctx, tags, epoch=r.epoch)
    r.second_app.with_added(added_since(before, bench.roots))
    _check(r.second_app)
    _lost(bench, r.second_app, models_too=True, retry=False)
    bench.wipe()


def _built_on(
    bench: Bench, r: LayoutResult, what: str, ctx: Context, tag: str, models_image: str, base: str, registry
) -> Measure:
    """A new version of the app on the pushed models image (no model step, no model fetched), pushed, then a
    wipe."""
    bench.wait_for_disk(4 * bench.models.total_bytes, f"{r.layout}: the {what}")
    r.warm_up |= bench.warm_deps(r.layout, ctx, base)
    built = bench.build(
        f"{r.layout} {what}", ctx, (tag, None), epoch=r.epoch, base=base, extra=["--models-image", models_image]
    )
    _check(built)
    _lost(bench, built, models_too=False, retry=False)
    r.pushes.append(client.push(registry, tag))
    bench.wipe()
    return built


def _client(bench: Bench, r: LayoutResult, registry: Registry, refs: dict[str, str]) -> None:
    """A client with nothing of the run (a containerd namespace of its own) pulls the first version, then each
    update, forgetting each."""
    bench.wipe()  # the builder's images and records: their blobs would spare the client its downloads
    bench.wait_for_disk(3 * bench.models.total_bytes, f"{r.layout}: the client")
    namespace = f"modelbake-bench-{bench.run_id}-{r.layout}"
    try:
        r.first_pull = client.pull(registry, refs["v1"], bench.roots, namespace)
        for update in UPDATES:
            level = disk_state(bench.roots).model_bytes
            r.pulls[update] = client.pull(registry, refs[update], bench.roots, namespace)
            if not client.forget([refs[update]], bench.roots, namespace, level, bench.wipe_timeout):
                bench.notes.append(f"{r.layout}: after the {update} pull, the client kept more model files than before")
    finally:
        client.drop_namespace(namespace)


def _lost(bench: Bench, m: Measure, *, models_too: bool, retry: bool) -> bool:
    """Whether warmed stages ran again in `m` (recorded in it and in the notes)."""
    m.ran_again = stages_run(m, models_too=models_too)
    if not m.ran_again:
        return False
    ran = ", ".join(f"{k} {v:.0f} s" for k, v in m.ran_again.items())
    then = "measured again" if retry else "kept, its time includes them"
    bench.notes.append(f"{m.label} ({m.wall:.1f} s): {ran} ran again, their records gone (pruned by another "
                       f"user's test on the engine): {then}")  # fmt: skip
    return True


def _check(m: Measure) -> None:
    if not m.ok:
        raise RuntimeError(f"{m.label} failed: {m.error}")
    say(f"{m.label}: {m.wall:.1f} s, {m.fetched / 1e6:,.1f} MB fetched, {m.model_unpacked / 1e6:,.1f} MB of models")


__all__ = ["NEW", "UPDATES", "UPDATE_LABELS", "LayoutResult", "run_layout"]
