"""What went wrong in a bake, in one line: the failed step (and the model it fetched), or buildx's own error.

A model step runs `python -m modelbake.fetch_entry`, whose failure is already one `error:` line naming the model,
file and URL (errors.exit_code_of); that line is found again in the step's log (errors.error_line_in) and becomes
the build's message, so a failed build reads like a failed `modelbake preload`.
"""

from __future__ import annotations

from ..errors import ModelbakeError, error_line_in
from .rawjson import Step

STALL_HINT = (
    "the cache service stalled mid-transfer and the daemon still holds that download: re-run the job (a fresh "
    "runner), or build here without --cache, after restarting dockerd"
)


class BuildxError(ModelbakeError):
    """`docker buildx` failed; carries argv, exit code and the failing step's log tail."""

    def __init__(self, message: str, argv: list[str], returncode: int, log_tail: list[str], hint: str | None = None):
        super().__init__(message, hint)
        self.argv = argv
        self.returncode = returncode
        self.log_tail = log_tail


class NetworkNotAllowedError(BuildxError):
    """The builder refuses host networking (`network.host is not allowed`)."""


class SecretNotFoundError(BuildxError):
    """A `--secret src=` file does not exist."""


class CacheStalledError(BuildxError):
    """A cache transfer made no progress for the build's `stall_seconds`: the build was stopped.

    Not retried here: the daemon keeps the stalled download open, and a rebuild that produces the same blob
    (model layers are reproducible) waits on that download's ingest in the content store (seen on dockerd
    28.5). A fresh daemon (a re-run on a new runner) or a build without the cache is the way on.
    """


def failed_step(steps: list[Step], targets: list[str]) -> Step | None:
    """The step that failed the bake (not one cancelled because of it). A step the targets share comes under
    each (see rawjson.parse_rawjson): it is named as the first target's (the models target, whose step it is),
    not as whichever target the stream reported first."""
    order = {name: i for i, name in enumerate(targets)}
    # A step stopped because another failed says so at the end of its error ("...: exit code: 137: context canceled").
    errors = [s for s in steps if s.error and "context canceled" not in s.error]
    return min(errors, key=lambda s: order.get(s.target or "", len(order)), default=None)


def bake_error(targets: list[str], argv: list[str], code: int, steps: list[Step], rest: list[str]) -> BuildxError:
    """The one error of a failed bake of `targets`; `rest` is buildx's own output after the progress stream."""
    failed = failed_step(steps, targets)
    build = f"{(failed.target if failed and failed.target else None) or targets[0]} build"
    text = "\n".join(rest)
    if "network.host" in text and "not allowed" in text:
        return NetworkNotAllowedError(
            f"{build}: the builder does not allow host networking",
            argv,
            code,
            rest[-5:],
            hint="use the default `docker` builder, or create one with --allow network.host",
        )
    if "secret" in text and ("not found" in text or "no such file" in text.lower()):
        return SecretNotFoundError(f"{build}: {_last_error_line(rest)}", argv, code, rest[-5:])
    if failed is None:
        return BuildxError(f"{build} failed: {_last_error_line(rest)}", argv, code, rest[-20:])
    if failed.name.startswith("[internal] load metadata for "):  # a FROM image BuildKit could not resolve
        image = failed.name.removeprefix("[internal] load metadata for ").strip()
        return BuildxError(
            f"{build}: cannot get the image {image}: {failed.error}",
            argv,
            code,
            rest[-5:],
            hint="without a registry, pass --base-image with an image the engine has (docker/make-base-image.sh "
            "builds one offline); with --models-image, check that reference",
        )
    logs = [line.strip() for line in failed.logs if line.strip()]
    reason, hint = error_line_in(logs)
    stage = failed.stage or "?"
    model = stage.removeprefix("fetch-") if stage.startswith("fetch-") else None
    if model and reason:  # modelbake's own line already names the model: "model X: file: reason (url)"
        message = f"{build}: step {stage} failed: {reason}"
    elif model:
        message = f"{build}: model {model}: step {stage} failed: {_last(logs) or failed.error}"
    else:
        message = f"{build}: step {failed.name[:120]} failed: {_last(logs) or failed.error}"
    return BuildxError(message, argv, code, logs[-20:], hint=hint)


def _last(lines: list[str]) -> str | None:
    return lines[-1] if lines else None


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if "ERROR" in line or "error" in line:
            return line.strip().removeprefix("ERROR: ")
    return _last(lines) or "no output"
