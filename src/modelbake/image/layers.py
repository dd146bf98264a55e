"""Which image layers the models become: one per model, and one per big file of a model (the layer plan).

Why files get layers of their own: a 7B model is 14 GB in a few shards, and a model is otherwise one layer of
that size (registries fail on such layers, and a push or pull cannot resume inside one), and any new revision
of a Hugging Face repo would re-fetch and re-push the whole model, even one that touched only `config.json`.
So every file over `file_layers_over` (default 64 MiB, Cog's threshold; bench/results-filelayers.md measures
it) is a layer of its own, keyed by that file's sha256 alone, and the rest of the model (configs, tokenizer,
the hub cache's snapshot links and refs) is one more. A revision that changes only small files re-fetches
and re-pushes only the rest; every big layer keeps its digest. Loaders see one whole hub cache: its snapshot
links point at `blobs/<sha256>`, which the file layers fill in.

Only Hugging Face models are split: a Whisper checkpoint is one file (its layer already is that file's), and
a spaCy pipeline is one wheel whose files exist only after pip unpacks it.

Pure: the plan comes from the manifest's specs and the lock; `dockerfile.py` writes it as text. The app image
starts FROM the models image, so its bottom layers are these, byte for byte and chain for chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..lockfile import FileRef, Lock, LockedModel
from ..manifest import HuggingFaceSpec, ModelSpec
from ..paths import file_layer_name, file_layer_root, image_blob_path, image_paths, layer_root, slug

DEFAULT_FILE_LAYERS_OVER = 64 * 1024 * 1024


@dataclass(frozen=True)
class Layer:
    """One layer of the models image: the tree `root` of build stage `stage`, copied to `/`.

    `owns` are the image paths it holds (relative to `/`, e.g. `models/whisper/tiny.en.pt`); `holes` are paths
    inside them that other layers hold (a model's big files, in the layer of the rest of it).
    """

    model_id: str
    stage: str
    root: str
    owns: tuple[str, ...]
    holes: tuple[str, ...] = ()
    size: int = 0
    file: FileRef | None = None  # the big file this layer holds alone, if it is one
    locked: bool = True

    @property
    def name(self) -> str:
        """`<model id>`, or `<model id>:<path>` for a big file's own layer (messages and tests)."""
        return f"{self.model_id}:{self.file.path}" if self.file else self.model_id


def stage_name(model_id: str) -> str:
    """`fetch-<id>`: the stage that fetches a model (all of it, or all but its big files)."""
    return "fetch-" + slug(model_id)


def file_stage(ref: FileRef) -> str:
    """`file-<sha16>-<org>--<name>`: one stage per (repo, blob), see `paths.file_layer_name`."""
    return file_layer_name(ref.repo, ref.sha256)


def big_files(spec: ModelSpec, entry: LockedModel | None, file_layers_over: int | None) -> list[FileRef]:
    """The files of a locked Hugging Face model larger than `file_layers_over` (none when splitting is off)."""
    if file_layers_over is None or entry is None or not isinstance(spec, HuggingFaceSpec):
        return []
    return [
        FileRef(spec.id, spec.repo, f.path, f.sha256, f.size)
        for f in sorted(entry.files, key=lambda f: f.path)
        if f.size > file_layers_over
    ]


def model_layers(spec: ModelSpec, entry: LockedModel | None, file_layers_over: int | None) -> list[Layer]:
    """A model's layers: one per big file, then the rest of the model."""
    files = big_files(spec, entry, file_layers_over)
    layers = [
        Layer(
            model_id=spec.id,
            stage=file_stage(f),
            root=file_layer_root(f.repo, f.sha256),
            owns=(_rel(image_blob_path(spec, f.sha256)),),  # type: ignore[arg-type]
            size=f.size,
            file=f,
        )
        for f in files
    ]
    total = entry.total_bytes if entry is not None else 0
    layers.append(
        Layer(
            model_id=spec.id,
            stage=stage_name(spec.id),
            root=layer_root(spec),
            owns=tuple(_rel(p) for p in image_paths(spec)),
            holes=tuple(layer.owns[0] for layer in layers),
            size=total - sum(f.size for f in files),
            locked=entry is not None,
        )
    )
    return layers


def plan_layers(specs: Iterable[ModelSpec], lock: Lock | None, file_layers_over: int | None) -> list[Layer]:
    """Every layer of the models image, bottom to top (see `layer_order`); a blob two models share (two
    entries of one repo) is one layer."""
    seen: set[str] = set()
    out = []
    for spec in specs:
        for layer in model_layers(spec, lock.get(spec.id) if lock else None, file_layers_over):
            if layer.file is not None and layer.owns[0] in seen:
                continue
            seen.update(layer.owns if layer.file is not None else ())
            out.append(layer)
    return layer_order(out)


def layer_order(layers: list[Layer]) -> list[Layer]:
    """Bottom to top: locked layers largest first, then the layers of unlocked models, plan order on ties.

    With `COPY --link` a changed layer re-exports and re-pushes only its own blob wherever it sits, but an
    image store (containerd's snapshotter, the classic overlay2 store, every `docker pull`) keys a layer's
    unpacked form on its chain of parents, so it unpacks again every layer ABOVE a changed one: with Whisper
    tiny.en at the bottom of 3 GB of models, its pin change re-unpacked all of them (32 s per image, measured
    in bench/). Largest at the bottom minimises the bytes unpacked again on average; big files, which change
    least, sink; unlocked models (unpinned, so the likeliest to change) go on top.
    """

    def key(indexed: tuple[int, Layer]) -> tuple[int, int, int]:
        index, layer = indexed
        return (0, -layer.size, index) if layer.locked else (1, 0, index)

    return [layer for _, layer in sorted(enumerate(layers), key=key)]


def _rel(image_path: str) -> str:
    return image_path.lstrip("/")
