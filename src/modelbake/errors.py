"""Typed errors: each names the file, model, field or URL at fault and says what to do next.

Library code raises these; only `exit_code_of` (behind `modelbake`, `build.py` and the Docker fetch step) turns
them into one line and an exit code, the same set for every entry point:

- 0: done;
- 1: the work failed (a download, a build, a model that does not load, no usable Docker engine);
- 2: bad input (a file, a flag or a value), said before any work starts where it can be;
- 130: interrupted.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

# How every failure starts on stderr; a build step's failure is found again by it in the step's log.
ERROR_PREFIX = "error: "
HINT_PREFIX = "hint: "


class ModelbakeError(Exception):
    """Base error. `exit_code` 2 means bad input; 1 means the work failed."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ManifestError(ModelbakeError, ValueError):
    """models.toml is malformed: `<file>: models.<id>.<field>: <problem>`."""

    exit_code = 2


class UsageError(ModelbakeError, ValueError):
    """A command-line value is invalid (unknown profile, bad --mirror, ...)."""

    exit_code = 2


class LockError(ModelbakeError):
    """models.lock is missing, malformed, or does not match the manifest."""

    exit_code = 2


class FetchError(ModelbakeError):
    """A download failed: names model, file and URL; `status` is the HTTP status when the server answered one."""

    def __init__(
        self, model_id: str, path: str, url: str, reason: str, hint: str | None = None, status: int | None = None
    ):
        super().__init__(f"model {model_id}: {path}: {reason} ({url})", hint)
        self.model_id = model_id
        self.path = path
        self.url = url
        self.status = status


class IntegrityError(FetchError):
    """A downloaded file's digest differs from the expected one; the file was discarded.

    Where the expected digest came from decides the fix. From the lock or the Hub's listing (Hugging Face files):
    the server sent other bytes than it listed. From the manifest (`manifest_field`, e.g. `models.toml:
    models.spacy-ner.sha256`: Whisper and spaCy are pinned by the user's own sha256): that field may well be
    what is wrong, and re-running `modelbake lock` only copies it again, so the error and the hint name it.
    """

    def __init__(
        self, model_id: str, path: str, url: str, expected: str, actual: str, manifest_field: str | None = None
    ):
        if manifest_field is None:
            reason = f"sha256 mismatch: expected {expected}, got {actual}; file discarded"
            hint = "the mirror or hub served different bytes than pinned; check the mirror, or re-run `modelbake lock`"
        else:
            reason = f"sha256 mismatch: {manifest_field} is {expected}, the file served is {actual}; file discarded"
            hint = (
                f"check {manifest_field} against the file's published sha256 and correct it, then run "
                "`modelbake lock`; if the manifest is right, the mirror serves other bytes: check the mirror"
            )
        super().__init__(model_id, path, url, reason, hint)
        self.expected = expected
        self.actual = actual
        self.manifest_field = manifest_field


class EngineError(ModelbakeError):
    """The Docker engine is missing, too old, or lacks buildx / the containerd image store."""


class StaleError(ModelbakeError):
    """A generated file (models.lock, Dockerfile.models, Dockerfile) is missing or out of date (`--check`)."""


class VerifyError(ModelbakeError):
    """One or more models failed to load offline."""


class MissingDependencyError(ModelbakeError):
    """An optional dependency a command needs is not installed; checked before any work starts.

    Exit 2: like a bad flag, nothing was tried and the fix is on the user's side (install the extra).
    """

    exit_code = 2

    def __init__(self, what: str, modules: list[str], install: str):
        super().__init__(f"{what} needs {', '.join(modules)}, not installed", hint=f"install it: {install}")
        self.modules = modules


class DestinationError(ModelbakeError):
    """A path modelbake must write cannot be written: `cannot write <path>: <reason>`.

    A file in the way, no permission or a read-only file system is bad input (exit 2); a full disk is the work
    failing (exit 1). Built from the OSError by `write_error`, which names the path at fault.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2, model_id: str | None = None):
        super().__init__(message, hint)
        self.exit_code = exit_code
        self.model_id = model_id


# errno -> (reason, hint, exit code): the errors a destination itself causes.
_WRITE_ERRNOS: dict[int, tuple[str, str, int]] = {
    errno.ENOSPC: ("no space left on device", "free space on that file system, or write somewhere else", 1),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or write somewhere else", 1),
    errno.EACCES: ("permission denied", "pick a directory you can write, or fix its permissions", 2),
    errno.EPERM: ("operation not permitted", "pick a directory you can write, or fix its permissions", 2),
    errno.EROFS: ("read-only file system", "pick a directory on a writable file system", 2),
    errno.ENOTDIR: ("not a directory", "a file is in the way: remove it, or pick another directory", 2),
    errno.EEXIST: ("not a directory", "a file is in the way: remove it, or pick another directory", 2),
    errno.EISDIR: ("is a directory", "name a file, not a directory", 2),
    errno.ENOENT: ("its directory does not exist", "create the directory, or pick one that exists", 2),
}
WRITE_ERRNOS = frozenset(_WRITE_ERRNOS)


def _in_the_way(path: Path) -> Path:
    """For ENOTDIR: the nearest ancestor that exists and is not a directory (the file actually in the way)."""
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return candidate if not candidate.is_dir() else path
    return path


def write_error(exc: OSError, path: str | Path | None = None, model_id: str | None = None) -> DestinationError:
    """The DestinationError for an OSError met while writing `path` (default: the error's own filename).

    `model whisper-tiny: cannot write /models/whisper/tiny.en.pt: no space left on device`; an errno that is not
    the destination's own fault keeps its strerror and exit 1: `model X: /path: Input/output error`.
    """
    target = Path(path if path is not None else exc.filename or "?")
    prefix = f"model {model_id}: " if model_id else ""
    if exc.errno not in _WRITE_ERRNOS:
        return DestinationError(f"{prefix}{target}: {exc.strerror or exc}", None, 1, model_id)
    reason, hint, code = _WRITE_ERRNOS[exc.errno]
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        target = _in_the_way(target)
    return DestinationError(f"{prefix}cannot write {target}: {reason}", hint, code, model_id)


def exit_code_of(action: Callable[[], int]) -> int:
    """Run a CLI action; the one boundary where errors become `error: ...` (+ `hint: ...`) and an exit code.

    Only modelbake's own errors are caught: each is raised where the problem is understood and names the file,
    model, field or URL. Anything else is a bug and keeps its traceback.
    """
    try:
        return action()
    except ModelbakeError as exc:
        print(f"{ERROR_PREFIX}{exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"{HINT_PREFIX}{exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{ERROR_PREFIX}interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `modelbake ... | head`: the reader left. Point stdout at /dev/null so the interpreter's final flush
        # does not fail again, and exit quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def error_line_in(lines: Iterable[str]) -> tuple[str | None, str | None]:
    """The message and hint of the last failure `exit_code_of` printed among `lines` (a build step's log)."""
    message = hint = None
    for line in (line.strip() for line in lines):
        if line.startswith(ERROR_PREFIX):
            message, hint = line[len(ERROR_PREFIX) :], None
        elif line.startswith(HINT_PREFIX) and message is not None:
            hint = line[len(HINT_PREFIX) :]
    return message, hint


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is a UsageError: one `error:` line, a hint and exit 2, like every other
    failure, from every entry point (argparse's own `error` prints the usage and exits by itself)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")
