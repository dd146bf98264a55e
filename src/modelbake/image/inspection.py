"""What the engine or a registry says about an image: its layers, their history entries, its labels.

A layer of the models image is found by the history entry that created it (`COPY <its layer root>/ /`), never
by position: BuildKit caches COPY by content, so positions shift while digests stay put. The app image starts
FROM the models image, so there the same diff ids are its bottom layers.

The Docker SDK reads the engine's images; a models image only a registry holds (`--models-image`) is read
without pulling through `docker buildx imagetools inspect`, the one tool that shows a registry's image config.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EngineError, UsageError
from .dockercli import run_docker

if TYPE_CHECKING:
    from docker.models.images import Image

    from docker import DockerClient


class ImageLike(Protocol):
    """What the report reads of an image: a Docker SDK `Image`, or a `ConfigImage` (a registry's config)."""

    attrs: dict[str, Any]

    @property
    def id(self) -> str | None: ...

    @property
    def tags(self) -> list[str]: ...

    def history(self) -> list[Any]: ...


def local_image(client: DockerClient, ref: str) -> Image | None:
    """The engine's image `ref`, None when it has none; EngineError (one line) when the engine fails to say."""
    from docker.errors import APIError, ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        return None
    except APIError as exc:
        raise EngineError(f"the Docker engine could not show image {ref}: {exc.explanation or exc}") from exc


def image_config(ref: str) -> dict[str, Any]:
    """An image's config (labels, history, diff ids) from its registry or the engine, without pulling layers.

    A multi-platform image answers one config per platform; their model layers are the same, the first is used.
    """
    argv = ["docker", "buildx", "imagetools", "inspect", ref, "--format", "{{json .Image}}"]
    proc = run_docker(argv, timeout=120)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"--models-image {ref}: cannot read it: {last}")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "config" not in doc and doc and all(isinstance(v, dict) for v in doc.values()):
        doc = next(iter(doc.values()))
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise EngineError(f"`docker buildx imagetools inspect {ref}` answered something that is not an image config")
    return doc


def image_labels(ref: str) -> dict[str, str]:
    labels = (image_config(ref).get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def layer_history(image: ImageLike) -> list[tuple[str, str, int]]:
    """(diff id, created_by, size) for every layer, oldest first.

    History entries of metadata-only instructions (ENV, USER, ...) have no layer; BuildKit drops empty diffs
    and marks their entries empty, which the engine reports as size 0. So the entries with a size, oldest
    first, pair up with RootFS.Layers. An image without layers (a models image of an empty profile) has none.
    """
    layers = image.attrs.get("RootFS", {}).get("Layers") or []
    if not layers:
        return []
    entries = [e for e in reversed(image.history() or []) if int(e.get("Size") or 0) > 0]
    if len(entries) != len(layers):
        raise EngineError(f"image {image.id}: {len(entries)} history entries with a layer for {len(layers)} layers")
    return [(diff, str(e.get("CreatedBy", "")), int(e["Size"])) for diff, e in zip(layers, entries, strict=True)]


class ConfigImage:
    """What the report reads of a Docker SDK Image (`attrs`, `history()`, `id`, `tags`), from an image config:
    a `--models-image` only BuildKit pulled. Sizes come from the app image built on it, which holds its layers."""

    def __init__(self, ref: str, config: dict[str, Any], sizes_from: ImageLike) -> None:
        self.tags = [ref]
        self.id = ref.rpartition("@")[2] if "@" in ref else ref
        diffs = list(config.get("rootfs", {}).get("diff_ids") or [])
        known = {diff: size for diff, _, size in layer_history(sizes_from)}
        self.attrs: dict[str, Any] = {"RootFS": {"Layers": diffs}, "Size": sum(known.get(d, 0) for d in diffs)}
        entries = [h for h in config.get("history") or [] if not h.get("empty_layer")]
        self._history = [
            {"CreatedBy": h.get("created_by", ""), "Size": known.get(diff, 1)}
            for h, diff in zip(entries, diffs, strict=False)
        ]

    def history(self) -> list[Any]:
        return list(reversed(self._history))  # newest first, as the engine reports it
