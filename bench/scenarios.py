"""The scenarios of `python -m bench`: naive vs modelbake, cold, app-code change, one pin change, cache restore.

Why one place: every scenario needs the same surroundings (the mirror at a stated bandwidth whose request log
counts the bytes fetched, a repository copy to edit, tags and build records to remove afterwards), and the
order matters for the engine's disk: the naive images go before modelbake's cold build, everything of the run
goes before the cache rounds. Builds go through build.py exactly as a user runs it (bench/build_runs.py's and
bench/cache_builds.py's `run_build_py`, which keep BuildKit's step durations via bench/buildtrace.py).

Nothing older can be reused by accident: every build of a run passes a `--source-date-epoch` of its own, which
is an ARG of every model step, so each model step's cache key is new while the deps and fetch stages (warmed up
before the clock starts, and never wiped) stay cached for naive and modelbake alike.

The models measured: bench/modelsets.py.
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

from bench import build_inputs, build_runs, cache_builds
from bench.buildtrace import Timed
from bench.enginecache import BASE_IMAGE, CA_BUNDLE, WHEELHOUSE, Registry, remove_images, wipe_records_since
from bench.modelsets import PROFILE, ModelSet
from bench.naive import build_naive, naive_dockerfile, naive_plan, prepare_context

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One measured build (or run): wall time and the bytes the mirror sent during it."""

    scenario: str
    approach: str  # naive / modelbake / tar
    wall: float
    fetched: int
    ok: bool = True
    detail: str = ""
    error: str = ""
    steps: list[Timed] = field(default_factory=list)
    report: dict = field(default_factory=dict)


@dataclass
class Restore:
    backend: str
    compression: str  # "default" (build.py as shipped) or the forced cache compression
    export: Result
    restore: Result
    pulled: int
    all_cached: bool
    same_layers: bool


