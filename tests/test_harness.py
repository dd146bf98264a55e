"""The suite's own rules (issue 12, item 9), each shown failing a test that breaks it: under CI=true a missing
engine fails the Docker tests instead of skipping them; a `unit` test that sleeps, or imports torch, fails; code
under test backs off without waiting, in the test's process and in the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from instantclock import sitecustomize as instant_clock

from conftest import REPO, unavailable, usable_engine
from modelbake.image.engine import EngineError

pytestmark = pytest.mark.unit

BROKEN_RULES = """
import pytest


@pytest.mark.unit
def test_sleeps():
    import time

    time.sleep(0.01)


@pytest.mark.unit
def test_imports_torch():
    import torch  # the stand-in below: nothing heavy is loaded


@pytest.mark.docker
def test_needs_the_engine(docker_client):
    pass
"""


def test_a_missing_engine_fails_under_ci_and_skips_elsewhere(monkeypatch):
    def no_daemon():
        raise EngineError("no Docker daemon answers (connection refused)")

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no usable Docker engine: no Docker daemon answers"):
        usable_engine(connect=no_daemon)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: a missing requirement fails the test"):
        usable_engine(connect=no_daemon)
    with pytest.raises(pytest.fail.Exception, match="docker-registry missing"):
        unavailable("docker-registry missing")


def test_tests_that_break_the_rules_fail(tmp_path):
    """A real pytest run, with this suite's conftest, of three tests that each break one rule."""
    (tmp_path / "test_broken.py").write_text(BROKEN_RULES)
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {
        **os.environ,
        "CI": "true",
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "src"), str(tmp_path / "site")]),
    }
    argv = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-rA", str(tmp_path)]
    proc = subprocess.run([*argv, "--rootdir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "it waited on the wall clock: time.sleep(0.01) at " in out
    assert "it imported torch" in out
    assert "no usable Docker engine" in out and "CI=true: a missing requirement fails" in out
    assert "skipped" not in out and "3 errors" in out, out


def test_code_under_test_backs_off_without_waiting_and_a_test_that_sleeps_is_named():
    outer, time.sleep = time.sleep, instant_clock.REAL_SLEEP  # this test's own clock instead of conftest's
    slept: list[str] = []
    restore = instant_clock.install(slept.append)
    try:
        began = time.monotonic()
        # A sleep in code under test (here a line compiled as if it lived in src/): returns at once, unreported.
        exec(compile("import time\ntime.sleep(30)", str(REPO / "src/modelbake/download.py"), "exec"))
        assert slept == []
        time.sleep(30)  # this file is a test's: reported, and no more waited for than the one above
        assert time.monotonic() - began < 5
    finally:
        restore()
        time.sleep = outer
    assert slept == [f"time.sleep(30) at test_harness.py:{_line_of('time.sleep(30)  #')}"]


def test_processes_a_unit_test_starts_back_off_without_waiting():
    code = "import time; t = time.monotonic(); time.sleep(30); print(time.monotonic() - t)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0 and float(proc.stdout) < 5, proc.stderr


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line and "_line_of" not in line)
