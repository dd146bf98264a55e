"""The benchmark's measurements around the engine, on stand-ins: bytes unpacked on disk (a snapshot directory
tree laid out as containerd's overlayfs snapshotter does), the registry's blob bytes (its JSON request log),
and which build records are the run's own (`docker buildx du --format json` records)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.client import blob_bytes_sent  # noqa: E402
from bench.diskuse import added_since, disk_state, is_model_path  # noqa: E402
from bench.enginecache import own_records  # noqa: E402

pytestmark = pytest.mark.unit
ROOTS = ("models/whisper/tiny.en.pt", "models/huggingface/hub/models--facebook--bart-base")


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_model_paths_are_the_roots_and_what_is_inside_them():
    assert is_model_path("models/whisper/tiny.en.pt", ROOTS)
    assert is_model_path("models/huggingface/hub/models--facebook--bart-base/blobs/abc", ROOTS)
    assert not is_model_path("models/whisper/tiny.en.pt.bak", ROOTS)
    assert not is_model_path("models/huggingface/hub/models--facebook--bart-base-v2/blobs/abc", ROOTS)
    assert not is_model_path("models/whisper/tiny-random.en.pt", ROOTS)  # another test's tiny model


def test_added_counts_new_snapshots_only_each_inode_once_and_only_new_model_inodes(tmp_path):
    snaps = tmp_path / "snapshots"
    old_model = write(snaps / "1" / "fs" / "models" / "whisper" / "tiny.en.pt", 700)
    write(snaps / "2" / "fs" / "opt" / "venv" / "lib.so", 50)
    before = disk_state(ROOTS, snaps)
    assert before.model_bytes == 700 and before.snapshots == {"1", "2"}
    blob = ROOTS[1] + "/blobs/abc"
    write(snaps / "3" / "fs" / blob, 300)  # a new model layer
    os.link(snaps / "3" / "fs" / blob, write(snaps / "4" / "fs" / "keep", 0).parent / "linked")  # hard link: once
    write(snaps / "4" / "fs" / "models" / "whisper" / "tiny-random.en.pt", 9)  # not the benchmark's model
    (snaps / "5" / "fs" / "models" / "whisper").mkdir(parents=True)
    os.link(old_model, snaps / "5" / "fs" / "models" / "whisper" / "tiny.en.pt")  # an old model file linked
    write(snaps / "1" / "fs" / "later", 5000)  # an old snapshot that grows is not "added"
    added = added_since(before, ROOTS, snaps)
    assert added.snapshots == 3
    assert added.bytes == 300 + 9 + 700  # every file of snapshots 3, 4, 5, each inode once
    assert added.model_bytes == 300  # the new inode only: the linked old model file is no new byte on disk
    now = disk_state(ROOTS, snaps)
    assert now.model_bytes == 1000 and now.model_bytes_not_in(before) == 300


def test_the_registrys_blob_bytes_come_from_its_request_log(tmp_path):
    log = tmp_path / "registry.log"

    def line(method: str, uri: str, status: int, written: int) -> str:
        return json.dumps(
            {
                "msg": "response completed",
                "http.request.method": method,
                "http.request.uri": uri,
                "http.response.status": status,
                "http.response.written": written,
            }
        )

    log.write_text(line("GET", "/v2/bench/app/blobs/sha256:aa", 200, 100) + "\n")
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write(line("GET", "/v2/bench/app/blobs/sha256:bb", 200, 2000) + "\n")
        f.write(line("GET", "/v2/bench/app/blobs/sha256:cc", 206, 30) + "\n")
        f.write(line("HEAD", "/v2/bench/app/blobs/sha256:dd", 200, 0) + "\n")
        f.write(line("GET", "/v2/bench/app/manifests/v1", 200, 900) + "\n")  # a manifest, not a blob
        f.write(line("GET", "/v2/bench/app/blobs/sha256:ee", 404, 50) + "\n")
        f.write("not json\n")
    registry = SimpleNamespace(log=log)
    assert blob_bytes_sent(registry, offset) == 2030
    assert blob_bytes_sent(registry, 0) == 2130


def test_own_records_are_the_base_images_and_models_records_and_their_descendants_since_the_start():
    at, before = "2026-12-08 01:00:00.5 +0000 UTC", "2026-12-08 00:00:00 +0000 UTC"
    sha = "ab" * 32  # a file of the run's own models
    records = [
        {"ID": "py", "Description": "", "CreatedAt": before, "Parents": []},  # the shared base, imported long ago
        {"ID": "base", "Description": "", "CreatedAt": at, "Parents": []},  # the run's imported base image
        {"ID": "deps", "Description": "[app deps 2/2] RUN pip install", "CreatedAt": at, "Parents": ["base"]},
        {"ID": "fetch", "Description": f"mount / from exec ... fetch_entry {sha}", "CreatedAt": at, "Parents": ["x"]},
        {"ID": "layer", "Description": "[models 2/4] COPY --link --from=fetch-big /out/big/ /", "CreatedAt": at},
        {"ID": "merge", "Description": "[app 3/9] LINK COPY --link", "CreatedAt": at, "Parents": ["layer", "q"]},
        {"ID": "theirs", "Description": "[app deps 2/2] RUN pip install", "CreatedAt": at, "Parents": ["py"]},
        {"ID": "their-base", "Description": "mount / from exec echo 1 > /etc/f", "CreatedAt": at, "Parents": ["py"]},
        {"ID": "old", "Description": "[app app 4/9] RUN", "CreatedAt": before, "Parents": ["deps"]},
        {"ID": "x", "Description": "[fetch 4/4] LINK COPY --link src/", "CreatedAt": at, "Parents": ["their-base"]},
    ]
    since = datetime(2026, 12, 8, 0, 30, tzinfo=UTC)
    assert own_records(records, since, (sha, "/out/big/")) == {"base", "deps", "fetch", "layer", "merge"}
    assert own_records(records, since) == {"base", "deps"}  # without the names: the base image's line only
    # A `COPY --link` of the venv says nothing of whose it is: the run's when every record built on it is.
    venv = {"ID": "venv", "Description": "[app 2/6] COPY --link --from=deps /opt/venv /opt/venv", "CreatedAt": at}
    link = {"ID": "link", "Description": "[app 2/6] LINK COPY --link", "CreatedAt": at, "Parents": ["layer", "venv"]}
    shared = {"ID": "shared", "Description": "[app 2/6] COPY --link --from=deps /opt/venv", "CreatedAt": at}
    ours = {"ID": "l1", "Description": "[app 2/6] LINK", "CreatedAt": at, "Parents": ["layer", "shared"]}
    theirs = {"ID": "l2", "Description": "[app 2/6] LINK", "CreatedAt": at, "Parents": ["their-base", "shared"]}
    found = own_records([*records, venv, link, shared, ours, theirs], since, (sha, "/out/big/"))
    assert {"venv", "link", "l1"} <= found and not {"shared", "l2", "theirs", "their-base"} & found
