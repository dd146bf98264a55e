"""Every `docker` CLI subprocess modelbake runs: an argv list in, a result or one typed error out.

The Docker SDK answers questions about the engine and its images (engine.py, report.py), but it cannot drive
BuildKit (secrets, cache mounts, named contexts, bake) nor read a registry's image config without pulling, so
those run the `docker` CLI. They all go through here, so a missing CLI, a hung one and a failed one read alike.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import EngineError

# subprocess.run, or what a test stands in for the docker CLI with.
Run = Callable[..., subprocess.CompletedProcess[str]]
INSTALL_HINT = (
    "run docker/install-engine.sh (Debian: dockerd 28 and buildx 0.29), or install Docker Engine >= 28 with "
    "buildx >= 0.21"
)


class Command(list[str]):
    """argv, never a shell string."""

    def add(self, name: str, value: object | None) -> Command:
        if value is not None and value != "":
            self.extend([name, str(value)])
        return self

    def add_each(self, name: str, values: Iterable[object] | None) -> Command:
        for value in values or ():
            self.add(name, value)
        return self

    def flag(self, name: str, on: bool) -> Command:
        if on:
            self.append(name)
        return self


def run_docker(argv: list[str], timeout: float, run: Run = subprocess.run) -> subprocess.CompletedProcess[str]:
    """Run a short `docker ...` command and capture its output; EngineError when it cannot run or hangs.

    A non-zero exit is returned, not raised: what it means depends on the question asked.
    """
    shown = " ".join(argv[:4])
    try:
        return run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise EngineError(f"the `{argv[0]}` command is not on PATH", hint=INSTALL_HINT) from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{shown}` did not answer within {timeout:g} s", hint=INSTALL_HINT) from exc
    except OSError as exc:
        raise EngineError(f"`{shown}` could not run: {exc.strerror or exc}", hint=INSTALL_HINT) from exc


@dataclass
class Streamed:
    """A finished long-running command: its exit code, its stderr lines as they came, its stdout, and why it was
    stopped (None when it ran to its end)."""

    returncode: int
    stderr: list[str]
    stdout: str
    stopped: str | None


def stream_docker(
    argv: list[str], on_line: Callable[[str], None], should_stop: Callable[[], str | None] | None = None
) -> Streamed:
    """Run a long `docker ...` command, handing each stderr line to `on_line` as it comes.

    `should_stop` is asked twice a second, also while no line comes (a stalled transfer is a silent pipe): when
    it names a reason, the command is interrupted (SIGINT: buildx cancels the solve) and the reason returned.
    """
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise EngineError(f"`{' '.join(argv[:3])}` could not run: {exc.strerror or exc}", hint=INSTALL_HINT) from exc
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="docker-stderr", daemon=True).start()
    seen: list[str] = []
    stopped = None
    while True:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            seen.append(line)
            on_line(line)
        if should_stop is not None and stopped is None and (stopped := should_stop()) is not None:
            _interrupt(proc)
    proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    return Streamed(proc.returncode, seen, out, stopped)


def _interrupt(proc: subprocess.Popen[str], grace: float = 15.0) -> None:
    """SIGINT (buildx cancels the solve, BuildKit drops the transfer), then SIGKILL if it lingers."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
