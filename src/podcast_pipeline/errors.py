"""Typed errors; only `cli.main` turns them into one `error: ...` line and an exit code."""

from __future__ import annotations


class PipelineError(Exception):
    """Base error. `exit_code` 2: bad input or usage; 3: models missing or unusable; 1: the work failed."""

    exit_code = 1


class InputError(PipelineError, ValueError):
    """The episode or an option is unusable: missing file, not audio, silent audio, unwritable --out."""

    exit_code = 2


class ModelSetupError(PipelineError):
    """The manifest, lock or baked model files do not provide what the profile needs."""

    exit_code = 3
