"""File layers (issue 13, item 1) without an engine: the layer plan, the app's exclude patterns (evaluated the way
BuildKit evaluates `COPY --exclude`), the fetch side's links and errors, and the generated Dockerfile text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import layerlocks
import pytest
from layerlocks import COMMIT, SPLIT, Files, MiB, layer_tree, sha

from modelbake.errors import LockError
from modelbake.filelayers import link_big_files, one_file, place_blob, without_big_files
from modelbake.image.dockerfile import LOCK_MOUNT, layer_copy_line, render_models_dockerfile
from modelbake.image.layers import DEFAULT_FILE_LAYERS_OVER, plan_layers
from modelbake.lockfile import FileRef, Lock, LockedModel, entry_json, write_lock
from modelbake.manifest import HuggingFaceSpec, load_manifest
from modelbake.paths import Layout, hub_repo_folder

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
# Two sharded repos share nothing; `bart-fork` holds bart's first shard too (a fork: same blob, other repo);
# `bart-again` is a second entry of bart's repo (same blobs: one layer); `huge` is big files only.
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

[models.bart-again]
family = "huggingface"
repo = "org/bart"
revision = "main"
include = ["*.json", "model-00001-of-00002.safetensors"]

[models.bart-fork]
family = "huggingface"
repo = "other/bart-fork"
revision = "main"

[models.huge]
family = "huggingface"
repo = "org/huge"
revision = "main"

[profiles]
all = ["whisper", "ner", "bart", "bart-fork", "huge"]
same-repo = ["bart", "bart-again"]
""" % {"w": "a" * 64, "s": "b" * 64}

FILES = {
    "whisper": [("tiny.en.pt", 75 * MiB, sha("whisper"))],
    "ner": [("en_tiny_ner-0.1.0-py3-none-any.whl", 100 * MiB, sha("ner"))],  # a wheel: never split
    "bart": [
        ("config.json", 1_000, sha("bart config")),
        ("model-00001-of-00002.safetensors", 900 * MiB, sha("bart shard 1")),
        ("model-00002-of-00002.safetensors", 700 * MiB, sha("bart shard 2")),
        ("model.safetensors.index.json", 30_000, sha("bart index")),
        ("tokenizer.json", SPLIT, sha("bart tokenizer")),  # exactly the threshold: stays in the rest
    ],
    "bart-again": [
        ("config.json", 1_000, sha("bart config")),
        ("model-00001-of-00002.safetensors", 900 * MiB, sha("bart shard 1")),
    ],
    "bart-fork": [
        ("config.json", 1_100, sha("fork config")),
        ("model-00001-of-00002.safetensors", 900 * MiB, sha("bart shard 1")),
        ("model-00002-of-00002.safetensors", 710 * MiB, sha("fork shard 2")),
    ],
    "huge": [("model.safetensors", 2**31 + 5, sha("huge weights"))],
}


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "models.toml"
    path.write_text(MANIFEST)
    return load_manifest(path)


def lock_of(manifest, files: Files = FILES, commits: dict[str, str] | None = None) -> Lock:
    return layerlocks.lock_of(manifest, files, commits)


def hub(repo: str) -> str:
    return f"models/huggingface/hub/{hub_repo_folder(repo)}"


# --- the plan ---------------------------------------------------------------------------------------------


