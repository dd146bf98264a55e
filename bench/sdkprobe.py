"""The Docker SDK's read timeout at real size: how long build.py's own SDK calls take on GB-sized images, and
what a 10 s timeout does to the call that once hit it.

Why: build.py's SDK client had a 10 s read timeout, which a GB-sized models image exceeded; the old benchmark
raised it by patching modelbake. Today's client reads for up to modelbake.image.engine.SDK_TIMEOUT_SECONDS (600 s)
and pings for 10 s. This measures, without touching modelbake: the report's calls (`images.get`,
`history()`) through build.py's own client, and `images.load()` of a `docker save` of the models image (what
build.py did at commit bc9ea04, where the 10 s was hit) with a 10 s client and with build.py's.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadProbe:
    bytes: int
    outcomes: dict[int, tuple[str, float]]  # read timeout (s) -> (what happened, seconds)


def inspection_seconds(tags: list[str]) -> float:
    """The report's SDK calls on these images, with build.py's own client (modelbake.image.engine.docker_client)."""
    from modelbake.image.engine import docker_client

    client = docker_client()
    started = time.perf_counter()
    for tag in tags:
        client.images.get(tag).history()
    return round(time.perf_counter() - started, 2)


def load_probe(tag: str, work: Path, timeouts: tuple[int, ...] | None = None) -> LoadProbe:
    """`docker save` of `tag`, then `images.load()` of it through an SDK client per read timeout."""
    import docker
    from modelbake.image.engine import SDK_TIMEOUT_SECONDS

    tarball = work / "sdk-load-probe.tar"
    subprocess.run(["docker", "save", "--output", str(tarball), tag], check=True, timeout=1800)
    outcomes: dict[int, tuple[str, float]] = {}
    try:
        for timeout in timeouts or (10, SDK_TIMEOUT_SECONDS):
            client = docker.from_env(timeout=timeout)
            started = time.perf_counter()
            try:
                with tarball.open("rb") as stream:
                    client.images.load(stream)
                outcome = "loaded"
            except Exception as exc:  # noqa: BLE001 - what the SDK raises on a timeout is the finding
                outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            outcomes[timeout] = (outcome, round(time.perf_counter() - started, 1))
        size = tarball.stat().st_size
    finally:
        tarball.unlink(missing_ok=True)
    return LoadProbe(size, outcomes)
