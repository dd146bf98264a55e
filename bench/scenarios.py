"""The surroundings of `python -m bench`: the mirror, the manifests, base images and contexts, builds, wipes.

Why one place: every scenario needs the same things (the mirror at a stated bandwidth whose request log counts
the bytes fetched, a repository copy and the app contexts of both layouts, tags and build records to remove)
and every build goes through build.py exactly as a user runs it (bench/buildtrace.py). The scenarios
themselves, per layout: bench/layouts.py.

Nothing older can be reused by accident, nor anyone else's work removed: the run builds on base images of its
own (bench.enginecache.imported_base_image: a new digest, so no earlier record matches), its models are its own
(random weights: no other build has their bytes), and a wipe removes only the run's tags and the build records
that descend from its base images or name its models' files (bench.enginecache.prune_own_records).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import build_inputs
from bench.buildtrace import BuildPyRun, Timed, run_build_py
from bench.contexts import Context, make_context
from bench.diskuse import Added, disk_state, wait_until
from bench.enginecache import (
    CA_BUNDLE,
    WHEELHOUSE,
    imported_base_image,
    prune_own_records,
    record_names,
    remove_images,
)
from bench.modelsets import PROFILE, ModelSet

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Measure:
    """One measured action: its wall time and what it moved (bytes fetched from the mirror, downloaded from a
    registry or cache, unpacked on disk), and for a build its report and BuildKit steps."""

    label: str
    wall: float
    fetched: int = 0
    downloaded: int = 0
    unpacked: int = 0
    model_unpacked: int = 0
    ok: bool = True
    error: str = ""
    detail: str = ""
    steps: list[Timed] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    outside_bake: float = 0.0  # build.py's own time outside the bake (engine checks, SDK inspection)
    ran_again: dict[str, float] = field(default_factory=dict)  # warmed stages that ran (someone pruned them)

    def with_added(self, added: Added) -> Measure:
        self.unpacked, self.model_unpacked = added.bytes, added.model_bytes
        return self


class Bench:
    """One run's surroundings."""

    def __init__(
        self, models: ModelSet, work: Path, bandwidth: float, *, wipe_timeout: float = 300, tiny: bool = False
    ) -> None:
        """`tiny`: the tiny test models, which other people's tests build too (so a build record naming one of
        their files is not necessarily this run's: `record_names` stays empty), and lean venvs (contexts)."""
        self.lean = tiny
        from bench.naive import naive_dockerfile, naive_plan, prepare_context
        from modelbake.mirror.server import MirrorServer

        self.models, self.work, self.bandwidth, self.wipe_timeout = models, work, bandwidth, wipe_timeout
        self.run_id = uuid.uuid4().hex[:8]
        self.started = datetime.now(UTC)
        self.epoch = int(time.time())  # layout i builds with epoch + i: new cache keys for every model step
        self.tags: list[str] = []
        self.notes: list[str] = []
        self.pulled_from: list[str] = []  # registry repositories of the run's own: their pulls are its records
        self.repo = build_inputs.copy_repo(work / "repo")
        self.mirror = MirrorServer(models.root).start()
        self.mirror_args = [a for f, u in sorted(self.mirror.mirrors.items()) for a in ("--mirror", f"{f}={u}")]
        self.manifest = self._manifest(work / "manifest", models.old_sha)
        self.pin_manifest = self._manifest(work / "manifest-pin", models.new_sha)
        self.roots = model_roots(self.manifest, PROFILE)
        prepare_context(self.repo, naive_plan(self.manifest, PROFILE))
        self.naive_file = work / "naive.Dockerfile"
        self.naive_file.write_text(naive_dockerfile((self.repo / "Dockerfile").read_text()))
        self.base = self._own(imported_base_image())
        self.bumped_base = self._own(imported_base_image())
        self.at_start = disk_state(self.roots)  # model files of these names that were there before the run
        self.model_names = () if tiny else record_names([self.manifest, self.pin_manifest], PROFILE)
        self.model_layers: set[str] = set()  # the models images' layers the run built (their digests)
        self.mirror.faults.bandwidth = bandwidth

    def _own(self, tag: str) -> str:
        self.tags.append(tag)
        return tag

    def _manifest(self, dest: Path, whisper_sha: str) -> Path:
        """The tree's manifest with this benchmark's profile (and the given tiny.en pin), locked."""
        text = self.models.manifest.read_text().replace(self.models.old_sha, whisper_sha).rstrip("\n")
        if not text.rpartition("\n[")[2].startswith("profiles]"):
            raise RuntimeError(f"{self.models.manifest}: expected [profiles] as the last table")
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / "models.toml"
        # a JSON array is a TOML array; the empty profile warms the app's deps stage up (see warm_up)
        path.write_text(text + f"\n{PROFILE} = {json.dumps(self.models.ids)}\n{build_inputs.PROFILE_NONE} = []\n")
        build_inputs.lock(path, self.mirror_args)
        return path

    def context(self, layout: str, lock: str) -> Context:
        dest = self.work / "ctx" / f"{layout}-{lock}"
        return make_context(self.repo, dest, layout, lock, self.manifest, PROFILE, lean=self.lean)

    def close(self) -> None:
        self.mirror.stop()

    # -- builds --------------------------------------------------------------------------------------------
    def build(
        self,
        label: str,
        ctx: Context,
        tags: tuple[str, str | None],
        *,
        epoch: int,
        manifest: Path | None = None,
        base: str | None = None,
        profile: str = PROFILE,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Measure:
        """`python build.py` (models image, then the app FROM it or, in the old layout, with copies of its
        layers), as a user runs it; the mirror's bytes during it."""
        app, models = tags
        for tag in tags:
            if tag is not None and tag not in self.tags:
                self.tags.append(tag)
        args = ["--manifest", str(manifest or self.manifest), "--profile", profile, "--network", "host"]
        args += ["--base-image", base or self.base, "--source-date-epoch", str(epoch), *self.mirror_args]
        args += ["--context", str(ctx.path), "--tag", app] + (["--models-tag", models] if models else [])
        args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
        args += ["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []
        self.mirror.clear_requests()
        slug = label.replace(" ", "-").replace("/", "-")
        run = run_build_py(self.repo, [*args, *(extra or [])], self.work / "trace" / slug, label, env)
        if not self.lean:  # the tiny models' layers are other people's too
            self.model_layers.update(run.report.get("models_image", {}).get("layers") or [])
        return measure_of(run, self.fetched())

    @property
    def record_names(self) -> tuple[str, ...]:
        """What only this run's build records say (bench.enginecache.own_records): its models' files and layers,
        and `pulled from <its registry>/...@` (the models image an app with `--models-image` pulls)."""
        return (*self.model_names, *sorted(self.model_layers), *(f"pulled from {r}@" for r in self.pulled_from))

    def fetched(self) -> int:
        return sum(r.bytes_sent for r in self.mirror.requests)

    def warm_deps(self, layout: str, ctx: Context, base: str) -> dict[str, float]:
        """Before a measured build (untimed): the app's `deps` stage for this context and base image, built alone
        with the same build arguments, contexts and secret as build.py's app target. Alone, so the warm-up makes
        no `COPY --link` record of the venv or the base without a model layer merged on it, which would say
        nothing of whose it is (bench.enginecache.own_records) and outlive the run's wipes."""
        from modelbake.image.bake import BuildSpec
        from testkit.buildx import run_build

        spec = BuildSpec(
            context=ctx.path,
            dockerfile=ctx.path / "Dockerfile",
            target="deps",
            build_args={"BASE_IMAGE": base},
            build_contexts={"wheels": str(WHEELHOUSE)} if WHEELHOUSE.is_dir() else {},
            secrets={"ca": CA_BUNDLE} if CA_BUNDLE.is_file() else {},
            network="host",
            load=False,
        )
        bumped = ", bumped base" if base != self.base else ""
        say(f"{layout}: warming the deps stage (lock {ctx.lock}{bumped})")
        return {f"deps: lock {ctx.lock}{bumped}": round(run_build(spec).seconds, 1)}

    def warm_fetch(self, epoch: int) -> dict[str, float]:
        """The models image's fetch stage on both base images with `epoch` (BuildKit hands SOURCE_DATE_EPOCH to
        every RUN, so each epoch has a fetch stage of its own)."""
        from bench.cache_builds import warm_epoch_fetch_stage
        from modelbake.image.dockerfile import render_models_dockerfile
        from modelbake.lockfile import read_lock
        from modelbake.manifest import load_manifest

        loaded = load_manifest(self.manifest)
        models_df = self.work / "Dockerfile.models"
        models_df.write_text(render_models_dockerfile(loaded, read_lock(loaded.lock_path), PROFILE))
        took: dict[str, float] = {}
        for name, base in (("base", self.base), ("bumped base", self.bumped_base)):
            tag = self.tag(f"fetch-{epoch}-{len(took)}")
            took[f"fetch stage ({name})"] = warm_epoch_fetch_stage(self.repo, models_df, tag, epoch, base)
        return took

    def wait_for_disk(self, need: int, what: str, timeout: float = 1800) -> None:
        """Wait (up to `timeout`) until the engine's disk has `need` bytes free: it is shared, and a phase that
        starts short of room dies with ENOSPC mid-build (seen). Says so, and notes it if the room never comes."""
        root = Path("/var/lib/docker") if Path("/var/lib/docker").is_dir() else Path("/")
        free = shutil.disk_usage(root).free
        if free >= need:
            return
        say(f"{what}: {free / 1e9:.0f} GB free, waiting for {need / 1e9:.0f} GB (the engine's disk is shared)")
        if not wait_until(lambda: shutil.disk_usage(root).free >= need, timeout, interval=30):
            self.notes.append(f"{what} started with {shutil.disk_usage(root).free / 1e9:.0f} GB free "
                              f"(wanted {need / 1e9:.0f} GB)")  # fmt: skip

    def remove(self, *tags: str) -> None:
        remove_images(list(tags))

    def tag(self, name: str) -> str:
        tag = f"modelbake-bench/{name}:{self.run_id}"
        self.tags.append(tag)
        return tag

    # -- the engine forgets --------------------------------------------------------------------------------
    def wipe(self) -> bool:
        """The run's images (but its base images) and build records gone, and containerd's collector done with
        their model files: what a fresh runner or client has of this run. Waits until no model file is on disk
        that was not there before the run (with the tiny models, other people's tests make such files too: the
        wait then ends at `wipe_timeout`, which only --tiny meets)."""
        remove_images([t for t in self.tags if t not in (self.base, self.bumped_base)])
        prune_own_records(self.started, self.record_names)
        gone = wait_until(lambda: self.model_bytes_of_run() == 0, self.wipe_timeout)
        if not gone:
            left = self.model_bytes_of_run()
            self.notes.append(
                f"a wipe left {left / 1e6:,.1f} MB of model files on disk after {self.wipe_timeout:.0f} s"
            )
        return gone

    def model_bytes_of_run(self) -> int:
        """Bytes of the model files on disk whose inodes were not there when the run started."""
        return disk_state(self.roots).model_bytes_not_in(self.at_start)

    def cleanup(self) -> None:
        """Everything of the run: images (base images too), build records, the mirror."""
        remove_images(self.tags)
        prune_own_records(self.started, self.record_names)
        self.close()

    def verify(self, tag: str) -> Measure:
        """`docker run --rm --network none IMAGE verify`: every model loaded and run with no network at all."""
        started = time.perf_counter()
        proc = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "verify"], capture_output=True, text=True, timeout=1800
        )
        wall = round(time.perf_counter() - started, 2)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
        ok = proc.returncode == 0
        return Measure("offline verify", wall, ok=ok, detail=tail[0][:200], error="" if ok else tail[0][:300])