def test_one_layer_per_big_file_then_the_rest_largest_first(manifest):
    layers = plan_layers(manifest.select("all"), lock_of(manifest), SPLIT)
    labels = [layer.name for layer in layers]
    assert labels == [
        "huge:model.safetensors",
        "bart:model-00001-of-00002.safetensors",  # one layer, though bart-fork holds the same bytes...
        "bart-fork:model-00001-of-00002.safetensors",  # ...in another repo: its own path, its own layer
        "bart-fork:model-00002-of-00002.safetensors",
        "bart:model-00002-of-00002.safetensors",
        "ner",
        "whisper",
        "bart",  # the rest: configs, index, tokenizer (64 MiB exactly is not over), links, refs
        "bart-fork",
        "huge",  # links and refs only
    ]
    by = {layer.name: layer for layer in layers}
    shard = by["bart:model-00001-of-00002.safetensors"]
    assert shard.owns == (f"{hub('org/bart')}/blobs/{sha('bart shard 1')}",)
    assert shard.stage == f"file-{sha('bart shard 1')[:16]}-org--bart" and shard.root == f"/out/{shard.stage}"
    fork = by["bart-fork:model-00001-of-00002.safetensors"]
    assert fork.stage != shard.stage and fork.root != shard.root  # same blob, two repos: two stages
    rest = by["bart"]
    assert rest.owns == (hub("org/bart"),) and rest.stage == "fetch-bart" and rest.root == "/out/bart"
    assert rest.holes == tuple(f"{hub('org/bart')}/blobs/{sha(f'bart shard {n}')}" for n in (1, 2))
    assert rest.size == 1_000 + 30_000 + SPLIT
    assert by["huge"].size == 0 and by["huge"].holes == (f"{hub('org/huge')}/blobs/{sha('huge weights')}",)
    assert by["ner"].file is None and by["whisper"].file is None  # only Hugging Face files are split
    assert len({layer.stage for layer in layers}) == len(layers)  # every stage name once


def test_off_and_unlocked_mean_one_layer_per_model(manifest):
    off = plan_layers(manifest.select("all"), lock_of(manifest), None)
    assert [layer.name for layer in off] == ["huge", "bart", "bart-fork", "ner", "whisper"]
    assert all(layer.file is None and layer.holes == () for layer in off)
    unlocked = plan_layers(manifest.select("all"), None, SPLIT)
    assert [layer.name for layer in unlocked] == ["whisper", "ner", "bart", "bart-fork", "huge"]  # manifest order
    assert not any(layer.locked for layer in unlocked)


def test_a_blob_two_entries_of_one_repo_share_is_one_layer(manifest):
    layers = plan_layers(manifest.select("same-repo"), lock_of(manifest), SPLIT)
    files = [layer for layer in layers if layer.file is not None]
    assert [layer.name for layer in files] == [
        "bart:model-00001-of-00002.safetensors",
        "bart:model-00002-of-00002.safetensors",
    ]
    again = next(layer for layer in layers if layer.name == "bart-again")
    assert again.holes == (files[0].owns[0],)  # its shard is a hole there too: the shared layer fills it
    text = render_models_dockerfile(manifest, lock_of(manifest), "same-repo", SPLIT)
    assert text.count(f"FROM fetch AS {files[0].stage}\n") == 1
    # the second entry leaves its (shared) big file out of its own step as well
    step = text.split("FROM fetch AS fetch-bart-again\n")[1].split("ENTRY\n")[0]
    assert f"--entry - --file-layers-over-bytes {SPLIT} --dest /models" in step


# --- the merged tree ---------------------------------------------------------------------------------------


def test_the_layers_together_are_the_models_tree_each_file_once(manifest):
    """The models image is its layers stacked: each path of the merged tree is in exactly one layer (a big file
    in its own, never also in the rest of its model), so the app FROM it sees every model whole."""
    lock = lock_of(manifest)
    layers = plan_layers(manifest.select("all"), lock, SPLIT)
    trees = [layer_tree(layer, lock) for layer in layers]
    merged = set().union(*trees)
    assert sum(len(tree) for tree in trees) == len(merged)
    shard = next(layer for layer in layers if layer.name == "bart:model-00002-of-00002.safetensors")
    assert layer_tree(shard, lock) == {shard.owns[0]}


# --- the fetch side ----------------------------------------------------------------------------------------


def test_without_big_files_keeps_small_files_and_leaves_other_families_alone(manifest):
    lock = lock_of(manifest)
    small, big = without_big_files(lock.models["bart"], SPLIT)
    assert [f.path for f in small.files] == ["config.json", "model.safetensors.index.json", "tokenizer.json"]
    assert [f.path for f in big] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert small.revision == COMMIT and small.id == "bart"
    empty, only = without_big_files(lock.models["huge"], SPLIT)
    assert empty.files == () and [f.path for f in only] == ["model.safetensors"]
    for model_id in ("whisper", "ner"):
        assert without_big_files(lock.models[model_id], 1) == (lock.models[model_id], [])


