"""The benchmark's old layout (bench/oldlayout.py) and its contexts (bench/contexts.py), without an engine: each
generated copy leaves exactly one layer of the models image (the patterns evaluated as BuildKit evaluates
`COPY --exclude`), the Dockerfile differs from the project's only in the app stage's start, lock B."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import layerlocks
import pytest
from layerlocks import SPLIT, MiB, layer_tree, sha

from modelbake.image.layers import plan_layers
from modelbake.lockfile import Lock
from modelbake.manifest import load_manifest
from modelbake.paths import hub_repo_folder

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.contexts import LOCK_DROPS, without_packages  # noqa: E402
from bench.oldlayout import NEW_APP_START, app_copy_line, excludes, model_block, old_layout_dockerfile  # noqa: E402

pytestmark = pytest.mark.unit

MANIFEST = """
[models.whisper]
family = "whisper"
name = "tiny.en"
sha256 = "%(w)s"

[models.ner]
family = "spacy"
name = "en_tiny_ner"
version = "0.1.0"
sha256 = "%(s)s"

[models.bart]
family = "huggingface"
repo = "org/bart"
revision = "main"

[models.huge]
family = "huggingface"
repo = "org/huge"
revision = "main"

[profiles]
all = ["whisper", "ner", "bart", "huge"]
""" % {"w": "a" * 64, "s": "b" * 64}

FILES = {
    "whisper": [("tiny.en.pt", 75 * MiB, sha("whisper"))],
    "ner": [("en_tiny_ner-0.1.0-py3-none-any.whl", 100 * MiB, sha("ner"))],
    "bart": [
        ("config.json", 1_000, sha("bart config")),
        ("model-00001-of-00002.safetensors", 900 * MiB, sha("bart shard 1")),
        ("model-00002-of-00002.safetensors", 700 * MiB, sha("bart shard 2")),
        ("tokenizer.json", SPLIT, sha("bart tokenizer")),
    ],
    "huge": [("model.safetensors", 2**31 + 5, sha("huge weights"))],
}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(MANIFEST)
    return load_manifest(path)


def lock_of(manifest) -> Lock:
    return layerlocks.lock_of(manifest, FILES)


def excluded(path: str, patterns: list[str]) -> bool:
    """moby's patternmatcher: the last pattern that matches the path or one of its parents decides; `!` keeps."""
    out = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.removeprefix("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(_match(body, p) for p in prefixes):
            out = not negate
    return out


def _match(pattern: str, path: str) -> bool:
    p, s = pattern.split("/"), path.split("/")
    return len(p) == len(s) and all(fnmatch.fnmatchcase(b, a) for a, b in zip(p, s, strict=True))


def test_each_copy_leaves_exactly_its_layer_of_the_merged_models_image(manifest):
    lock = lock_of(manifest)
    layers = plan_layers(manifest.select("all"), lock, SPLIT)
    assert len(layers) == 7  # bart: two shards and the rest; huge: its 2 GiB file and the rest; whisper; ner
    trees = {layer.name: layer_tree(layer, lock) for layer in layers}
    merged = set().union(*trees.values())
    for layer in layers:
        patterns = excludes(layer, layers)
        kept = {path for path in merged if not excluded(path, patterns)}
        assert kept == trees[layer.name], (layer.name, patterns)
        assert (
            app_copy_line(layer, layers)
            == "COPY --link --from=models" + "".join(f" --exclude={p}" for p in patterns) + " / /"
        )
    shard = next(layer for layer in layers if layer.name == "bart:model-00002-of-00002.safetensors")
    patterns = excludes(shard, layers)
    hub = f"models/huggingface/hub/{hub_repo_folder('org/bart')}"
    start = patterns.index(f"{hub}/*")
    assert patterns[start : start + 4] == [f"{hub}/*", f"!{hub}/blobs", f"{hub}/blobs/*", f"!{shard.owns[0]}"]


def test_the_old_dockerfile_is_the_projects_with_the_app_stage_from_deps_and_the_model_block(manifest):
    lock = lock_of(manifest)
    layers = plan_layers(manifest.select("all"), lock, SPLIT)
    current = (REPO / "Dockerfile").read_text()
    text = old_layout_dockerfile(current, model_block(layers, "/models/spacy/en_tiny_ner"))
    head, _, app = text.partition("FROM deps AS app\n")
    assert head == current.partition(NEW_APP_START)[0]  # base, wheels, manifest, deps, models: the project's
    assert "COPY --link --from=base / /" not in app and "/opt/venv /opt/venv" not in app
    copies = [line for line in app.splitlines() if line.startswith("COPY --link --from=models")]
    assert copies == [app_copy_line(layer, layers) for layer in layers]  # bottom to top, as the models image
    assert "ENV MODELBAKE_SPACY_PATH=/models/spacy/en_tiny_ner" in app
    assert app.endswith(current.partition(NEW_APP_START)[2])  # the app's config and code: the project's
    with pytest.raises(RuntimeError, match="app stage no longer starts"):
        old_layout_dockerfile("FROM x AS app\n", "")


@pytest.mark.parametrize("lock", ["bump", "small"])
def test_the_other_locks_drop_whole_entries_and_nothing_else(lock):
    text = (REPO / "requirements" / "app.txt").read_text()
    smaller = without_packages(text, LOCK_DROPS[lock])
    names = {line.split("==")[0] for line in smaller.splitlines() if line[:1].isalnum()}
    before = {line.split("==")[0] for line in text.splitlines() if line[:1].isalnum()}
    assert before - names == set(LOCK_DROPS[lock])
    kept = [line for line in text.splitlines() if line not in smaller.splitlines()]
    assert kept and all(line[:1].isalnum() or line.startswith("    ") for line in kept)
    assert smaller.startswith(text.split("\n", 1)[0])  # the header stays
    with pytest.raises(RuntimeError, match="no entry for"):
        without_packages(text, ("no-such-package",))
