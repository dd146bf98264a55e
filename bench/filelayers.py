"""`python -m bench.filelayers`: file layers at real size (issue 13, items 1 and 2) -> bench/results-filelayers.md.

1. **Real size**: `build.py --models-only --profile big` (bench/realsize_big.py: a model in four shards and one
   model.safetensors over 2 GB) through the mirror; each shard and the 2 GB file must be a layer of its own; then
   `modelbake verify` offline (`docker run --network none`) in an app image built for no models, with the models
   image mounted (`--mount type=image`): the image's own tree, loaded by the real loaders. (The app image with
   5.5 GB of models in it would cost this disk 11 GB more: its copies are zstd blobs and unpacked again.)
2. **Revision bump**, per mode (`--file-layers-over off`: one layer per model, as before file layers; the default
   64 MiB): the 3 GB sharded model built and pushed to Debian's docker-registry on 127.0.0.1, a new commit that
   changes config.json only, `modelbake lock`, rebuilt and pushed: bytes fetched (the mirror's request log) and
   bytes pushed (the registry's log of completed blob uploads, sizes from its storage).
3. **Pull**, per mode: the first push's image, removed from the engine with its content (image and every build
   record of the mode: nothing left to reuse), then `docker pull`, timed; `--repeat` times.

Every model step of the run has a new cache key (`--source-date-epoch` of its own); the fetch stage is built
before the clock, and a mirror of hard links to the real-size tree serves the models (the bump's new commit goes
there, never into the shared tree). Run under the engine lock; it removes what it creates.

    python -m bench.filelayers [--root /tmp/rs-tree] [--repeat 3] [--bandwidth MB_PER_S] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import build_inputs, build_runs
from bench.enginecache import BASE_IMAGE, CA_BUNDLE, CTR, WHEELHOUSE, Registry, prune_own_records, remove_images

REPO = Path(__file__).resolve().parents[1]
MODEL = "bart-large-24l"  # the ~3 GB model of the bump and the pull
ONE = "filelayers-one"  # a profile of that model alone
MODES = (("one layer", "off"), ("file layers", "64"))  # --file-layers-over: before file layers, and the default


@dataclass
class Step:
    """One build.py run (or pull): wall time, the mirror's bytes, what the registry received."""

    label: str
    wall: float
    fetched: int = 0
    pushed: dict[str, int] = field(default_factory=dict)  # blob digest -> bytes uploaded
    report: dict = field(default_factory=dict)
    ok: bool = True
    error: str = ""


@dataclass
class Mode:
    label: str
    over: str
    first: Step
    bump: Step
    pulls: list[Step] = field(default_factory=list)
    layers: int = 0
    content_gone: bool = True


@dataclass
class RealSize:
    build: Step
    verify: Step
    layer_sizes: dict[str, int]  # diff id -> bytes, from the models image's history
    file_bytes: dict[tuple[str, str], int]  # (model id, path in the repo) -> the file's bytes
    notes: list[str] = field(default_factory=list)