def test_links_point_at_blobs_and_refs_resolve_main_for_a_model_of_big_files_only(manifest, tmp_path):
    lock = lock_of(manifest)
    layout = Layout.dest(tmp_path / "dest")
    entry, big = without_big_files(lock.models["huge"], SPLIT)
    link_big_files(layout, entry, big)
    spec = entry.to_spec()
    assert isinstance(spec, HuggingFaceSpec)
    link = layout.hf_snapshot_dir(spec, COMMIT) / "model.safetensors"
    assert os.readlink(link) == f"../../blobs/{sha('huge weights')}"  # dangling here: its own layer fills it
    assert layout.hf_ref_file(spec, "main").read_text() == COMMIT  # from_pretrained(repo) finds `main`
    # the blob arrives (as the file layer puts it there): the link resolves
    blob = layout.hf_blob_file(spec, sha("huge weights"))
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"w")
    assert link.read_bytes() == b"w"


def test_a_file_fetched_outside_lfs_is_moved_to_its_sha256_blob(manifest, tmp_path):
    """huggingface_hub names a non-LFS file's blob by its git blob id; the file layer holds `blobs/<sha256>`."""
    layout = Layout.dest(tmp_path / "dest")
    entry = lock_of(manifest).models["bart"]
    one = LockedModel(entry.id, entry.family, entry.spec, entry.revision, (entry.files[4],))  # tokenizer.json
    spec = one.to_spec()
    assert isinstance(spec, HuggingFaceSpec)
    git_blob = layout.hf_repo_dir(spec) / "blobs" / ("e" * 40)
    git_blob.parent.mkdir(parents=True)
    git_blob.write_bytes(b"tok")
    link = layout.hf_snapshot_dir(spec, COMMIT) / "tokenizer.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(git_blob, link.parent))
    blob = place_blob(layout, one)
    assert blob == layout.hf_blob_file(spec, sha("bart tokenizer")) and blob.read_bytes() == b"tok"
    assert not git_blob.exists() and os.readlink(link) == f"../../blobs/{sha('bart tokenizer')}"
    assert place_blob(layout, one) == blob  # again: nothing to do


def test_one_file_takes_the_locked_revision_and_fails_in_one_line(manifest, tmp_path):
    lock = lock_of(manifest)
    path = tmp_path / "models.lock"
    write_lock(lock, path)
    ref = FileRef("bart", "org/bart", "model-00002-of-00002.safetensors", sha("bart shard 2"), 700 * MiB)
    entry = one_file(ref, path)
    assert entry.revision == COMMIT and [f.path for f in entry.files] == [ref.path]
    fix = "--secret id=lock,src=models.lock"
    cases = {
        "no lock": (ref, tmp_path / "missing.lock", "no lock at"),
        "other bytes": (FileRef("bart", "org/bart", ref.path, "f" * 64, 1), path, "is not in the lock"),
        "unknown model": (FileRef("gone", "org/gone", ref.path, ref.sha256, 1), path, "is not in the lock"),
    }
    for name, (bad, where, words) in cases.items():
        with pytest.raises(LockError) as info:
            one_file(bad, where)
        message = info.value.message
        assert "\n" not in message and info.value.hint is None, name
        assert message.startswith(f"model {bad.model_id}: {bad.path} (sha256 {bad.sha256[:12]}): "), name
        assert words.replace("is not", "not") in message and fix in message, (name, message)
    with pytest.raises(Exception, match="not a file reference"):
        FileRef.from_json('{"model": "bart"}', "<stdin>")


def test_the_file_step_without_the_lock_secret_is_one_error_line(tmp_path):
    """`docker build -f Dockerfile.models` without `--secret id=lock,...`: the step says what to pass."""
    ref = '{"model": "bart", "path": "model.safetensors", "repo": "org/bart", "sha256": "%s", "size": 3}' % ("f" * 64)
    cmd = [sys.executable, "-m", "modelbake.fetch_entry", "--file", "-", "--lock", str(tmp_path / "none")]
    proc = subprocess.run(
        [*cmd, "--dest", str(tmp_path / "d")], input=ref, capture_output=True, text=True, env={**os.environ}
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: model bart: model.safetensors (sha256 {'f' * 12}): no lock at {tmp_path / 'none'} to find its "
        "revision: pass the models.lock this Dockerfile was generated from as a build secret: "
        "--secret id=lock,src=models.lock"
    ]


