"""`docker buildx build` as an argv list, run through one function that raises a typed error.

The Docker SDK cannot drive BuildKit (secrets, cache mounts, named contexts), so builds run the buildx CLI as a
subprocess. Results come from `--metadata-file` (image id, digest) and from `--progress rawjson` (each step
built or cached, its duration, the error of a failed step and its log tail), never from scraping plain logs.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import ModelbakeError
from .rawjson import Step, parse_rawjson, parse_time, rawjson_documents
from .transferwatch import TransferWatch

_parse_time = parse_time  # the name bench/ imported before rawjson.py
Echo = Callable[[str], None]  # gets each line of buildx's output as it comes
__all__ = ["Step", "parse_rawjson", "rawjson_documents"]


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


@dataclass
class BuildSpec:
    """One `docker buildx build`."""

    context: Path
    dockerfile: Path
    target: str | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    build_contexts: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)  # id -> file
    cache_from: list[str] = field(default_factory=list)
    cache_to: list[str] = field(default_factory=list)
    network: str | None = None
    no_cache_filter: list[str] = field(default_factory=list)  # stages to re-run (e.g. --refresh-models)
    no_cache: bool = False  # run every step; cache imports are skipped too (a cold build)
    builder: str | None = None
    platform: str | None = None
    push: bool = False
    load: bool = True
    layer_compression: str | None = None  # uncompressed / zstd / gzip; None: the exporter's default (gzip)
    force_compression: bool = False  # recompress layers that already have a blob of another compression
    label: str = "build"  # for messages: "models" / "app"
    # Stop the build when a cache download makes no progress for this long (transferwatch); None: never.
    stall_seconds: float | None = None


LAYER_COMPRESSIONS = ("uncompressed", "zstd", "gzip")


def output_spec(spec: BuildSpec) -> str | None:
    """The `--output` for a layer compression other than the exporter's default, or None (tags alone).

    `type=image` is the engine's image store with the docker driver (buildx names it from `--tag`), a push
    with `push=true`; another builder loads through `type=docker`. zstd needs OCI media types: the docker
    manifest has no zstd layer type, and BuildKit would write a non-standard one.
    """
    if spec.layer_compression is None:
        return None
    if spec.layer_compression not in LAYER_COMPRESSIONS:
        raise ValueError(f"layer compression {spec.layer_compression!r}: expected one of {LAYER_COMPRESSIONS}")
    kind = "docker" if spec.builder is not None and spec.load and not spec.push else "image"
    attrs = [f"type={kind}", f"compression={spec.layer_compression}"]
    attrs += ["force-compression=true"] if spec.force_compression else []
    attrs += ["oci-mediatypes=true"] if spec.layer_compression == "zstd" else []
    attrs += ["push=true"] if spec.push else []
    return ",".join(attrs)


def build_argv(spec: BuildSpec, metadata_file: Path | None = None, progress: str = "rawjson") -> Command:
    cmd = Command(["docker", "buildx", "build"])
    cmd.add("--builder", spec.builder)
    cmd.add("--file", spec.dockerfile)
    cmd.add("--target", spec.target)
    cmd.add_each("--tag", spec.tags)
    cmd.add("--platform", spec.platform)
    for key in sorted(spec.build_args):
        cmd.add("--build-arg", f"{key}={spec.build_args[key]}")
    for name in sorted(spec.build_contexts):
        cmd.add("--build-context", f"{name}={spec.build_contexts[name]}")
    for secret_id in sorted(spec.secrets):
        cmd.add("--secret", f"id={secret_id},src={spec.secrets[secret_id]}")
    cmd.add_each("--cache-from", spec.cache_from)
    cmd.add_each("--cache-to", spec.cache_to)
    cmd.flag("--no-cache", spec.no_cache)
    if spec.no_cache_filter and not spec.no_cache:
        cmd.add("--no-cache-filter", ",".join(spec.no_cache_filter))
    if spec.network:
        cmd.add("--network", spec.network)
        if spec.network == "host":
            cmd.add("--allow", "network.host")
    # No provenance attestation: it would record build args in the image index; nothing here needs it.
    cmd.add("--provenance", "false")
    output = output_spec(spec)
    if output is not None:
        cmd.add("--output", output)  # says push/load itself: buildx refuses --push or --load beside --output
    else:
        cmd.flag("--push", spec.push)
        cmd.flag("--load", spec.load and not spec.push and spec.builder is not None)
    cmd.add("--metadata-file", metadata_file)
    cmd.add("--progress", progress)
    cmd.append(str(spec.context))
    return cmd


@dataclass
class BuildResult:
    argv: list[str]
    steps: list[Step]
    metadata: dict[str, Any]
    seconds: float

    @property
    def image_id(self) -> str | None:
        value = self.metadata.get("containerimage.config.digest")
        return None if value is None else str(value)

    @property
    def digest(self) -> str | None:
        value = self.metadata.get("containerimage.digest")
        return None if value is None else str(value)


def run_build(spec: BuildSpec, *, echo: Echo | None = None) -> BuildResult:
    """Run one build; raise a BuildxError subclass whose one-line message names the failing step.

    With `spec.stall_seconds`, a cache download that makes no progress that long stops the build (SIGINT,
    which buildx turns into a cancelled solve) with CacheStalledError.
    """
    with tempfile.TemporaryDirectory(prefix="modelbake-buildx-") as tmp:
        metadata_file = Path(tmp) / "metadata.json"
        argv = build_argv(spec, metadata_file)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        chunks: list[str] = []
        watch = TransferWatch(spec.stall_seconds) if spec.stall_seconds else None
        stalled = _pump(proc, chunks, watch, echo)
        out = proc.stdout.read() if proc.stdout else ""
        seconds = time.perf_counter() - started
        steps, rest = parse_rawjson("".join(chunks))
        if stalled is not None:
            raise CacheStalledError(
                f"{spec.label} build stopped: {stalled}",
                list(map(str, argv)),
                proc.returncode,
                rest[-5:],
                hint="the cache service stalled mid-transfer and the daemon still holds that download: re-run "
                "the job (a fresh runner), or build here without --cache, after restarting dockerd",
            )
        if proc.returncode != 0:
            raise _error(spec, list(map(str, argv)), proc.returncode, steps, rest + out.splitlines())
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else {}
    return BuildResult(argv=list(map(str, argv)), steps=steps, metadata=metadata, seconds=seconds)


def _pump(proc: subprocess.Popen[str], chunks: list[str], watch: TransferWatch | None, echo: Echo | None) -> str | None:
    """Collect buildx's stderr until it exits; with a watch, stop it on a stalled cache transfer.

    A reader thread, because a stalled transfer means a silent pipe: the check must run while no line comes.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, name="buildx-stderr", daemon=True)
    reader.start()
    stalled = None
    while True:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            line = ""
        if line is None:
            break
        if line:
            chunks.append(line)
            if echo is not None:
                echo(line)
            if watch is not None:
                watch.feed_line(line)
        if watch is not None and stalled is None and (stalled := watch.stalled()) is not None:
            _interrupt(proc)
    proc.wait()
    return stalled


