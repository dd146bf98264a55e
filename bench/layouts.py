"""One layout's scenarios in `python -m bench`: the builder, the gha restore, the pulling client.

The two layouts (bench/contexts.py: NEW, the app FROM the models image; OLD, base -> deps -> a copy of each model
layer -> app) run the same scenarios in turn, each in a block of its own that starts from an engine without
anything of the run and ends the same way (bench.scenarios.Bench.wipe), with a registry of its own:

1. builder: cold build (model steps new to this layout: its own `--source-date-epoch`), app-code rebuilds, one
   model's pin change, a second app with other dependencies (lock B) on the same engine (model bytes it adds
   on disk), a base-image bump (`--base-image` another image); each app image pushed to the registry;
2. restore: the same build exporting to the gha emulator (a runner's variables), a wipe, the restore timed;
3. client: a wipe, then `docker pull` of the first version, and of each new version in turn (base bump,
   dependency bump = lock B, pin change), timed, with the registry's bytes and the bytes unpacked on disk.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import client
from bench.build_inputs import edit_app_code
from bench.contexts import LOCK_A, LOCK_B, NEW, Context
from bench.diskuse import added_since, disk_state
from bench.enginecache import Registry
from bench.scenarios import Bench, Measure, say

UPDATES = ("base", "deps", "pin")  # the new versions a client pulls, in this order
UPDATE_LABELS = {
    "base": "base-image bump",
    "deps": "dependency bump (lock A -> lock B)",
    "pin": "one model's pin change",
}


@dataclass
class LayoutResult:
    layout: str
    warm_up: dict[str, float] = field(default_factory=dict)
    cold: Measure | None = None
    rebuilds: list[Measure] = field(default_factory=list)
    pin: Measure | None = None
    second_app: Measure | None = None  # lock B, the same models, on the engine that built the first app
    base_bump: Measure | None = None
    pushes: list[client.Push] = field(default_factory=list)
    export: Measure | None = None
    restore: Measure | None = None
    first_pull: client.Pull | None = None
    pulls: dict[str, client.Pull] = field(default_factory=dict)  # UPDATES -> the pull of that version
    verify: Measure | None = None

    @property
    def builds(self) -> list[Measure]:
        found = [self.cold, *self.rebuilds, self.pin, self.second_app, self.base_bump, self.export, self.restore]
        return [m for m in found if m is not None]


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
    after_warm_up: Callable[[], None] | None = None,
    after_cold: Callable[[str], None] | None = None,
) -> LayoutResult:
    """Every scenario of one layout. `after_warm_up()` runs once the layout's deps layers are built (the naive
    rebuild shares them), `after_cold(app_tag)` once its first app image is (the `tar -x` baseline's files)."""
    result = LayoutResult(layout)
    ctx = {LOCK_A: bench.context(layout, LOCK_A), LOCK_B: bench.context(layout, LOCK_B)}
    with Registry(bench.work / f"registry-{layout}", address=loopback_address()) as registry:
        try:
            result.warm_up = bench.warm_up(layout, epoch, ctx)
            if after_warm_up is not None:
                after_warm_up()
            refs = {v: f"{registry.host}/bench/app-{layout}:{v}" for v in ("v1", *UPDATES)}
            models = {v: f"{registry.host}/bench/models-{layout}:{v}" for v in ("v1", "base", "pin")}
            _builder(bench, result, ctx, refs, models, epoch, repeat)
            if verify:
                result.verify = bench.verify(refs["v1"])
            if after_cold is not None:
                after_cold(refs["v1"])
            result.pushes = [client.push(registry, refs[v]) for v in ("v1", *UPDATES)]
            _restore(bench, result, ctx[LOCK_A], (refs["v1"], models["v1"]), epoch)
            _client(bench, result, registry, refs)
        finally:
            bench.wipe()
            shutil.rmtree(registry.data, ignore_errors=True)
    return result


def _builder(bench: Bench, r: LayoutResult, ctx: dict[str, Context], refs, models, epoch: int, repeat: int) -> None:
    v1 = (refs["v1"], models["v1"])
    before = disk_state(bench.roots)
    r.cold = bench.build(f"{r.layout} cold build", ctx[LOCK_A], v1, epoch=epoch).with_added(
        added_since(before, bench.roots)
    )
    _check(r.cold)
    for i in range(repeat):
        edit_app_code(ctx[LOCK_A].path, i + 1)
        r.rebuilds.append(bench.build(f"{r.layout} app-code change {i + 1}", ctx[LOCK_A], v1, epoch=epoch))
        _check(r.rebuilds[-1])
    pin = (refs["pin"], models["pin"])
    r.pin = bench.build(f"{r.layout} pin change", ctx[LOCK_A], pin, epoch=epoch, manifest=bench.pin_manifest)
    _check(r.pin)
    before = disk_state(bench.roots)
    second = (refs["deps"], models["v1"])
    r.second_app = bench.build(f"{r.layout} second app (lock B)", ctx[LOCK_B], second, epoch=epoch)
    r.second_app.with_added(added_since(before, bench.roots))
    _check(r.second_app)
    bumped = (refs["base"], models["base"])
    r.base_bump = bench.build(f"{r.layout} base-image bump", ctx[LOCK_A], bumped, epoch=epoch, base=bench.bumped_base)
    _check(r.base_bump)
    same = _model_layers(r.base_bump) == _model_layers(r.cold)
    if not same:
        bench.notes.append(f"{r.layout}: the base-image bump's model layers differ from the first build's")


def _restore(bench: Bench, r: LayoutResult, ctx: Context, tags: tuple[str, str], epoch: int) -> None:
    """Export the first version's build to the gha emulator (everything cached here: the export alone), wipe,
    then the same build reading that cache only, timed."""
    from testkit.ghacache import GhaCacheServer

    store = bench.work / f"gha-{r.layout}"
    gha = GhaCacheServer(store).start()
    try:
        env = gha.runner_env()  # a hosted runner's variables, pointed at the v2 emulator
        spec = ["--cache", f"gha,scope=bench{bench.run_id}{r.layout}"]
        r.export = bench.build(f"{r.layout} export to gha", ctx, tags, epoch=epoch, extra=spec, env=env)
        _check(r.export)
        bench.wipe()
        gha.reset_counters()
        before = disk_state(bench.roots)
        restore = bench.build(
            f"{r.layout} restore from gha", ctx, tags, epoch=epoch, extra=[*spec, "--cache-read-only"], env=env
        )
        r.restore = restore.with_added(added_since(before, bench.roots))
        r.restore.downloaded = gha.bytes_downloaded
        _check(r.restore)
        status = {**restore_status(restore, "models"), **restore_status(restore, "app")}
        ran = [s for s, v in status.items() if v == "built"]
        r.restore.detail = "stages run: " + (", ".join(ran) or "none (every stage from the cache)")
    finally:
        gha.stop()
        shutil.rmtree(store, ignore_errors=True)


def restore_status(m: Measure, build: str) -> dict[str, str]:
    return {f"{build}/{s['stage']}": s["status"] for s in m.report.get("stages", []) if s["build"] == build}


def _client(bench: Bench, r: LayoutResult, registry: Registry, refs: dict[str, str]) -> None:
    """A client with none of the run's images pulls the first version, then each update, forgetting each."""
    bench.wipe()
    r.first_pull = client.pull(registry, refs["v1"], bench.roots)
    for update in UPDATES:
        level = disk_state(bench.roots).model_bytes
        r.pulls[update] = client.pull(registry, refs[update], bench.roots)
        if not client.forget([refs[update]], bench.roots, level, bench.wipe_timeout):
            bench.notes.append(f"{r.layout}: after the {update} pull, the engine kept more model files than before")
    client.forget([refs["v1"]], bench.roots, 0, bench.wipe_timeout)


def _model_layers(m: Measure | None) -> dict[str, str]:
    return {x["id"]: x.get("models_image_layer") or "" for x in (m.report.get("models", []) if m else [])}


def _check(m: Measure) -> None:
    if not m.ok:
        raise RuntimeError(f"{m.label} failed: {m.error}")
    say(f"{m.label}: {m.wall:.1f} s, {m.fetched / 1e6:,.1f} MB fetched, {m.model_unpacked / 1e6:,.1f} MB of models")


__all__ = ["NEW", "UPDATES", "UPDATE_LABELS", "LayoutResult", "run_layout"]