# --- the generated Dockerfiles -----------------------------------------------------------------------------


def test_dockerfile_text_of_a_split_model(manifest):
    lock = lock_of(manifest)
    text = render_models_dockerfile(manifest, lock, "all", SPLIT)
    layers = plan_layers(manifest.select("all"), lock, SPLIT)
    shard = next(layer for layer in layers if layer.name == "bart:model-00001-of-00002.safetensors")
    stage = text.split(f"FROM fetch AS {shard.stage}\n")[1].split("\n\n")[0]
    blob = f"models/huggingface/hub/models--org--bart/blobs/{sha('bart shard 1')}"
    assert stage.splitlines() == [
        "ARG SOURCE_DATE_EPOCH=0",
        "RUN --mount=type=secret,id=ca,target=/etc/ssl/certs/ca-certificates.crt,required=false \\",
        "    --mount=type=secret,id=mirrors,target=/run/secrets/mirrors,required=false \\",
        "    --mount=type=secret,id=hf_token,target=/run/secrets/hf_token,required=false \\",
        f"    {LOCK_MOUNT} \\",
        "    python -m modelbake.fetch_entry --file - --lock /run/secrets/lock --dest /models <<'FILE' "
        f"&& mkdir -p {shard.root}/{blob.rsplit('/', 1)[0]} && mv /{blob} {shard.root}/{blob} "
        f'&& chmod -R a+rX,go-w {shard.root} && find {shard.root} -exec touch -h -d "@$SOURCE_DATE_EPOCH" {{}} +',
        # the step's key: the file alone (no revision: that comes from the lock secret)
        '{"model": "bart", "path": "model-00001-of-00002.safetensors", "repo": "org/bart", '
        f'"sha256": "{sha("bart shard 1")}", "size": {900 * MiB}}}',
        "FILE",
    ]
    # the model's own step: its whole lock entry (the key), fetching all but the big files
    model = text.split("FROM fetch AS fetch-bart\n")[1].split("\nENTRY\n")[0]
    assert f"fetch_entry --entry - --file-layers-over-bytes {SPLIT} --dest /models <<'ENTRY'" in model
    assert entry_json(lock.models["bart"]) in model and "id=lock" not in model
    assert "# Its 2 file(s) over 67,108,864 bytes are layers of their own (file-* stages)." in text
    huge = text.split("FROM fetch AS fetch-huge\n")[1].split("\nENTRY\n")[0]
    assert "--file-layers-over-bytes" in huge
    assert "--file-layers-over-bytes" not in text.split("FROM fetch AS fetch-whisper\n")[1].split("\nENTRY\n")[0]
    copies = [line for line in text.splitlines() if line.startswith("COPY --link --from=")]
    assert copies == [layer_copy_line(layer) for layer in layers]
    # one stage per name; the default threshold is the plan's
    stages = [line.split(" AS ")[1] for line in text.splitlines() if line.startswith("FROM fetch AS ")]
    assert len(stages) == len(set(stages)) == len(layers)
    assert render_models_dockerfile(manifest, lock, "all") == render_models_dockerfile(
        manifest, lock, "all", DEFAULT_FILE_LAYERS_OVER
    )


def test_a_config_only_revision_bump_changes_the_model_step_and_no_file_step(manifest):
    """The contract behind "fetches only the small files, keeps every big layer": only `fetch-bart` changes."""
    before = render_models_dockerfile(manifest, lock_of(manifest), "all", SPLIT)
    bumped = {k: list(v) for k, v in FILES.items()}
    bumped["bart"][0] = ("config.json", 1_002, sha("bart config, new"))
    after = render_models_dockerfile(manifest, lock_of(manifest, bumped, {"bart": "d" * 40}), "all", SPLIT)

    def stages(text: str) -> dict[str, str]:
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        return {chunk.split()[2]: chunk for chunk in body.split("\nFROM ")[1:] if chunk.startswith("fetch AS ")}

    old, new = stages(before), stages(after)
    assert old.keys() == new.keys()
    assert [name for name in old if old[name] != new[name]] == ["fetch-bart"]
