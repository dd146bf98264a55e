"""Typed errors: each names the file, model, field or URL at fault and says what to do next.

Library code raises these; only `cli.main` turns them into one line and an exit code.
"""

from __future__ import annotations


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
    """A download failed: names model, file and URL."""

    def __init__(self, model_id: str, path: str, url: str, reason: str, hint: str | None = None):
        super().__init__(f"model {model_id}: {path}: {reason} ({url})", hint)
        self.model_id = model_id
        self.path = path
        self.url = url


class IntegrityError(FetchError):
    """A downloaded file's digest differs from the expected one; the file was discarded."""

    def __init__(self, model_id: str, path: str, url: str, expected: str, actual: str):
        super().__init__(
            model_id,
            path,
            url,
            f"sha256 mismatch: expected {expected}, got {actual}; file discarded",
            hint="the mirror or hub served different bytes than pinned; check the mirror, or re-run `modelbake lock`",
        )
        self.expected = expected
        self.actual = actual


class VerifyError(ModelbakeError):
    """One or more models failed to load offline."""


def exit_code_of(action) -> int:
    """Run a CLI action; the one boundary where errors become `error: ...` (+ `hint: ...`) and an exit code."""
    import sys

    try:
        return action()
    except ModelbakeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
