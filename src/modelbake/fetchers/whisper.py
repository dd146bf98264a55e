"""Whisper checkpoints: `<base>/<sha256>/<name>.pt`, the sha256 in the URL is the pin.

Fetched without importing `whisper` (it imports torch, which the image's fetch stage must not need).
Unlike whisper's own `_download`, a file that fails the check is never left at the final path.
"""

from __future__ import annotations

from ..digests import sha256_file
from ..download import remote_size
from ..lockfile import LockedFile, LockedModel, spec_fields
from ..manifest import WhisperSpec
from ..mirrors import whisper_url
from ..state import marker_valid, write_marker
from .base import FetchContext, FetchResult, explained_404, model_lock


def url_for(spec: WhisperSpec, ctx: FetchContext) -> str:
    return whisper_url(ctx.mirrors["whisper"], spec.name, spec.sha256, spec.url)


def not_found_hint(spec: WhisperSpec, ctx: FetchContext) -> str:
    """What a 404 for the checkpoint means. Its URL, `<base>/<sha256>/<name>.pt` (OpenAI's scheme, which mirrors
    keep), is made of the manifest's sha256 and name, so one of them is most likely wrong; the bare status
    would send the user to the server instead. An explicit `url` is the user's own."""
    if spec.sha256 in url_for(spec, ctx):
        return (
            f"the URL is made of {ctx.manifest_field(spec.id, 'sha256')} (and `name`): a 404 most likely means "
            "that sha256 (or the name) is wrong; check both against the checkpoint's (OpenAI's: the sha256 in "
            "whisper's _MODELS URL)"
        )
    return f"check {ctx.manifest_field(spec.id, 'url')}"


def inventory(spec: WhisperSpec, ctx: FetchContext) -> LockedModel:
    """The checkpoint's size (a HEAD): its URL carries the sha256, so a server that has the file has these bytes
    (the official CDN and `modelbake mirror` both answer 404 for another sha256), and a wrong pin fails here."""
    with explained_404(not_found_hint(spec, ctx)):
        size = remote_size(
            ctx.client,
            url_for(spec, ctx),
            spec.id,
            f"{spec.name}.pt",
            spec.sha256,
            ctx.manifest_field(spec.id, "sha256"),
        )
    return LockedModel(
        id=spec.id,
        family="whisper",
        spec=spec_fields(spec),
        revision=spec.sha256,
        files=(LockedFile(path=f"{spec.name}.pt", size=size, sha256=spec.sha256),),
    )


def fetch(spec: WhisperSpec, entry: LockedModel | None, ctx: FetchContext) -> FetchResult:
    target = ctx.layout.whisper_file(spec)
    expected_size = entry.files[0].size if entry else None
    with model_lock(ctx.layout, spec.id):
        if marker_valid(ctx.layout, spec.id, spec.sha256, [target]):
            return FetchResult(spec.id, "present", 0, (target,))
        # A file already in the cache (e.g. whisper downloaded it once) is trusted after a local hash check.
        if target.is_file() and (expected_size is None or target.stat().st_size == expected_size):
            if sha256_file(target) == spec.sha256:
                write_marker(ctx.layout, spec.id, spec.sha256, [target])
                return FetchResult(spec.id, "present", 0, (target,))
        ctx.progress.start(spec.id, expected_size)
        with explained_404(not_found_hint(spec, ctx)):
            ctx.download(spec.id, url_for(spec, ctx), target, spec.sha256, expected_size)
        write_marker(ctx.layout, spec.id, spec.sha256, [target])
        return FetchResult(spec.id, "fetched", target.stat().st_size, (target,))
