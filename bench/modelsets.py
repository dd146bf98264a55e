"""The models `python -m bench` measures: a mirror tree, its manifest, the profile's ids, its files, and the
one Whisper pin that changes (real-size models for results, the tiny ones for developing the benchmark).

Why apart from the scenarios: the same description serves the builds (bench/scenarios.py), the tar baseline
and the results file, and it needs no engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

PROFILE = "bench"


@dataclass(frozen=True)
class ModelFile:
    model_id: str
    path: str  # relative to the model tree's root
    size: int


@dataclass
class ModelSet:
    """The models measured: a mirror tree, its manifest, the profile's ids, and the pin that changes."""

    label: str
    root: Path
    manifest: Path
    ids: list[str]
    files: list[ModelFile]
    spacy_wheel: Path
    changed: str  # model id whose pin changes (Whisper tiny.en)
    old_sha: str
    new_sha: str

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files if f.model_id in self.ids)

    def model_bytes(self, model_id: str) -> int:
        return sum(f.size for f in self.files if f.model_id == model_id)

    def tar_tree(self) -> SimpleNamespace:
        """What bench.tar_baseline.tar_baseline reads (root, profiles, files)."""
        return SimpleNamespace(root=self.root, profiles={PROFILE: self.ids}, files=self.files)


def realsize_models(root: Path) -> ModelSet:
    """bench/realsize.py's tree, the union of the test and prod profiles, and a second tiny.en checkpoint."""
    from bench.realsize import PROFILES, add_whisper_variant, build_realsize_tree

    tree = build_realsize_tree(root)
    wanted = set(PROFILES["test"]) | set(PROFILES["prod"])
    ids = list(dict.fromkeys(f.model_id for f in tree.files if f.model_id in wanted))
    files = [ModelFile(f.model_id, f.path, f.size) for f in tree.files]
    new = add_whisper_variant(tree.root, "whisper-tiny-en")
    label = "bench/realsize.py: the union of the `test` and `prod` profiles"
    old = tree.whisper_sha256["tiny.en"]
    return ModelSet(label, tree.root, tree.manifest, ids, files, tree.spacy_wheel, "whisper-tiny-en", old, new)


def tiny_models(root: Path) -> ModelSet:
    """modelbake's tiny models (a few MB): for developing the benchmark, not for results."""
    from testkit.tinymodels import build_mirror_tree
    from testkit.tinymodels.mirrorset import MODEL_KEYS, add_whisper_variant

    tiny = build_mirror_tree(root)
    files = []
    for family, model_id in (("whisper", "whisper-tiny"), ("spacy", "spacy-ner")):
        files += [
            ModelFile(model_id, p.relative_to(tiny.root).as_posix(), p.stat().st_size)
            for p in sorted((tiny.root / family).glob("*"))
            if p.is_file()
        ]
    for model_id, snapshot in (("bart-map", tiny.bart_snapshot), ("led-reduce", tiny.led_snapshot)):
        files += [
            ModelFile(model_id, p.relative_to(tiny.root).as_posix(), p.stat().st_size)
            for p in sorted(snapshot.iterdir())
        ]
    new = add_whisper_variant(tiny.root, seed=1)
    return ModelSet(
        "tiny models (development only)",
        tiny.root,
        tiny.manifest,
        list(MODEL_KEYS),
        files,
        tiny.spacy_wheel,
        "whisper-tiny",
        tiny.whisper_sha256,
        new,
    )