WARM_STAGES = ("fetch", "base", "deps")  # built before each layout's clock (Bench.warm_up)


def stages_run(m: Measure, *, models_too: bool) -> dict[str, float]:
    """`build/stage` -> seconds of the warmed stages (and with `models_too` every models stage) that ran in a
    measured build: their records were gone. Other users' Docker tests on this engine remove the build records
    created since their own start (tests/buildcache.py), ours among them."""
    out = {}
    for s in m.report.get("stages", []):
        warm = s["stage"] in WARM_STAGES or (models_too and s["build"] == "models")
        if s["status"] == "built" and warm:
            out[f"{s['build']}/{s['stage']}"] = float(s["seconds"])
    return out


def measure_of(run: BuildPyRun, fetched: int) -> Measure:
    built = [s for s, status in run.stage_status("models").items() if status == "built"]
    detail = "model steps run: " + (", ".join(s for s in built if s not in ("fetch", "models")) or "none")
    return Measure(
        run.label,
        run.wall,
        fetched,
        ok=run.ok,
        error=run.error,
        detail=detail,
        steps=run.steps,
        report=run.report,
        outside_bake=run.outside_bake,
    )


def model_roots(manifest: Path, profile: str) -> tuple[str, ...]:
    """Where the profile's models sit in an image, relative to `/` (what bench.diskuse counts as model bytes)."""
    from modelbake.manifest import load_manifest
    from modelbake.paths import image_paths

    specs = load_manifest(manifest).select(profile)
    return tuple(sorted({p.lstrip("/") for s in specs for p in image_paths(s)}))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
