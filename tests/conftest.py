"""Shared fixtures: a clean environment, the network policy per marker, tiny real models behind a mirror."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import NoReturn

import pytest
from instantclock import sitecustomize as instant_clock

# huggingface_hub and transformers read these once, at import: clear them before any test imports them.
for _name in list(os.environ):
    if _name.startswith(("HF_", "MODELBAKE_")) or _name in ("TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE"):
        del os.environ[_name]
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

REPO = Path(__file__).resolve().parents[1]
# What the Docker tests build on; override on machines that have other paths.
BASE_IMAGE = os.environ.get("MODELBAKE_TEST_BASE_IMAGE", "modelbake/python-base:3.11-bookworm")
CA_BUNDLE = Path(os.environ.get("MODELBAKE_TEST_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
WHEELHOUSE = Path(os.environ.get("MODELBAKE_TEST_WHEELHOUSE", "/opt/wheels"))


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Default caches (Whisper, HF, modelbake state) point into the test's tmp dir, never the user's."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache / "huggingface"))
    yield


@pytest.fixture(autouse=True)
def _network_policy(request):
    """`unit` tests get no network at all, or loopback only when they use the mirror (pytest-socket)."""
    from pytest_socket import disable_socket, enable_socket, socket_allow_hosts

    if request.node.get_closest_marker("unit") is None:
        yield
        return
    if {"mirror", "tiny_locked"} & set(request.fixturenames) or request.node.get_closest_marker("loopback"):
        socket_allow_hosts(["127.0.0.1"], allow_unix_socket=True)
    else:
        disable_socket(allow_unix_socket=True)
    try:
        yield
    finally:
        enable_socket()


def pytest_configure(config):
    config.addinivalue_line("markers", "loopback: a unit test that may talk to 127.0.0.1 (servers it starts)")


@pytest.fixture(autouse=True)
def _unit_waits_on_no_clock_and_imports_no_torch(request, monkeypatch):
    """`unit` tests: code under test backs off without waiting, in this process and in the Python processes the
    test starts (tests/instantclock); a test that calls time.sleep itself fails, and so does one that imports
    torch (the unit run needs no ML library: tests that load models are `ml_models`)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    slept: list[str] = []
    restore = instant_clock.install(slept.append, test_files=(str(request.path),))
    monkeypatch.setenv(instant_clock.ENV, "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [instant_clock.HERE, os.environ.get("PYTHONPATH")])))
    had_torch = request.node.stash.get(_TORCH_BEFORE, True)
    try:
        yield
    finally:
        restore()
    problems = []
    if slept:
        problems.append(f"it waited on the wall clock: {', '.join(slept)} (wait on an event, an answer or a timeout)")
    if not had_torch and "torch" in sys.modules:
        problems.append("it imported torch (a test that loads models is `ml_models`, not `unit`)")
    if problems:
        pytest.fail(f"unit test {request.node.nodeid}: {'; '.join(problems)}", pytrace=False)


_TORCH_BEFORE = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Whether torch was loaded before this test's setup, module and session fixtures included."""
    item.stash[_TORCH_BEFORE] = "torch" in sys.modules


def pytest_sessionfinish(session, exitstatus):
    """A run of `unit` tests alone must not have imported torch at all, collection and session fixtures included."""
    items = getattr(session, "items", [])
    if items and all(item.get_closest_marker("unit") for item in items) and "torch" in sys.modules:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("ERROR: the unit run imported torch (at collection or in a session fixture)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def in_ci() -> bool:
    """`CI=true`, as GitHub Actions (and most CI services) set it, or as .ci/run exports it."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose requirement is missing, saying why; under CI=true fail it instead, since a skipped
    Docker test passes unnoticed and CI installs every requirement (.ci/run, `make test`)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing requirement fails the test instead of skipping it)", pytrace=False)
    pytest.skip(reason)


class SignerClock:
    """The gha emulator's URL signer's clock, moved by the test (`now += seconds`) instead of waited on."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def time(self) -> float:
        return self.now


@pytest.fixture
def signer_clock(monkeypatch) -> SignerClock:
    """A clock the test moves, standing in for `time` in testkit.ghacache.blobs (which signs and checks URLs)."""
    from testkit.ghacache import blobs

    clock = SignerClock()
    monkeypatch.setattr(blobs, "time", clock)
    return clock


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    """Tiny real models (random weights, real layouts) laid out as a mirror tree, generated once a session."""
    from testkit.tinymodels import build_mirror_tree

    cache = os.environ.get("MODELBAKE_TEST_MODELS_DIR")
    root = Path(cache) if cache else tmp_path_factory.mktemp("tiny-mirror")
    return build_mirror_tree(root)


@pytest.fixture(scope="session")
def mirror(tiny_tree):
    """`modelbake mirror` serving the tiny tree on 127.0.0.1 (port chosen by the OS)."""
    from modelbake.mirror.server import MirrorServer

    with MirrorServer(tiny_tree.root) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_mirror_faults(request):
    yield
    if "mirror" in request.fixturenames:
        server = request.getfixturevalue("mirror")
        server.faults.clear()


def mirror_args(server) -> list[str]:
    return [arg for family, url in server.mirrors.items() for arg in ("--mirror", f"{family}={url}")]


def wheelhouse_args() -> list[str]:
    """build.py's `--wheelhouse` when this machine has one (the deps stage installs from it, not PyPI)."""
    return ["--wheelhouse", str(WHEELHOUSE)] if WHEELHOUSE.is_dir() else []


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines of a command's stderr (the error boundary prints exactly one)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="session")
def tiny_locked(tiny_tree, mirror, tmp_path_factory):
    """A copy of the tiny manifest with its lock, written by `modelbake lock` against the mirror."""
    from modelbake.cli import main

    work = tmp_path_factory.mktemp("tiny-manifest")
    manifest = work / "models.toml"
    shutil.copy(tiny_tree.manifest, manifest)
    assert main(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    return manifest


@pytest.fixture(scope="session")
def byte_tree(tmp_path_factory):
    """Stand-ins for the tiny models, in their layout (tests/bytemodels.py): for tests that only move bytes."""
    from bytemodels import build_byte_tree

    return build_byte_tree(tmp_path_factory.mktemp("byte-mirror") / "tree")


@pytest.fixture(scope="session")
def byte_mirror(byte_tree):
    from modelbake.mirror.server import MirrorServer

    with MirrorServer(byte_tree.root) as server:
        yield server


@pytest.fixture(scope="session")
def byte_locked(byte_tree, byte_mirror, tmp_path_factory):
    """The stand-ins' manifest with its lock, written by `modelbake lock` against their mirror."""
    from modelbake.cli import main

    work = tmp_path_factory.mktemp("byte-manifest")
    manifest = work / "models.toml"
    shutil.copy(byte_tree.manifest, manifest)
    assert main(["lock", "--manifest", str(manifest), *mirror_args(byte_mirror)]) == 0
    return manifest


def fresh_whisper_pin(tiny_tree, request) -> str:
    """A Whisper checkpoint no earlier session has built (BuildKit's cache outlives a session), removed after."""
    from testkit.tinymodels import add_whisper_variant

    sha = add_whisper_variant(tiny_tree.root, seed=uuid.uuid4().int % 2**31)
    request.addfinalizer(lambda: shutil.rmtree(tiny_tree.root / "whisper" / sha, ignore_errors=True))
    return sha


@pytest.fixture
def unique_manifest(tiny_tree, tiny_locked, mirror, tmp_path, request) -> Path:
    """The tiny manifest with a Whisper checkpoint no build has seen, locked: its layer can only come from
    the mirror or a cache under test (the other models' layers may exist in the engine already)."""
    from modelbake.cli import main as modelbake

    sha = fresh_whisper_pin(tiny_tree, request)
    manifest = tmp_path / "manifest" / "models.toml"
    manifest.parent.mkdir()
    manifest.write_text(tiny_tree.manifest.read_text().replace(tiny_tree.whisper_sha256, sha))
    assert modelbake(["lock", "--manifest", str(manifest), *mirror_args(mirror)]) == 0
    return manifest


@pytest.fixture
def manifest_copy(tiny_locked, tmp_path):
    """A per-test copy of the locked tiny manifest, safe to edit."""
    dest = tmp_path / "m"
    dest.mkdir()
    shutil.copy(tiny_locked, dest / "models.toml")
    shutil.copy(tiny_locked.with_suffix(".lock"), dest / "models.lock")
    return dest / "models.toml"


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    """Run `python -m modelbake ...` in a fresh process (the libraries read env vars at import)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "modelbake", *args], capture_output=True, text=True, env=full_env, cwd=cwd
    )


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client for a usable engine with the base image; without, the Docker tests skip saying why,
    or fail under CI=true."""
    return usable_engine()


def usable_engine(connect=None):
    """The checks behind `docker_client`; `connect` stands in for modelbake.image.engine.docker_client in tests."""
    from modelbake.image.engine import EngineError, check_engine, docker_client

    try:
        client = (connect or docker_client)()
        check_engine(client)
    except EngineError as exc:
        unavailable(f"no usable Docker engine: {exc.message}")
    try:
        client.images.get(BASE_IMAGE)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound, or the engine went away
        unavailable(f"base image {BASE_IMAGE} missing: run docker/make-base-image.sh")
    return client


def removed_after(client, force: bool = True):
    """For a fixture of any scope: `yield from removed_after(docker_client)` gives a list the tests append the
    tags they create to; every one is removed at the fixture's end, whether or not it was ever built."""
    created: list[str] = []
    yield created
    for tag in created:
        try:
            client.images.remove(tag, force=force)
        except Exception:  # noqa: BLE001 - never built, or already gone
            pass


@pytest.fixture
def images(docker_client):
    """Tags a test creates (it appends them); removed afterwards."""
    yield from removed_after(docker_client)
