"""The offline demo (`make demo`): the whole main job where no model hub is reachable.

Generates tiny real models, serves them with `modelbake mirror`, locks, preloads into a --dest tree,
verifies offline, and (with a Docker engine) builds the image from the mirror and runs it with
`--network none`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .cli import main as modelbake


def _step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(workdir: Path, docker: bool) -> int:
    from .mirror.server import MirrorServer
    from .tinymodels import build_mirror_tree

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
        if docker:
            return _docker(manifest, mirrors, workdir)
    return 0


def _docker(manifest: Path, mirrors: list[str], workdir: Path) -> int:
    repo = Path(__file__).resolve().parents[2]
    build_py = repo / "build.py"
    if not build_py.is_file():
        print("build.py not found; skipping the image build")
        return 0
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
        return 1
    _step(f"docker run --rm --network none {tag} verify")
    return subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "verify"]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelbake.demo", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".demo"))
    parser.add_argument("--no-docker", action="store_true", help="stop after the offline verify on this machine")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rc = run(args.workdir.absolute(), docker=not args.no_docker)
    print("\ndemo: OK" if rc == 0 else "\ndemo: FAILED", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
