"""The offline demo (`make demo`, `python -m testkit.demo`): the whole main job where no model hub is reachable.

Generates tiny real models, serves them with `modelbake mirror`, locks, preloads into a --dest tree,
verifies offline, and (with a Docker engine) builds the image from the mirror, runs its `verify` with
`--network none`, then processes a spoken sample episode (espeak-ng) with the reference app in that
offline image and prints the result. `--no-docker` processes the episode with the local
`podcast-pipeline` and the --dest tree instead.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from modelbake.cli import main as modelbake


def _step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(workdir: Path, docker: bool) -> int:
    from modelbake.mirror.server import MirrorServer
    from podcast_pipeline.errors import PipelineError
    from podcast_pipeline.sample import espeak_path
    from testkit.tinymodels import build_mirror_tree

    try:  # the last step speaks the sample episode: say now, not after the build, that it cannot
        espeak_path()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _step(f"generating tiny real models into {workdir / 'mirror'}")
    tiny = build_mirror_tree(workdir / "mirror")
    print(tiny.summary())
    manifest = workdir / "models.toml"
    shutil.copy(tiny.manifest, manifest)
    with MirrorServer(tiny.root) as server:
        mirrors = [arg for family, url in server.mirrors.items() for arg in ("--mirror", f"{family}={url}")]
        _step(f"mirror serving on {server.url}; pinning with `modelbake lock`")
        if modelbake(["lock", "--manifest", str(manifest), *mirrors]) != 0:
            return 1
        dest = workdir / "models"
        _step(f"modelbake preload --profile test --dest {dest}")
        if modelbake(["preload", "--manifest", str(manifest), "--profile", "test", "--dest", str(dest), *mirrors]) != 0:
            return 1
        _step("second preload: everything present, zero requests")
        server.clear_requests()
        modelbake(["preload", "--manifest", str(manifest), "--profile", "test", "--dest", str(dest), *mirrors])
        print(f"mirror requests during the second preload: {len(server.requests)}")
        _step("modelbake verify (network blocked, offline variables set)")
        verify = [sys.executable, "-m", "modelbake", "verify", "--manifest", str(manifest), "--profile", "test"]
        if subprocess.run([*verify, "--models", str(dest)]).returncode != 0:
            return 1
        if not docker:
            return _process_locally(manifest, dest, workdir)
        tag = _docker(manifest, mirrors, workdir)
        if tag is None:
            return 1
        server.clear_requests()
        rc = _process_in_image(tag, workdir)
        print(f"mirror requests while the image ran: {len(server.requests)}")
        return rc


def _docker(manifest: Path, mirrors: list[str], workdir: Path) -> str | None:
    """Build the app image from the mirror and run its offline verify; its tag, or None on failure."""
    repo = Path(__file__).resolve().parents[1]
    build_py = repo / "build.py"
    if not build_py.is_file():
        print(f"error: {build_py} not found (the demo runs from a checkout of the repository)", file=sys.stderr)
        return None
    tag = "modelbake/demo:test"
    _step(f"python build.py: image {tag} from the local mirror")
    cmd = [
        sys.executable,
        str(build_py),
        "--manifest",
        str(manifest),
        "--profile",
        "test",
        "--tag",
        tag,
        "--base-image",
        "modelbake/python-base:3.11-bookworm",
        "--network",
        "host",
        "--json",
        str(workdir / "build.json"),
        *mirrors,
    ]
    for flag, path in (("--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"), ("--wheelhouse", "/opt/wheels")):
        if Path(path).exists():
            cmd += [flag, path]
    if subprocess.run(cmd, cwd=repo).returncode != 0:
        return None
    _step(f"docker run --rm --network none {tag} verify")
    if subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "verify"]).returncode != 0:
        return None
    return tag


def _speak_episode(workdir: Path) -> Path | None:
    """The sample episode as `<workdir>/episode/ep.wav` (espeak-ng), any earlier result removed."""
    from podcast_pipeline import sample
    from podcast_pipeline.errors import PipelineError

    episode = workdir / "episode"
    episode.mkdir(parents=True, exist_ok=True)
    (episode / "result.json").unlink(missing_ok=True)
    _step(f"speaking a sample episode with espeak-ng: {episode / 'ep.wav'}")
    try:
        wav = sample.synthesize(episode / "ep.wav")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    print(f"{sample.duration(wav):.1f} s of speech: {sample.TEXT[:100]}...")
    return wav


def _episode_args() -> list[str]:
    from podcast_pipeline import sample

    return ["--title", sample.TITLE, "--description", sample.DESCRIPTION]


def _process_in_image(tag: str, workdir: Path) -> int:
    wav = _speak_episode(workdir)
    if wav is None:
        return 1
    episode = wav.parent
    episode.chmod(0o777)  # the app runs as uid 10001 and writes result.json into the mounted directory
    cmd = ["docker", "run", "--rm", "--network", "none", "-v", f"{episode}:/data", tag]
    cmd += ["process", "/data/ep.wav", "--out", "/data/result.json", *_episode_args()]
    _step(f"the reference app in the offline image: {tag} process /data/ep.wav")
    print(f"$ {shlex.join(cmd)}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        return 1
    return _show(episode / "result.json")


def _process_locally(manifest: Path, dest: Path, workdir: Path) -> int:
    wav = _speak_episode(workdir)
    if wav is None:
        return 1
    out = wav.parent / "result.json"
    args = ["process", str(wav), "--manifest", str(manifest), "--models", str(dest), "--profile", "test"]
    args += ["--out", str(out), *_episode_args()]
    _step("the reference app on this machine: podcast-pipeline process")
    print(f"$ {shlex.join(['podcast-pipeline', *args])}", flush=True)
    if subprocess.run([sys.executable, "-m", "podcast_pipeline", *args]).returncode != 0:
        return 1
    return _show(out)


def _show(result_file: Path) -> int:
    """A short readable account of the app's JSON result."""
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {result_file}: no readable result ({exc})", file=sys.stderr)
        return 1
    _step(f"result: {result_file}")
    audio = result["audio"]
    print(f"audio       {audio['duration']:.1f} s, {audio['sample_rate']} Hz, {audio['channels']} channel(s)")
    print(f"transcript  {_clip(result['transcript'])!r} ({len(result['segments'])} segments)")
    people = [f"{s['name']} ({', '.join(s['sources'])})" for s in result["speakers"]]
    print(f"speakers    {'; '.join(people) or '(none found)'}")
    print(f"summary     {_clip(result['summary'])!r}")
    for model in result["models"]:
        source = model.get("repo") or model.get("name")
        role = f", role {model['role']}" if model.get("role") else ""
        print(
            f"model       {model['id']}: {source} @ {model['revision'][:12]}{role}, {model.get('calls', '?')} call(s)"
        )
    timings = result["timings"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total")
    print(f"timings     {timings.get('total', 0):.1f} s in all ({stages})")
    print("(tiny models with random weights: the transcript and summary are noise; real models give real text)")
    return 0


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    parser.add_argument("--no-docker", action="store_true", help="stop after the offline verify on this machine")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rc = run(args.workdir.absolute(), docker=not args.no_docker)
    print("\ndemo: OK" if rc == 0 else "\ndemo: FAILED", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
