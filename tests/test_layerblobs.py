"""The Docker tests' evidence readers, without an engine: tests/layerblobs.py, tests/filereads.py and the
registry log of tests/localregistry.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from filereads import ReadWatch
from layerblobs import CACHE_CONFIG, UNCOMPRESSED, cache_blob_of, cache_layers, layer_content
from localregistry import Registry

pytestmark = pytest.mark.unit

DIFF = "sha256:" + "d" * 64
GZIP_BLOB = "sha256:" + "b" * 64
OTHER = "sha256:" + "0" * 64
CONFIG = {
    "layers": [
        {"blob": OTHER, "annotations": {UNCOMPRESSED: OTHER}},
        {"blob": GZIP_BLOB, "parent": 0, "annotations": {UNCOMPRESSED: DIFF}},
    ],
    "records": [{"digest": "sha256:" + "e" * 64, "layers": [{"layer": 1}]}],
}


def test_the_cache_config_is_found_as_gha_local_and_registry_store_it():
    blobs = {
        "sha256:config": CONFIG,
        # local: index.json -> the cache's index, whose entries are the layers and the config
        "sha256:list": {"manifests": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": OTHER},
                                      {"mediaType": CACHE_CONFIG, "digest": "sha256:config"}]},
    }  # fmt: skip
    local = {"manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:list"}]}
    registry = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": CACHE_CONFIG, "digest": "sha256:config"}, "layers": []}  # fmt: skip
    for document in (CONFIG, local, registry):
        assert cache_layers(document, blobs.__getitem__) == CONFIG["layers"]
    assert cache_layers({"manifests": []}, blobs.__getitem__) == []


def test_a_layers_blob_is_found_by_its_diff_id():
    assert cache_blob_of(CONFIG["layers"], DIFF) == GZIP_BLOB
    assert cache_blob_of(CONFIG["layers"], OTHER) == OTHER  # uncompressed: the blob is the diff
    assert cache_blob_of(CONFIG["layers"], "sha256:" + "f" * 64) is None


def test_the_content_store_listing_is_read_by_digest_and_by_label(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    listing = (
        "DIGEST\tSIZE\tAGE\t\tLABELS\n"
        f"{GZIP_BLOB}\t81MB\tAbout a minute\t{UNCOMPRESSED}={DIFF},containerd.io/gc.ref=x\n"
        f"{OTHER}\t399B\t2 hours\t\n"
    )

    def run(argv, **kwargs):
        if argv[:2] == ["docker", "info"]:
            info = {"Address": "/run/c.sock", "Namespaces": {"Containers": "moby"}}
            return subprocess.CompletedProcess(argv, 0, json.dumps(info), "")
        assert argv[:5] == ["ctr", "--address", "/run/c.sock", "--namespace", "moby"], argv
        return subprocess.CompletedProcess(argv, 0, listing, "")

    assert layer_content([DIFF], run=run) == {GZIP_BLOB}
    assert layer_content([OTHER], run=run) == {OTHER}
    assert layer_content(["sha256:" + "f" * 64], run=run) == set()


def test_a_read_is_seen_an_open_alone_is_not(tmp_path):
    for name in ("read", "opened", "untouched"):
        (tmp_path / name).write_bytes(b"data")
    with ReadWatch(tmp_path) as watch:
        subprocess.run([sys.executable, "-c", f"open({str(tmp_path / 'read')!r}, 'rb').read()"], check=True)
        (tmp_path / "opened").open("rb").close()
    assert watch.read == {"read"}


def test_the_registry_log_counts_every_kind_of_upload_and_no_mount(tmp_path):
    """A push that uploads 0 model blobs must not pass for lack of reading: a monolithic POST upload counts as
    one, a cross-repository mount does not."""
    lines = [
        ("PUT", "/v2/team/app/blobs/uploads/u1?_state=s&digest=sha256:aa", 201),  # ends a chunked upload
        ("POST", "/v2/team/app/blobs/uploads/?digest=sha256:bb", 201),  # monolithic
        ("POST", "/v2/team/app/blobs/uploads/?mount=sha256:cc&from=team/models", 201),  # mounted: no bytes sent
        ("POST", "/v2/team/app/blobs/uploads/", 202),  # an upload begins
        ("PUT", "/v2/team/app/manifests/v1", 201),
    ]
    registry = Registry(tmp_path)
    registry.log.write_text(
        "\n".join(
            json.dumps(
                {
                    "msg": "response completed",
                    "http.request.method": method,
                    "http.request.uri": uri,
                    "http.response.status": status,
                }
            )
            for method, uri, status in lines
        )  # fmt: skip
    )
    assert registry.uploads() == [("team/app", "sha256:aa"), ("team/app", "sha256:bb")]
