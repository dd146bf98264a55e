"""docker/install-engine.sh on Debian 12 machines as users have them, each a privileged bookworm container with
its own dockerd (the host engine is never touched):

- fresh: no engine at all -> dockerd >= 28 / buildx >= 0.21 from forky, running, the containerd image store;
- old engine: the Docker 26.1 / buildx 0.13 that the script's earlier version installed from trixie
  (tests/data/install-engine-trixie.sh, run first), holding an image -> upgraded in place, the image kept;
- foreign engine: Debian 12's own docker.io 20.10 -> one line naming what was found and what is needed,
  exit 1, nothing installed.

Each ends with what the tests of this repository need of an engine: a BuildKit build of the image store's
image. The containers reach deb.debian.org; the downloaded packages stay in a named volume for the next run.
"""

from __future__ import annotations

import io
import re
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[1]
OLD_SCRIPT = REPO / "tests" / "data" / "install-engine-trixie.sh"
APT_CACHE_VOLUME = "modelbake-test-apt-archives"  # kept between runs: the .debs are ~150 MB


@pytest.fixture
def debian12(docker_client):
    """A running privileged bookworm container; `/repo` is this checkout (read-only). Removed afterwards."""
    name = f"modelbake-install-engine-{uuid.uuid4().hex[:8]}"
    states = {f"{name}-docker": "/var/lib/docker", f"{name}-containerd": "/var/lib/containerd"}
    container = docker_client.containers.run(
        BASE_IMAGE,
        ["sleep", "infinity"],
        name=name,
        detach=True,
        init=True,  # an init that reaps, as on a machine: the daemons outlive the `docker exec` that starts them
        privileged=True,  # its own dockerd: mounts, cgroups, iptables
        volumes={
            str(REPO): {"bind": "/repo", "mode": "ro"},
            APT_CACHE_VOLUME: {"bind": "/var/cache/apt/archives", "mode": "rw"},
            # the inner engine's state must not sit on the container's own overlayfs
            **{volume: {"bind": path, "mode": "rw"} for volume, path in states.items()},
        },
    )
    try:
        yield container
    finally:
        container.remove(force=True)
        for volume in states:
            try:
                docker_client.volumes.get(volume).remove(force=True)
            except Exception:  # noqa: BLE001 - never created
                pass


def sh(container, script: str) -> tuple[int, str]:
    # Stdout and stderr together: install-engine logs to stderr.
    code, output = container.exec_run(["bash", "-c", script], demux=False)
    return code, output.decode(errors="replace")


def prepare_apt(container) -> None:
    """apt in the container configured as on this machine (its /etc/apt/apt.conf.d: a proxy, a snapshot mirror's
    validity rules), keeping the .debs it downloads for the next run."""
    host_conf = Path("/etc/apt/apt.conf.d")
    if host_conf.is_dir():
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for conf in sorted(host_conf.iterdir()):
                if conf.is_file():
                    tar.add(conf, arcname=f"etc/apt/apt.conf.d/{conf.name}")
        container.put_archive("/", out.getvalue())
    code, out = sh(
        container,
        "rm -f /etc/apt/apt.conf.d/docker-clean; "
        "echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/01keep; "
        "mkdir -p /var/cache/apt/archives/partial",
    )
    assert code == 0, out


def install_engine(container) -> tuple[int, str]:
    return sh(container, "bash /repo/docker/install-engine.sh")


def server_version(container) -> str:
    code, out = sh(container, "docker version --format '{{.Server.Version}}'")
    assert code == 0, out
    return out.strip()


def buildx_version(container) -> str:
    code, out = sh(container, "docker buildx version")
    assert code == 0, out
    return out.split()[1]


def major_minor(version: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", version)
    assert m, version
    return int(m[1]), int(m[2])


def import_image(container, tag: str) -> None:
    """A one-file image made by `docker import` (no registry here), as the base image is made."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = f"survives the upgrade: {tag}\n".encode()
        info = tarfile.TarInfo("marker")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    put = io.BytesIO()
    with tarfile.open(fileobj=put, mode="w") as tar:
        info = tarfile.TarInfo("image.tar")
        info.size = len(data.getvalue())
        tar.addfile(info, io.BytesIO(data.getvalue()))
    container.put_archive("/tmp", put.getvalue())
    code, out = sh(container, f"docker import /tmp/image.tar {tag}")
    assert code == 0, out


def assert_runner_generation(container, image: str) -> None:
    """dockerd >= 28, buildx >= 0.21, the containerd image store, and a BuildKit build on `image`."""
    assert major_minor(server_version(container)) >= (28, 0)
    assert major_minor(buildx_version(container)) >= (0, 21)
    code, out = sh(container, "docker info --format '{{.DriverStatus}}'")
    assert "io.containerd.snapshotter" in out, out
    code, out = sh(
        container,
        f"mkdir -p /tmp/ctx && printf 'FROM {image}\\nCOPY note /note\\n' > /tmp/ctx/Dockerfile && "
        "echo built > /tmp/ctx/note && docker buildx build -q -t after:1 /tmp/ctx && "
        "docker image inspect after:1 --format '{{.Id}}'",
    )
    assert code == 0, out


def test_a_fresh_debian_12_gets_the_runners_engine(debian12):
    prepare_apt(debian12)
    code, out = install_engine(debian12)
    assert code == 0, out
    assert "no Docker engine found: installing" in out and "engine ready: dockerd 28." in out, out
    import_image(debian12, "fresh:1")
    assert_runner_generation(debian12, "fresh:1")
    code, out = sh(debian12, "dpkg-query -W -f '${Version}' libc6")
    assert out.startswith("2.36"), f"the host's libc moved: {out}"  # bookworm's, untouched by the forky pin

    code, again = install_engine(debian12)
    assert code == 0 and "nothing to do" in again, again


def test_the_engine_the_old_script_installed_is_upgraded_in_place(debian12):
    prepare_apt(debian12)
    debian12.put_archive("/", _tar_of(OLD_SCRIPT, "old-install-engine.sh"))
    code, out = sh(debian12, "bash /old-install-engine.sh")
    assert code == 0, out
    old = server_version(debian12)
    assert major_minor(old) == (26, 1), old
    assert major_minor(buildx_version(debian12)) < (0, 21)
    import_image(debian12, "kept:1")

    code, out = install_engine(debian12)
    assert code == 0, out
    assert f"upgrading the engine this script installed before (dockerd {old}" in out, out
    code, listing = sh(debian12, "ls /etc/apt/sources.list.d/")
    assert "modelbake-trixie" not in listing and "modelbake-forky" in listing, listing
    code, inspect = sh(debian12, "docker image inspect kept:1 --format '{{.Id}}'")
    assert code == 0, f"the image made before the upgrade is gone: {inspect}"
    assert_runner_generation(debian12, "kept:1")


def test_a_foreign_old_engine_stops_with_one_line(debian12):
    prepare_apt(debian12)
    code, out = sh(
        debian12,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "docker.io >/dev/null && dockerd --version",
    )
    assert code == 0 and "Docker version 20.10" in out, out
    code, out = install_engine(debian12)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1, out
    assert len(lines) == 1, out
    assert re.search(r"found dockerd 20\.10\S* and buildx none; need dockerd >= 28\.0 and buildx >= 0\.21", lines[0]), (
        out
    )
    code, out = sh(debian12, "dockerd --version")
    assert "20.10" in out, "the script must not touch an engine it did not install"


def _tar_of(path: Path, name: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(path, arcname=name)
    return out.getvalue()
