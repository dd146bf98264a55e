"""The engine check, without an engine: what each feature needs, each gap said in one line.

The Docker SDK client and the buildx CLI are stood in for through the check's own injection points
(`client`, `run`), never by patching the global `subprocess.run`.
"""

from __future__ import annotations

import subprocess

import pytest

from modelbake.cache.ghaenv import engine_gaps, parse_version
from modelbake.image.engine import EngineError, check_engine, parse_major, uses_containerd_store

pytestmark = pytest.mark.unit

BUILDX_029 = "github.com/docker/buildx 0.29.1+ds1 0.29.1+ds1-4"
BUILDX_013 = "github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3"


class FakeClient:
    def __init__(self, version="28.5.2+dfsg4", driver_status=(("driver-type", "io.containerd.snapshotter.v1"),)):
        self._version = version
        self._status = [list(p) for p in driver_status]

    def version(self):
        return {"Version": self._version}

    def info(self):
        return {"Driver": "overlayfs", "DriverStatus": self._status, "OSType": "linux"}


def buildx_cli(version: str = BUILDX_029, inspect: str = "", returncode: int = 0):
    """A stand-in for the buildx CLI: answers `buildx version` and `buildx inspect NAME`, records argv."""
    calls: list[list[str]] = []

    def run(argv, **kwargs):
        calls.append(list(argv))
        out = inspect if argv[2] == "inspect" else version
        return subprocess.CompletedProcess(argv, returncode, out, "docker: 'buildx' is not a docker command.")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_engine_too_old():
    with pytest.raises(EngineError) as exc:
        check_engine(FakeClient("20.10.24+dfsg1"), run=buildx_cli())
    assert exc.value.message == "Docker Engine 20.10.24+dfsg1 is too old: modelbake needs >= 24"
    assert "install-engine.sh" in exc.value.hint


def test_engine_without_containerd_store():
    client = FakeClient(driver_status=(("Backing Filesystem", "extfs"),))
    with pytest.raises(EngineError) as exc:
        check_engine(client, need_containerd_store=True, run=buildx_cli())
    assert "containerd image store" in exc.value.message and "\n" not in exc.value.message
    assert "containerd-snapshotter" in exc.value.hint


def test_engine_without_buildx():
    with pytest.raises(EngineError) as exc:
        check_engine(FakeClient(), run=buildx_cli(returncode=1))
    assert exc.value.message == "docker buildx is not installed (`docker buildx version` failed)"


def test_gha_v2_needs_buildx_021_and_dockerd_28():
    """What today's machines had (dockerd 26.1, buildx 0.13) cannot speak the protocol GitHub serves."""
    with pytest.raises(EngineError) as exc:
        check_engine(FakeClient("26.1.5+dfsg1"), gha_version=2, run=buildx_cli(BUILDX_013))
    assert exc.value.message == (
        "the GitHub Actions cache v2 (what GitHub serves) needs buildx >= 0.21 (found 0.13.1+ds1) "
        "and dockerd >= 28.0, whose BuildKit is >= 0.20 (found 26.1.5+dfsg1)"
    )
    with pytest.raises(EngineError, match=r"needs dockerd >= 28.0"):
        check_engine(FakeClient("26.1.5+dfsg1"), gha_version=2, run=buildx_cli(BUILDX_029))
    info = check_engine(FakeClient("28.5.2+dfsg4"), gha_version=2, run=buildx_cli(BUILDX_029))
    assert info.buildx_version == BUILDX_029
    # v1 (GitHub Enterprise Server) asks nothing more of the engine
    check_engine(FakeClient("26.1.5+dfsg1"), gha_version=1, run=buildx_cli(BUILDX_013))


def test_another_builder_is_judged_by_its_own_buildkit():
    old = buildx_cli(BUILDX_029, inspect="Name: remote\nDriver: remote\nBuildKit version: v0.13.2\n")
    with pytest.raises(EngineError, match=r"needs BuildKit >= 0.20 \(found v0.13.2\)"):
        check_engine(FakeClient("26.1.5"), gha_version=2, builder="remote", run=old)
    assert ["docker", "buildx", "inspect", "remote"] in old.calls
    new = buildx_cli(BUILDX_029, inspect="Name: ci\nBuildKit version: v0.20.2\n")
    check_engine(FakeClient("26.1.5"), gha_version=2, builder="ci", run=new)  # the daemon's age is irrelevant


def test_version_parsing():
    assert parse_major("26.1.5+dfsg1") == 26 and parse_major("v24.0.0") == 24 and parse_major("dev") is None
    assert parse_version(BUILDX_029) == (0, 29) and parse_version("v0.0.0+unknown") == (0, 0)
    assert parse_version("28.5.2+dfsg4") == (28, 5) and parse_version("dev") is None
    assert engine_gaps(2, BUILDX_029, "28.0.4") == []
    assert engine_gaps(2, BUILDX_029, None, "v0.0.0+unknown") == []  # Debian's build: no BuildKit version
    assert uses_containerd_store({"DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]})
    assert not uses_containerd_store({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]})


def test_engine_no_daemon(monkeypatch):
    import modelbake.image.engine as engine

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(EngineError) as exc:
        engine.docker_client(timeout=2)
    assert exc.value.message.startswith("no Docker daemon answers")