class Bench:
    """One run's surroundings: mirror, repository copy, manifests, tags, and the clock for the wipes."""

    def __init__(self, models: ModelSet, work: Path, bandwidth: float) -> None:
        from modelbake.mirror.server import MirrorServer

        self.models, self.work, self.bandwidth = models, work, bandwidth
        self.run_id = uuid.uuid4().hex[:8]
        self.epoch = int(time.time())  # every model step of this run gets a new cache key
        self.tags: list[str] = []
        self.edits = 0
        self.notes: list[str] = []
        self.repo = build_inputs.copy_repo(work / "repo")
        self.mirror = MirrorServer(models.root).start()
        self.mirror_args = [a for f, u in sorted(self.mirror.mirrors.items()) for a in ("--mirror", f"{f}={u}")]
        self.manifest = self._manifest(work / "manifest", models.old_sha)
        self.pin_manifest = self._manifest(work / "manifest-pin", models.new_sha)
        prepare_context(self.repo, naive_plan(self.manifest, PROFILE))
        self.naive_file = work / "naive.Dockerfile"
        self.naive_file.write_text(naive_dockerfile((self.repo / "Dockerfile").read_text()))
        self.mirror.faults.bandwidth = bandwidth
        self.started = datetime.now(UTC)

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

    def close(self) -> None:
        self.mirror.stop()

    # -- surroundings ---------------------------------------------------------------------------------------
    def tag(self, name: str) -> str:
        tag = f"modelbake-bench/{name}:{self.run_id}"
        self.tags.append(tag)
        return tag

    def fetched(self) -> int:
        return sum(r.bytes_sent for r in self.mirror.requests)

    def edit_app(self) -> None:
        self.edits += 1
        build_inputs.edit_app_code(self.repo, self.edits)

    def wipe(self, since: datetime, tags: list[str], *, free_disk: bool = False) -> int:
        """Images and every build record created since `since` (never the deps layer): the engine forgets.

        Records built on the deps layer (the naive code and download layers, the app's layers) stay until
        `free_disk`: pruning them makes the next app or naive build run the deps step again (40 s). The last
        builds that need deps are the pin change's; the cache rounds after it build the models image only.
        """
        remove_images(tags)
        return wipe_records_since(since, descendants=not free_disk)

    def warm_up(self) -> dict[str, float]:
        """The deps stage (naive and app image) and the fetch stage (models image), before the clock starts:
        both approaches reuse them, and a change of the lock would otherwise rebuild them inside a timing."""
        from modelbake.dockerfile import render_models_dockerfile
        from modelbake.lockfile import read_lock
        from modelbake.manifest import load_manifest

        # Kept tagged until the cache rounds: an image holding the deps chain keeps its 2 GB unpacked, as the
        # previous image of the app does on a developer's or runner's engine (else each build unpacks it, ~30 s).
        deps = build_naive(
            self.repo,
            self.naive_file,
            self.tag("deps"),
            self.mirror.url,
            BASE_IMAGE,
            self.work / "trace" / "deps",
            target="deps",
        )
        if not deps.ok:
            raise RuntimeError(f"deps stage: {deps.error}")
        loaded = load_manifest(self.manifest)
        models_df = self.work / "Dockerfile.models"
        models_df.write_text(render_models_dockerfile(loaded, read_lock(loaded.lock_path), PROFILE))
        fetch = cache_builds.warm_epoch_fetch_stage(self.repo, models_df, self.tag("fetch"), self.epoch)
        # The app's deps stage as build.py builds it (its Dockerfile, named contexts and target): the naive
        # build's deps record above is not always the one build.py's app build finds (measured: 42 s rerun).
        app_deps = build_runs.run_build_py(
            self.repo,
            self.build_py_args(self.manifest, app=True, profile=build_inputs.PROFILE_NONE)
            + ["--tag", self.tag("none"), "--models-tag", self.tag("none-models")],
            self.work / "trace" / "warm-app-deps",
            "warm-up",
            "app with no models",
            tolerant=True,
        )
        if not app_deps.ok:
            raise RuntimeError(f"warm-up of the app's deps stage: {app_deps.error}")
        self.started = datetime.now(UTC)
        return {"deps stage": deps.wall, "fetch stage": fetch, "app deps stage (build.py)": app_deps.wall}

    def build_py_args(self, manifest: Path, *, app: bool, profile: str = PROFILE) -> list[str]:
        args = ["--manifest", str(manifest), "--profile", profile, "--base-image", BASE_IMAGE, "--network", "host"]
        args += [*self.mirror_args, "--source-date-epoch", str(self.epoch)]
        args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
        if app:
            args += ["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []
        else:
            args += ["--models-only"]
        return args

    # -- scenarios ------------------------------------------------------------------------------------------
    def naive(self, scenario: str, name: str) -> Result:
        """A naive build, then its image and records removed (its download step is redone by any code edit)."""
        since = datetime.now(UTC)
        tag = self.tag(f"naive-{name}")
        self.mirror.clear_requests()
        built = build_naive(
            self.repo, self.naive_file, tag, self.mirror.url, BASE_IMAGE, self.work / "trace" / f"naive-{name}"
        )
        result = Result(scenario, "naive", built.wall, self.fetched(), built.ok, error=built.error, steps=built.steps)
        if built.ok:
            result.report = {"image": _image_info(tag)}
        self.wipe(since, [tag])
        _say(f"naive {name}: {built.wall:.1f} s, {result.fetched / 1e6:,.1f} MB fetched" + _failed(built.error))
        return result

    def modelbake(self, scenario: str, name: str, manifest: Path | None = None) -> Result:
        """`python build.py` (models image, then the app on it), as a user runs it."""
        extra = ["--tag", self.tag(f"app-{name}"), "--models-tag", self.tag(f"models-{name}")]
        self.mirror.clear_requests()
        run = build_runs.run_build_py(
            self.repo,
            self.build_py_args(manifest or self.manifest, app=True) + extra,
            self.work / "trace" / f"modelbake-{name}",
            "modelbake",
            name,
        )
        steps = run.models_steps + run.app_steps
        result = Result(
            scenario, "modelbake", run.wall, self.fetched(), run.ok, error=run.error, steps=steps, report=run.report
        )
        built = [s["stage"] for s in run.report.get("stages", []) if s["build"] == "models" and s["status"] == "built"]
        result.detail = "model steps run: " + (
            ", ".join(s.removeprefix("fetch-") for s in built if s != "fetch") or "none"
        )
        return result

    def verify(self, tag: str) -> Result:
        """`docker run --rm --network none IMAGE verify`: every model loaded and run with no network at all."""
        started = time.perf_counter()
        proc = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "verify"], capture_output=True, text=True, timeout=1800
        )
        wall = round(time.perf_counter() - started, 2)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
        return Result(
            "offline verify (`docker run --network none IMAGE verify`)",
            "modelbake",
            wall,
            0,
            proc.returncode == 0,
            detail=tail[0][:200],
            error="" if proc.returncode == 0 else tail[0][:300],
        )

    def restore(self, backend: str, compression: str = "default") -> Restore:
        """Cold models-only build exporting to one cache, wipe, then a timed restore from that cache alone."""
        from testkit.ghacache import GhaCacheServer

        since = datetime.now(UTC)
        store = self.work / f"cache-{backend}-{compression}"
        with Registry(store) if backend == "registry" else _Null() as registry:
            gha = GhaCacheServer(store).start() if backend == "gha" else None
            try:
                spec = {
                    "gha": f"gha,scope=bench{self.run_id}",
                    "local": f"local:{store}",
                    "registry": f"registry:{getattr(registry, 'host', '')}/bench/cache",
                }[backend]
                env = gha.runner_env() if gha else {}  # a hosted runner's variables, pointed at the v2 emulator
                attrs = "" if compression == "default" else f"compression={compression},force-compression=true"
                tag = self.tag(f"models-{backend}-{compression}")
                args = self.build_py_args(self.manifest, app=False) + ["--models-tag", tag]
                trace = self.work / "trace" / f"cache-{backend}-{compression}"
                self.mirror.clear_requests()
                cold = cache_builds.run_build_py(
                    self.repo,
                    args + ["--cache", spec],
                    trace / "export",
                    f"export to {backend} ({compression})",
                    env,
                    attrs,
                )
                export = self._result(f"cold models-only build exporting to {backend}", cold)
                if not cold.ok:
                    raise RuntimeError(f"export to {backend}: {cold.error}")
                self.wipe(since, [tag])
                self.mirror.clear_requests()
                warm = cache_builds.run_build_py(
                    self.repo,
                    args + ["--cache", spec, "--cache-read-only"],
                    trace / "restore",
                    f"restore from {backend} ({compression})",
                    env,
                )
                restored = self._result(f"restore from {backend} after a wipe", warm)
                status = warm.stage_status()
                model_stages = [s for s in status if s.startswith("fetch-")]
                pulled = gha.bytes_downloaded if gha else cache_builds.pulled_bytes(warm.steps)
                all_cached = bool(model_stages) and all(status[s] == "cached" for s in model_stages)
                self.wipe(since, [tag])
                return Restore(
                    backend, compression, export, restored, pulled, all_cached, warm.layers() == cold.layers()
                )
            finally:
                if gha is not None:
                    gha.stop()
                shutil.rmtree(store, ignore_errors=True)

    def _result(self, scenario: str, build: cache_builds.Build) -> Result:
        """A models-only build.py run and the bytes the mirror sent during it."""
        return Result(
            scenario,
            "modelbake",
            build.wall,
            self.fetched(),
            build.ok,
            error=build.error,
            steps=build.steps,
            report=build.report,
        )


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _image_info(tag: str) -> dict:
    """Size and layers (with their history sizes) of an image, from the engine."""
    from modelbake.engine import docker_client
    from modelbake.report import image_info, layer_history

    image = docker_client(timeout=300).images.get(tag)
    info = image_info(image)
    return {"tag": tag, "id": info.id, "size": info.size, "layers": [list(h) for h in layer_history(image)]}


def _failed(error: str) -> str:
    return f" FAILED: {error}" if error else ""


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)
