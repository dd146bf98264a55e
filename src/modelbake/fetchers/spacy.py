"""spaCy pipelines: a wheel fetched by URL, its sha256 checked, then installed by pip.

`spacy download` cannot be pointed at a mirror and picks a version over the network at install time, so
modelbake downloads the pinned wheel itself and hands pip only a verified local file (`--no-index`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

from ..download import checked_size
from ..errors import WRITE_ERRNOS, FetchError, write_error
from ..lockfile import LockedFile, LockedModel, spec_fields
from ..manifest import SpacySpec
from ..mirrors import spacy_url
from ..paths import installed_version
from ..state import marker_valid, write_marker
from .base import FetchContext, FetchResult, explained_404, model_lock, staging_dir


def url_for(spec: SpacySpec, ctx: FetchContext) -> str:
    return spacy_url(ctx.mirrors["spacy"], spec.name, spec.version, spec.url)


def not_found_hint(spec: SpacySpec, ctx: FetchContext) -> str:
    """What a 404 for the wheel means: its URL is made of the manifest's name and version (or is its `url`)."""
    if spec.url and spec.url == url_for(spec, ctx):
        return f"check {ctx.manifest_field(spec.id, 'url')}"
    return (
        f"the URL is made of {ctx.manifest_field(spec.id, 'name')} (and `version`): a 404 most likely means one "
        "of them is wrong (spaCy's release of a pipeline is `<name>-<version>`)"
    )


def inventory(spec: SpacySpec, ctx: FetchContext) -> LockedModel:
    """The wheel read once and hashed, nothing kept. Its sha256 is the manifest's own (no server states it), and
    only the bytes can check it: a wrong one fails here, naming the field, instead of passing into the lock and
    failing every preload after it."""
    with explained_404(not_found_hint(spec, ctx)):
        size = checked_size(
            ctx.client,
            url_for(spec, ctx),
            spec.id,
            spec.wheel_filename,
            spec.sha256,
            ctx.manifest_field(spec.id, "sha256"),
        )
    return LockedModel(
        id=spec.id,
        family="spacy",
        spec=spec_fields(spec),
        revision=spec.version,
        files=(LockedFile(path=spec.wheel_filename, size=size, sha256=spec.sha256),),
    )


def fetch(spec: SpacySpec, entry: LockedModel | None, ctx: FetchContext) -> FetchResult:
    """Download and check the wheel, then pip-install it into the pipeline's own directory (`--dest`) or the
    active environment. In a `--dest` tree each pipeline is a pip `--target` directory of its own, so two
    pipelines are two image layers, and a pin change replaces one directory."""
    layout = ctx.layout
    target = layout.spacy_target(spec)
    expected_size = entry.files[0].size if entry else None
    revision = f"{spec.version}:{spec.sha256}"
    with model_lock(layout, spec.id):
        if target is not None:
            # The marker and the pipeline's metadata in its own directory: a tree written before one directory
            # per pipeline has the marker but not the metadata there, and is installed again (and tidied).
            if marker_valid(layout, spec.id, revision) and installed_version(spec.name, target) == spec.version:
                return FetchResult(spec.id, "present", 0, ())
        elif installed_version(spec.name, None) == spec.version:
            return FetchResult(spec.id, "present", 0, ())
        ctx.progress.start(spec.id, expected_size)
        with staging_dir(layout.tmp_dir, f"{spec.id}.") as staging:
            wheel = staging / spec.wheel_filename
            with explained_404(not_found_hint(spec, ctx)):
                ctx.download(spec.id, url_for(spec, ctx), wheel, spec.sha256, expected_size)
            if target is None:
                _pip(spec, ["install", "--no-deps", "--no-index", "--force-reinstall", str(wheel)], None)
                return FetchResult(spec.id, "fetched", wheel.stat().st_size, ())
            installed = staging / "target"
            pip_target = ["--target", str(installed)]
            _pip(spec, ["install", "--no-deps", "--no-index", "--no-compile", *pip_target, str(wheel)], target)
            _make_reproducible(installed)
            shutil.rmtree(installed / "bin", ignore_errors=True)  # console scripts: no use in a model tree
            _publish_dir(installed, target)
            for leftover in layout.legacy_spacy_paths(spec):
                shutil.rmtree(leftover, ignore_errors=True)
            files = sorted(p for p in target.rglob("*") if p.is_file())
            write_marker(layout, spec.id, revision, files)
            return FetchResult(spec.id, "fetched", wheel.stat().st_size, tuple(files))


def _pip(spec: SpacySpec, args: list[str], target: Path | None) -> None:
    """Run pip; a failure is one FetchError line, or a DestinationError when pip could not write (its output
    carries the OSError as `[Errno N]`: a full disk, a read-only file system)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        return
    for number in map(int, re.findall(r"\[Errno (\d+)\]", proc.stderr)):
        if number in WRITE_ERRNOS:
            where = target or Path(sysconfig.get_paths()["purelib"])
            raise write_error(OSError(number, os.strerror(number), str(where)), where, spec.id)
    last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    if len(last) > 300:
        last = last[:300] + "..."
    raise FetchError(spec.id, spec.wheel_filename, "pip", f"pip install failed: {last}")


def _make_reproducible(target: Path) -> None:
    """pip records the wheel's temp path in direct_url.json; drop it (and its RECORD line) so the same
    wheel always gives the same bytes, hence the same image layer digest."""
    for direct_url in target.glob("*.dist-info/direct_url.json"):
        record = direct_url.parent / "RECORD"
        direct_url.unlink()
        if record.is_file():
            lines = [ln for ln in record.read_text().splitlines() if "direct_url.json" not in ln]
            record.write_text("\n".join(lines) + "\n")


def _publish_dir(source: Path, target: Path) -> None:
    """Put the staged directory at `target` by renames (same file system), replacing an older one whole."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.exists() or target.is_symlink()):
        os.replace(source, target)
        return
    trash = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(target, trash)
    os.replace(source, target)
    shutil.rmtree(trash, ignore_errors=True) if trash.is_dir() else trash.unlink(missing_ok=True)
