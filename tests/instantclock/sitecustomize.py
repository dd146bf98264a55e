"""The unit tests' clock: code under test never waits on `time.sleep`, and a test that sleeps is caught.

Retries back off with `time.sleep` (modelbake's downloads, huggingface_hub's resume, pip's), which cost the
unit run half a minute of doing nothing. Under `install()`, a `time.sleep` called from code under test (modelbake,
the libraries) returns at once: the retry loops run as written, only the waits between tries are gone. A call
from the tests' own files returns at once too, and is reported to `on_test_sleep` (conftest fails that test: it
must wait on an event, a server's answer or a timeout instead). The standard library's own waits (`subprocess`
polling a child, which is a wait on a real event) are left as they are.

conftest installs it in the pytest process for each `unit` test, and puts this directory first on the
`PYTHONPATH` of what those tests start, so that `python -m modelbake ...` children get it too: Python imports
this file at startup as `sitecustomize` (and then the one it shadows, if any).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence

ENV = "MODELBAKE_TEST_INSTANT_CLOCK"  # set by conftest for the processes unit tests start
HERE = os.path.dirname(os.path.abspath(__file__))
REAL_SLEEP = time.sleep  # as imported, before any install()
TESTS = os.path.dirname(HERE) + os.sep
_STDLIB = tuple(
    os.path.abspath(p) + os.sep for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
)


def _is_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "-packages" not in filename


def install(on_test_sleep: Callable[[str], None] | None = None, test_files: Sequence[str] = ()) -> Callable[[], None]:
    """Replace `time.sleep` as described above; returns the function that puts the real one back.

    Test code is what lives in the tests directory, and the files in `test_files` (the running test's module).
    """
    real = time.sleep
    tests = (TESTS, *test_files)

    def sleep(seconds: float) -> None:
        caller = sys._getframe(1)
        filename = caller.f_code.co_filename
        if seconds <= 0 or _is_stdlib(filename):
            return real(seconds)
        if on_test_sleep is not None and filename.startswith(tests):
            where = os.path.relpath(filename, TESTS) if filename.startswith(TESTS) else filename
            on_test_sleep(f"time.sleep({seconds:g}) at {where}:{caller.f_lineno}")
        return None

    time.sleep = sleep
    return lambda: setattr(time, "sleep", real)


def _chain() -> None:
    """Run the sitecustomize this one shadows (a distribution's own), as Python would have."""
    import importlib.machinery
    import importlib.util

    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if __name__ == "sitecustomize":
    if os.environ.get(ENV):
        install()
    _chain()