class Run:
    """One run's surroundings: the linked mirror, a repository copy, the manifest pair, tags, the epoch."""

    def __init__(self, root: Path, work: Path, bandwidth: float) -> None:
        from bench.realsize import build_realsize_tree
        from bench.realsize_big import BIG_MODELS
        from modelbake.mirror.server import MirrorServer

        self.tree = build_realsize_tree(root, big=True)
        self.work = work
        self.run_id = uuid.uuid4().hex[:8]
        self.epoch = int(time.time())
        self.tags: list[str] = []
        self.repo = build_inputs.copy_repo(work / "repo")
        self.mirror_root = link_repos(self.tree.root, [b.model.repo for b in BIG_MODELS], work / "mirror")
        self.mirror = MirrorServer(self.mirror_root).start()
        if bandwidth > 0:
            self.mirror.faults.bandwidth = bandwidth * 1e6
        self.mirror_args = [a for f, u in sorted(self.mirror.mirrors.items()) for a in ("--mirror", f"{f}={u}")]
        self.manifest = self.locked(work / "manifest")

    def close(self) -> None:
        self.mirror.stop()
        remove_images(self.tags)

    def locked(self, dest: Path) -> Path:
        from bench.realsize_big import BIG_KEYS, BIG_PROFILE, manifest_with_big

        text = manifest_with_big("[profiles]\n")
        text += f'{ONE} = ["{MODEL}"]\n{build_inputs.PROFILE_NONE} = []\n'
        assert BIG_PROFILE in text and all(k in text for k in BIG_KEYS)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "models.toml").write_text(text)
        build_inputs.lock(dest / "models.toml", self.mirror_args)
        return dest / "models.toml"

    def names(self) -> tuple[str, ...]:
        """What only this run's build records say (bench.enginecache.own_records): its big models' files."""
        from bench.enginecache import record_names

        bumped = self.work / "manifest-bumped" / "models.toml"
        return record_names([self.manifest, *([bumped] if bumped.is_file() else [])])

    def tag(self, name: str) -> str:
        tag = f"modelbake-bench/filelayers-{name}:{self.run_id}"
        self.tags.append(tag)
        return tag

    def args(self, manifest: Path, profile: str, over: str, tag: str, *, app: bool = False) -> list[str]:
        args = ["--manifest", str(manifest), "--profile", profile, "--base-image", BASE_IMAGE, "--network", "host"]
        args += [*self.mirror_args, "--source-date-epoch", str(self.epoch), "--file-layers-over", over]
        args += ["--ca-bundle", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
        if app:
            return args + (["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []) + ["--tag", tag]
        return args + ["--models-only", "--models-tag", tag]

    def build(self, label: str, args: list[str], registry: Registry | None = None) -> Step:
        self.mirror.clear_requests()
        offset = registry.log_offset() if registry else 0
        run = build_runs.run_build_py(
            self.repo, args, self.work / "trace" / label.replace(" ", "-"), "filelayers", label
        )
        fetched = sum(r.bytes_sent for r in self.mirror.requests)
        pushed = registry.uploaded_blobs(offset) if registry else {}
        step = Step(label, run.wall, fetched, pushed, run.report, run.ok, run.error)
        _say(f"{label}: {run.wall:.1f} s, {fetched / 1e6:,.1f} MB fetched, {sum(pushed.values()) / 1e6:,.1f} MB pushed")
        if not run.ok:
            raise RuntimeError(f"{label}: {run.error}")
        return step

    def warm_fetch_stage(self) -> float:
        """The models image's fetch stage with this run's SOURCE_DATE_EPOCH, before the clock."""
        from bench.cache_builds import warm_epoch_fetch_stage
        from modelbake.image.dockerfile import render_models_dockerfile
        from modelbake.lockfile import read_lock
        from modelbake.manifest import load_manifest

        manifest = load_manifest(self.manifest)
        dockerfile = self.work / "Dockerfile.models"
        dockerfile.write_text(render_models_dockerfile(manifest, read_lock(manifest.lock_path), ONE))
        return warm_epoch_fetch_stage(self.repo, dockerfile, self.tag("fetch"), self.epoch)


def link_repos(tree: Path, repos: list[str], dest: Path) -> Path:
    """A mirror root holding `repos` of the tree as hard links: free, and a new commit stays out of the tree."""
    from testkit.tinymodels.mirrorset import hub_repo_dir

    for repo in repos:
        target = hub_repo_dir(dest, repo)
        shutil.copytree(hub_repo_dir(tree, repo), target, copy_function=os.link, ignore=shutil.ignore_patterns(".lock"))
    return dest


def real_size(run: Run) -> RealSize:
    """Profile `big` built, each big file checked to be a layer of its own, and verified offline from the image."""
    from modelbake.image.engine import docker_client
    from modelbake.image.inspection import layer_history

    since = datetime.now(UTC)
    models_tag = run.tag("big")
    build = run.build("real size: models image of profile big", run.args(run.manifest, "big", "64", models_tag))
    notes = check_big_layers(build.report)
    image = docker_client(timeout=300).images.get(models_tag)
    sizes = {diff: size for diff, _, size in layer_history(image)}
    app_tag = run.tag("app-none")
    app_args = run.args(run.manifest, build_inputs.PROFILE_NONE, "64", app_tag, app=True) + [
        "--models-tag",
        run.tag("none"),
    ]
    run.build("app image with no models (for verify)", app_args)
    command = ["docker", "run", "--rm", "--network", "none"]
    command += ["--mount", f"type=image,source={models_tag},target=/mnt/image", app_tag]
    command += ["python", "-m", "modelbake.cli", "verify", "--manifest", "/app/models.toml", "--profile", "big"]
    command += ["--models", "/mnt/image/models"]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    wall = round(time.perf_counter() - started, 2)
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    verify = Step(
        " ".join(command), wall, ok=proc.returncode == 0, error="" if proc.returncode == 0 else proc.stderr[-500:]
    )
    verify.report = {"last_line": last, "stdout": proc.stdout[-3000:]}
    _say(f"verify: {wall:.1f} s: {last}")
    remove_images([models_tag])
    prune_own_records(since, run.names())
    files = {}
    for f in run.tree.files:  # ROOT/huggingface/models--org--name/snapshots/<commit>/<path in the repo>
        if "/snapshots/" in f.path:
            files[(f.model_id, f.path.split("/snapshots/", 1)[1].split("/", 1)[1])] = f.size
    return RealSize(build, verify, sizes, files, notes)


def check_big_layers(report: dict) -> list[str]:
    """Each shard and the 2 GB file a layer of its own, and the rest a layer: the problems, none when all is well."""
    problems = []
    models = {m["id"]: m for m in report["models"]}
    expected = {"bart-large-24l": 4, "bart-large-250k": 1}
    diffs = [f["layer"] for m in models.values() for f in m["files"]] + [m["layer"] for m in models.values()]
    for model_id, count in expected.items():
        files = models[model_id]["files"]
        if len(files) != count or not all(f["layer"] for f in files):
            problems.append(f"{model_id}: {len(files)} file layers, expected {count}")
    if len(set(diffs)) != len(diffs) or len(diffs) != sum(expected.values()) + len(expected):
        problems.append(f"layers not distinct: {diffs}")
    if not any(f["bytes"] > 2**31 for f in models["bart-large-250k"]["files"]):
        problems.append("bart-large-250k: no layer over 2 GiB")
    return problems


def one_mode(run: Run, label: str, over: str, bumped: Path, repeat: int, registry: Registry) -> Mode:
    """Build + push, config-only bump + push, then pulls of the first image from an engine without it."""
    since = datetime.now(UTC)
    name = f"{registry.host}/bench/filelayers-{over}"
    v1, v2 = f"{name}:v1-{run.run_id}", f"{name}:v2-{run.run_id}"
    run.tags += [v1, v2]
    first = run.build(f"{label}: build and push", run.args(run.manifest, ONE, over, v1) + ["--push"], registry)
    bump = run.build(
        f"{label}: config-only bump, build and push", run.args(bumped, ONE, over, v2) + ["--push"], registry
    )
    mode = Mode(label, over, first, bump, layers=len(first.report["models_image"]["layers"]))
    digests = set(first.report["models_image"]["layers"])
    for i in range(repeat):
        mode.content_gone &= forget([v1, v2], since, digests, run.names())
        started = time.perf_counter()
        proc = subprocess.run(["docker", "pull", v1], capture_output=True, text=True, timeout=1800)
        wall = round(time.perf_counter() - started, 2)
        done = proc.stdout.count("Pull complete") + proc.stdout.count("Download complete")
        pull = Step(f"{label}: docker pull {i + 1}", wall, ok=proc.returncode == 0, error=proc.stderr[-300:])
        pull.report = {"already": proc.stdout.count("Already exists"), "complete": done}
        mode.pulls.append(pull)
        _say(f"{label}: pull {i + 1}: {wall:.1f} s ({pull.report})")
    forget([v1, v2], since, digests, run.names())
    return mode


def forget(tags: list[str], since: datetime, digests: set[str], names: tuple[str, ...], timeout: float = 120) -> bool:
    """Images, their build records (`names`: bench.enginecache.own_records) and (once containerd collects it)
    their content gone; False if content stays."""
    remove_images(tags)
    prune_own_records(since, names)
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run([*CTR, "content", "ls", "-q"], capture_output=True, text=True, timeout=60).stdout
        if not digests & set(listed.split()):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2)  # containerd's garbage collector runs on its own schedule after a delete


def publish_bump(run: Run) -> Path:
    """A new commit of the sharded model with config.json edited (a key added), locked in a manifest of its own."""
    from testkit.tinymodels import publish_revision
    from testkit.tinymodels.mirrorset import hub_repo_dir

    repo = "modelbake-bench/bart-large-24l"
    repo_dir = hub_repo_dir(run.mirror_root, repo)
    old = repo_dir / "snapshots" / (repo_dir / "refs" / "main").read_text().strip()
    config = json.loads((old / "config.json").read_text())
    config["modelbake_bench_bump"] = run.run_id
    publish_revision(
        run.mirror_root, repo, {"config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()}
    )
    manifest = run.work / "manifest-bumped"
    manifest.mkdir()
    shutil.copy(run.manifest, manifest / "models.toml")
    build_inputs.lock(manifest / "models.toml", run.mirror_args)
    return manifest / "models.toml"


def main(argv: list[str] | None = None) -> int:
    from bench.enginecache import exit_on_sigterm
    from bench.filelayers_report import render, update_results_block
    from bench.realsize import DEFAULT_ROOT

    p = argparse.ArgumentParser(prog="python -m bench.filelayers", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"bench.realsize tree (default {DEFAULT_ROOT})")
    p.add_argument("--repeat", type=int, default=3, help="pulls per mode (default 3)")
    p.add_argument("--bandwidth", type=float, default=0.0, metavar="MB_PER_S", help="mirror limit (default none)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results-filelayers.md")
    p.add_argument("--no-real-size", action="store_true", help="skip the real-size build and verify")
    args = p.parse_args(argv)
    command = "python -m bench.filelayers" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    exit_on_sigterm()
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="modelbake-filelayers-"))
    run = Run(args.root, work, args.bandwidth)
    _warn_if_disk_is_short(sum(f.size for f in run.tree.files if f.model_id in ("bart-large-24l", "bart-large-250k")))
    try:
        warm = run.warm_fetch_stage()
        _say(f"fetch stage warmed up in {warm:.1f} s")
        big = None if args.no_real_size else real_size(run)
        bumped = publish_bump(run)
        modes = []
        for label, over in MODES:
            with Registry(work / f"registry-{over}", log_level="info") as registry:
                modes.append(one_mode(run, label, over, bumped, args.repeat, registry))
            shutil.rmtree(work / f"registry-{over}", ignore_errors=True)
    except BaseException:
        kept = Path(tempfile.gettempdir()) / f"modelbake-filelayers-trace-{run.run_id}"
        shutil.copytree(work / "trace", kept, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.json.gz"))
        _say(f"failed: build.py's output and BuildKit's traces kept in {kept}")
        raise
    finally:
        run.close()
        prune_own_records(_started(run), run.names())
        shutil.rmtree(work, ignore_errors=True)
    text = render(command, run, big, modes, time.perf_counter() - began)
    args.out.write_text(text)
    if args.out.resolve() == (REPO / "bench" / "results-filelayers.md").resolve():
        update_results_block(REPO / "bench" / "results.md", run, modes)
    print(text)
    return 0


def _warn_if_disk_is_short(model_bytes: int) -> None:
    """A models image costs its bytes about three times in the engine (the fetch step's snapshot, the COPY's, the
    exported blob) while it is built; the first run here, with 28 GB free for 5.5 GB of models, met ENOSPC."""
    root = Path("/var/lib/docker")
    free = shutil.disk_usage(root if root.is_dir() else Path("/")).free
    if free < 4 * model_bytes:
        _say(f"warning: {free / 1e9:.0f} GB free, the real-size build needs about {4 * model_bytes / 1e9:.0f} GB")


def _started(run: Run) -> datetime:
    return datetime.fromtimestamp(run.epoch, UTC)


def _say(text: str) -> None:
    print(f"bench.filelayers: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