def _interrupt(proc: subprocess.Popen[str], grace: float = 15.0) -> None:
    """SIGINT (buildx cancels the solve, BuildKit drops the transfer), then SIGKILL if it lingers."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()


def _error(spec: BuildSpec, argv: list[str], code: int, steps: list[Step], rest: list[str]) -> BuildxError:
    failed = next((s for s in steps if s.error and not s.error.startswith("context canceled")), None)
    text = "\n".join(rest)
    if "network.host is not allowed" in text or "network.host" in text and "not allowed" in text:
        return NetworkNotAllowedError(
            f"{spec.label} build: the builder does not allow host networking",
            argv,
            code,
            rest[-5:],
            hint="use the default `docker` builder, or create one with --allow network.host",
        )
    if "secret" in text and ("not found" in text or "no such file" in text.lower()):
        return SecretNotFoundError(f"{spec.label} build: {_last_error_line(rest)}", argv, code, rest[-5:])
    if failed is not None:
        logs = [line.strip() for line in failed.logs if line.strip()]
        reason = next((line for line in reversed(logs) if line.startswith("error:")), None)
        stage = failed.stage or "?"
        model = stage[len("fetch-") :] if stage.startswith("fetch-") else None
        if model and reason:
            # modelbake's own error line already names the model: "error: model X: file: reason (url)"
            message = f"{spec.label} build: step {stage} failed: {reason[len('error: ') :]}"
        elif model:
            message = f"{spec.label} build: model {model}: step {stage} failed: {_last(logs) or failed.error}"
        else:
            message = f"{spec.label} build: step {failed.name[:120]} failed: {_last(logs) or failed.error}"
        return BuildxError(message, argv, code, logs[-20:])
    return BuildxError(f"{spec.label} build failed: {_last_error_line(rest)}", argv, code, rest[-20:])


def _last(lines: list[str]) -> str | None:
    return lines[-1] if lines else None


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if "ERROR" in line or "error" in line:
            return line.strip().removeprefix("ERROR: ")
    return _last(lines) or "no output"


def print_argv(argv: list[str], stream: IO[str] | None = None) -> None:
    """A dry run: the command as one copy-pasteable line."""
    import shlex

    print(shlex.join(argv), file=stream or sys.stdout)
