"""Engine checks through the Docker SDK: what is missing, said in one line each.

build.py needs a Docker Engine >= 24 with the buildx plugin; each feature asks for what it needs on top:
exporting a build cache (`--cache`) with the default `docker` driver needs the containerd image store, and
the GitHub Actions cache v2 (what GitHub serves) needs buildx >= 0.21 and BuildKit >= 0.20 (dockerd >= 28).
Each gap raises an EngineError whose message names exactly what is missing and whose hint says how to get it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cache.ghaenv import engine_gaps
from ..errors import EngineError
from .dockercli import INSTALL_HINT, Run, run_docker

if TYPE_CHECKING:
    from docker import DockerClient

MIN_ENGINE_MAJOR = 24
# The Docker SDK's read timeout. Not its 60 s default, nor a short one: with the containerd image store,
# inspecting an image the engine is still unpacking (a GB-sized models image just built) waits on that unpacking.
SDK_TIMEOUT_SECONDS = 600
# How long a daemon may take to answer a ping before build.py says none answers.
PING_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    buildx_version: str
    containerd_store: bool
    os_type: str


def docker_client(timeout: int = SDK_TIMEOUT_SECONDS) -> DockerClient:
    """A Docker SDK client from the environment (DOCKER_HOST etc.), or EngineError when no daemon answers
    within PING_TIMEOUT_SECONDS."""
    from docker.errors import DockerException

    import docker

    try:
        docker.from_env(timeout=PING_TIMEOUT_SECONDS).ping()
        client = docker.from_env(timeout=timeout)
    except DockerException as exc:
        raise EngineError(
            f"no Docker daemon answers ({_first_line(exc)})",
            hint="start dockerd, or run docker/install-engine.sh; set DOCKER_HOST if it listens elsewhere",
        ) from exc
    return client


def parse_major(version: str) -> int | None:
    """`26.1.5+dfsg1` -> 26; None when the string has no leading number."""
    head = version.strip().lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def uses_containerd_store(info: dict[str, Any]) -> bool:
    """`docker info` shows the containerd snapshotter as DriverStatus [["driver-type", "io.containerd.snapshotter.v1"]]."""
    for pair in info.get("DriverStatus") or []:
        if len(pair) == 2 and "containerd.snapshotter" in str(pair[1]):
            return True
    return "containerd.snapshotter" in str(info.get("Driver", ""))


def buildx_version(docker_cli: str = "docker", run: Run = subprocess.run) -> str:
    """`github.com/docker/buildx 0.29.1 ...`: the first line of `docker buildx version`."""
    proc = run_docker([docker_cli, "buildx", "version"], timeout=30, run=run)
    if proc.returncode != 0:
        raise EngineError(
            "docker buildx is not installed (`docker buildx version` failed)",
            hint="install the buildx plugin (Debian: docker-buildx; see docker/install-engine.sh)",
        )
    return proc.stdout.strip()


def check_engine(
    client: DockerClient | None = None,
    *,
    need_containerd_store: bool = False,
    gha_version: int | None = None,
    builder: str | None = None,
    docker_cli: str = "docker",
    run: Run = subprocess.run,
) -> EngineInfo:
    """Raise EngineError naming the first missing piece; return what was found.

    `gha_version`: the Actions cache protocol the build will speak (ghaenv.resolve); `builder`: a buildx
    builder other than the engine's own, whose BuildKit version `docker buildx inspect` tells. `run` is
    subprocess.run, injectable so tests can stand in for the buildx CLI.
    """
    client = client or docker_client()
    version = client.version()
    server = str(version.get("Version", ""))
    major = parse_major(server)
    if major is None or major < MIN_ENGINE_MAJOR:
        raise EngineError(
            f"Docker Engine {server or 'unknown'} is too old: modelbake needs >= {MIN_ENGINE_MAJOR}",
            hint=INSTALL_HINT,
        )
    info = client.info()
    containerd = uses_containerd_store(info)
    if need_containerd_store and not containerd:
        raise EngineError(
            "the Docker engine does not use the containerd image store, which --cache needs with the docker driver",
            hint='add {"features": {"containerd-snapshotter": true}} to /etc/docker/daemon.json and restart dockerd',
        )
    buildx = buildx_version(docker_cli, run=run)
    if gha_version is not None:
        buildkit = builder_buildkit_version(builder, docker_cli, run=run) if builder else None
        gaps = engine_gaps(gha_version, buildx, server if not builder else None, buildkit)
        if gaps:
            raise EngineError(
                f"the GitHub Actions cache v{gha_version} (what GitHub serves) needs {' and '.join(gaps)}",
                hint=INSTALL_HINT + "; on GitHub, docker/setup-buildx-action installs a current buildx",
            )
    return EngineInfo(
        server_version=server,
        buildx_version=buildx,
        containerd_store=containerd,
        os_type=str(info.get("OSType", "")),
    )


def builder_buildkit_version(builder: str, docker_cli: str = "docker", run: Run = subprocess.run) -> str | None:
    """`BuildKit version: v0.20.2` from `docker buildx inspect BUILDER`, or None when it says nothing."""
    proc = run_docker([docker_cli, "buildx", "inspect", builder], timeout=60, run=run)
    if proc.returncode != 0:
        raise EngineError(f"buildx builder {builder!r} not found: {_first_line(RuntimeError(proc.stderr))}")
    for line in proc.stdout.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "BuildKit version" and value.strip():
            return value.strip()
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["EngineError", "EngineInfo", "check_engine", "docker_client", "parse_major", "uses_containerd_store"]
