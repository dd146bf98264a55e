"""The mirror against the real clients: huggingface_hub's own download code (in a subprocess, since it reads
HF_ENDPOINT at import time) and plain httpx for Whisper/spaCy URLs, Range, faults and the request log."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import modelbake.mirror.hubcache as hubcache
import modelbake.mirror.hubroutes as hubroutes
from modelbake.errors import ModelbakeError, UsageError
from modelbake.httpserve import RangeNotSatisfiable, parse_range
from modelbake.mirror import MirrorServer
from modelbake.mirror.hubcache import DigestCache, is_lfs, lfs_pointer

pytestmark = [pytest.mark.unit, pytest.mark.loopback]  # loopback: the tests talk to the mirror they start

C_MAIN = "1" * 40
C_PR = "2" * 40
C_GPT2 = "3" * 40


@dataclass
class Fixture:
    root: Path
    tiny: dict[str, bytes] = field(default_factory=dict)  # org/tiny @ main
    tiny_pr: dict[str, bytes] = field(default_factory=dict)  # org/tiny @ refs/pr/1
    gpt2: dict[str, bytes] = field(default_factory=dict)  # gpt2 (no org) @ C_GPT2, no refs
    whisper: bytes = b""
    whisper_nested: bytes = b""
    wheel: bytes = b""
    wheel_flat: bytes = b""


def git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _snapshot(
    repo: Path,
    commit: str,
    files: dict[str, bytes],
    lfs_names: set[str] = frozenset(),
    git_names: set[str] = frozenset(),
) -> None:
    """Write a snapshot like huggingface_hub does: symlinks into blobs/ named by the ETag (sha256 for LFS files,
    git blob id otherwise), or plain files like a hand-made tree."""
    snap = repo / "snapshots" / commit
    for rel, data in files.items():
        target = snap / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel in lfs_names | git_names:
            blob = repo / "blobs" / (hashlib.sha256(data).hexdigest() if rel in lfs_names else git_blob(data))
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            target.symlink_to(os.path.relpath(blob, target.parent))
        else:
            target.write_bytes(data)


def build_fixture(root: Path) -> Fixture:
    fx = Fixture(root)
    hub = root / "huggingface" / "hub"
    tiny = hub / "models--org--tiny"
    fx.tiny = {
        "config.json": b'{"model_type": "tiny"}\n',
        "sub/vocab.txt": b"hello\nworld\n",
        "model.safetensors": os.urandom(300_000),
    }
    _snapshot(tiny, C_MAIN, fx.tiny, {"model.safetensors"})
    fx.tiny_pr = {"config.json": b'{"model_type": "tiny", "pr": 1}\n'}
    _snapshot(tiny, C_PR, fx.tiny_pr)
    (tiny / "refs" / "refs" / "pr").mkdir(parents=True)
    (tiny / "refs" / "main").write_text(C_MAIN)
    (tiny / "refs" / "refs" / "pr" / "1").write_text(C_PR + "\n")
    # As the Hub stored them, whatever the suffix: tokenizer.json in LFS, weights.bin in plain git.
    fx.gpt2 = {"config.json": b'{"n_layer": 1}', "tokenizer.json": b"{}", "weights.bin": b"\0" * 10}
    _snapshot(hub / "models--gpt2", C_GPT2, fx.gpt2, {"tokenizer.json"}, {"weights.bin"})

    _snapshot(hub / "datasets--org--data", C_GPT2, {"data.csv": b"a,b\n1,2\n"})
    (hub / "datasets--org--data" / "refs").mkdir()
    (hub / "datasets--org--data" / "refs" / "main").write_text(C_GPT2)

    fx.whisper = os.urandom(100_001)
    (root / "whisper").mkdir()
    (root / "whisper" / "tiny.en.pt").write_bytes(fx.whisper)
    fx.whisper_nested = os.urandom(5_000)
    nested = root / "whisper" / hashlib.sha256(fx.whisper_nested).hexdigest()
    nested.mkdir()
    (nested / "base.pt").write_bytes(fx.whisper_nested)

    fx.wheel, fx.wheel_flat = os.urandom(4_000), os.urandom(3_000)
    (root / "spacy" / "en_tiny-3.8.0").mkdir(parents=True)
    (root / "spacy" / "en_tiny-3.8.0" / "en_tiny-3.8.0-py3-none-any.whl").write_bytes(fx.wheel)
    (root / "spacy" / "xx_flat-1.0.0-py3-none-any.whl").write_bytes(fx.wheel_flat)
    return fx


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return build_fixture(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def _server(fx: Fixture):
    with MirrorServer(fx.root) as srv:
        yield srv


@pytest.fixture
def server(_server: MirrorServer) -> MirrorServer:
    _server.faults.clear()
    _server.clear_requests()
    return _server


@pytest.fixture
def client(server: MirrorServer):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def run_hf(server: MirrorServer, tmp_path: Path, code: str, **values: str) -> dict:
    """Run huggingface_hub's own code against the mirror; the snippet fills `out`, returned as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=server.mirrors["huggingface"],
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_CACHE=str(tmp_path / "hf_cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        MIRROR_TEST_VALUES=json.dumps(values),
    )
    prelude = textwrap.dedent(
        """
        import hashlib, json, os
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.errors import (EntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
        def digests(folder):
            return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in sorted(Path(folder).rglob("*")) if p.is_file()}
        def error_of(fn, *args, **kwargs):
            try:
                fn(*args, **kwargs)
            except Exception as e:
                return type(e).__name__, isinstance(e, (EntryNotFoundError, RepositoryNotFoundError,
                                                        RevisionNotFoundError))
            return None
        out = {}
        V = json.loads(os.environ["MIRROR_TEST_VALUES"])
        """
    )
    epilogue = "\nprint('@@' + json.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code) + epilogue],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.rsplit("@@", 1)[1])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Hugging Face, through huggingface_hub itself -----------------------------------------------------------


def test_snapshot_download_by_branch_and_by_commit(server: MirrorServer, fx: Fixture, tmp_path: Path) -> None:
    out = run_hf(
        server,
        tmp_path,
        """
        out["main"] = digests(snapshot_download("org/tiny", revision="main"))
        out["gpt2"] = digests(snapshot_download("gpt2", revision=V["gpt2"]))
        out["pr"] = digests(snapshot_download("org/tiny", revision="refs/pr/1"))
        cache = Path(os.environ["HF_HUB_CACHE"])
        out["ref"] = (cache / "models--org--tiny" / "refs" / "main").read_text()
        out["blobs"] = sorted(p.name for p in (cache / "models--org--tiny" / "blobs").iterdir())
    """,
        gpt2=C_GPT2,
    )
    assert out["main"] == {k: sha(v) for k, v in fx.tiny.items()}
    assert out["gpt2"] == {k: sha(v) for k, v in fx.gpt2.items()}
    assert out["pr"] == {k: sha(v) for k, v in fx.tiny_pr.items()}
    assert out["ref"] == C_MAIN
    # Blobs are named by ETag: sha256 for the LFS file, git blob id for the others (as with the Hub).
    small = [v for k, v in fx.tiny.items() if k != "model.safetensors"] + list(fx.tiny_pr.values())
    expected_blobs = {git_blob(v) for v in small} | {sha(fx.tiny["model.safetensors"])}
    assert set(out["blobs"]) == expected_blobs
    # A commit sha skips the revision call; a URL-encoded branch name resolves.
    assert server.requests_for("/api/models/org/tiny/revision/main")
    assert not server.requests_for("/api/models/gpt2/revision/")
    assert server.requests_for("/revision/refs%2Fpr%2F1")
    heads = [r for r in server.requests_for("/resolve/") if r.method == "HEAD"]
    assert heads and all(r.status == 200 and r.bytes_sent == 0 for r in heads)


def test_list_repo_tree_model_info_and_pagination(
    server: MirrorServer, fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hubroutes, "TREE_PAGE", 2)  # 4 entries -> 2 pages, followed through `Link`
    out = run_hf(
        server,
        tmp_path,
        """
        api = HfApi()
        def entries(**kw):
            return [{"path": e.path, "kind": type(e).__name__, "blob_id": getattr(e, "blob_id", None),
                     "size": getattr(e, "size", None),
                     "lfs": e.lfs.__dict__ if getattr(e, "lfs", None) else None}
                    for e in api.list_repo_tree("org/tiny", **kw)]
        out["recursive"] = entries(recursive=True)
        out["top"] = entries()
        out["sub"] = entries(path_in_repo="sub")
        out["expanded"] = [e.last_commit.oid for e in api.list_repo_tree("org/tiny", expand=True)]
        info = api.model_info("org/tiny", files_metadata=True)
        out["info"] = {"sha": info.sha, "id": info.id, "private": info.private,
                       "siblings": {s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings}}
        out["info_pr"] = api.model_info("org/tiny", revision="refs/pr/1").sha
        out["gpt2_by_commit"] = api.model_info("gpt2", revision=V["gpt2"]).sha
    """,
        gpt2=C_GPT2,
    )
    rec = {e["path"]: e for e in out["recursive"]}
    assert sorted(rec) == ["config.json", "model.safetensors", "sub", "sub/vocab.txt"]
    assert rec["sub"]["kind"] == "RepoFolder"
    weights = fx.tiny["model.safetensors"]
    lfs = rec["model.safetensors"]["lfs"]
    assert lfs["sha256"] == sha(weights) and lfs["size"] == len(weights)
    assert lfs["pointer_size"] == len(lfs_pointer(sha(weights), len(weights)))
    vocab = fx.tiny["sub/vocab.txt"]
    assert rec["sub/vocab.txt"]["blob_id"] == git_blob(vocab)
    assert rec["sub/vocab.txt"]["lfs"] is None and rec["sub/vocab.txt"]["size"] == len(vocab)
    assert [e["path"] for e in out["top"]] == ["config.json", "model.safetensors", "sub"]
    assert [e["path"] for e in out["sub"]] == ["sub/vocab.txt"]
    assert out["expanded"] == [C_MAIN] * 3
    assert out["info"]["sha"] == C_MAIN and out["info"]["id"] == "org/tiny" and out["info"]["private"] is False
    assert out["info"]["siblings"]["model.safetensors"] == [len(weights), sha(weights)]
    assert out["info_pr"] == C_PR and out["gpt2_by_commit"] == C_GPT2
    assert any("cursor=" in r.path for r in server.requests_for("/tree/main"))


def test_hub_errors_map_to_huggingface_hub_exceptions(server: MirrorServer, tmp_path: Path) -> None:
    out = run_hf(
        server,
        tmp_path,
        """
        api = HfApi()
        out["missing_file"] = error_of(hf_hub_download, "org/tiny", "nope.json")
        out["missing_repo"] = error_of(snapshot_download, "org/nope")
        out["missing_repo_no_org"] = error_of(api.model_info, "nope")
        out["missing_rev"] = error_of(snapshot_download, "org/tiny", revision="dev")
        out["missing_commit"] = error_of(hf_hub_download, "org/tiny", "config.json", revision="f" * 40)
        out["missing_dir"] = error_of(list, api.list_repo_tree("org/tiny", path_in_repo="additional_chat_templates"))
        out["exists"] = [api.file_exists("org/tiny", "config.json"), api.file_exists("org/tiny", "x.json"),
                         api.repo_exists("org/tiny"), api.repo_exists("org/nope")]
    """,
    )
    assert out["missing_file"] == ["RemoteEntryNotFoundError", True]
    assert out["missing_repo"] == ["RepositoryNotFoundError", True]
    assert out["missing_repo_no_org"] == ["RepositoryNotFoundError", True]
    assert out["missing_rev"] == ["RevisionNotFoundError", True]
    assert out["missing_commit"] == ["RevisionNotFoundError", True]
    assert out["missing_dir"] == ["RemoteEntryNotFoundError", True]
    assert out["exists"] == [True, False, True, False]
    missing = server.requests_for("nope.json")[0]
    assert missing.status == 404


def test_huggingface_hub_retries_and_resumes(server: MirrorServer, fx: Fixture, tmp_path: Path) -> None:
    server.faults.fail["/org/tiny/resolve/"] = 1  # first HEAD -> 503, retried
    server.faults.reset["model.safetensors"] = 1  # body cut halfway, resumed with Range
    out = run_hf(
        server,
        tmp_path,
        """
        import huggingface_hub.constants
        # http_get writes (and so can resume) only whole 10 MiB chunks; smaller ones keep the file small.
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = 64 * 1024
        out["files"] = digests(snapshot_download("org/tiny", revision="main", max_workers=1))
    """,
    )
    assert out["files"] == {k: sha(v) for k, v in fx.tiny.items()}
    first, second = [r for r in server.requests_for("model.safetensors") if r.method == "GET"]
    size = len(fx.tiny["model.safetensors"])
    assert (first.status, first.range, first.bytes_sent) == (200, None, size // 2)
    resumed_at = 2 * 64 * 1024  # the whole chunks received before the cut
    assert (second.status, second.range, second.bytes_sent) == (206, f"bytes={resumed_at}-", size - resumed_at)
    assert [r.status for r in server.requests_for("/resolve/")][0] == 503


def test_resolve_headers(client: httpx.Client, fx: Fixture) -> None:
    weights = fx.tiny["model.safetensors"]
    r = client.head("/huggingface/org/tiny/resolve/main/model.safetensors")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["X-Repo-Commit"] == C_MAIN
    assert r.headers["ETag"] == r.headers["X-Linked-Etag"] == f'"{sha(weights)}"'
    assert r.headers["X-Linked-Size"] == r.headers["Content-Length"] == str(len(weights))
    assert r.headers["Accept-Ranges"] == "bytes"
    r = client.get("/huggingface/org/tiny/resolve/refs%2Fpr%2F1/config.json")
    assert r.content == fx.tiny_pr["config.json"] and r.headers["X-Repo-Commit"] == C_PR
    assert "X-Linked-Etag" not in r.headers
    r = client.get("/huggingface/org/tiny/resolve/main/missing.txt")
    assert (r.status_code, r.headers["X-Error-Code"], r.headers["X-Repo-Commit"]) == (404, "EntryNotFound", C_MAIN)
    assert "missing.txt" in r.json()["error"]
    assert client.get("/huggingface/org/tiny/resolve/main/../refs/main").status_code == 404
    # In a cache the Hub populated, the blob's name tells LFS or not, whatever the suffix says.
    tree = {e["path"]: e for e in client.get(f"/huggingface/api/models/gpt2/tree/{C_GPT2}").json()}
    assert tree["tokenizer.json"]["lfs"]["oid"] == sha(fx.gpt2["tokenizer.json"])
    assert "lfs" not in tree["weights.bin"] and tree["weights.bin"]["oid"] == git_blob(fx.gpt2["weights.bin"])
    r = client.head(f"/huggingface/gpt2/resolve/{C_GPT2}/weights.bin")
    assert r.headers["ETag"] == f'"{git_blob(fx.gpt2["weights.bin"])}"' and "X-Linked-Etag" not in r.headers
    # Dataset repos (`datasets--org--name`) are served under /datasets and /api/datasets.
    assert client.get("/huggingface/datasets/org/data/resolve/main/data.csv").content == b"a,b\n1,2\n"
    assert client.get("/huggingface/api/datasets/org/data").json()["sha"] == C_GPT2
    assert client.get("/huggingface/org/data/resolve/main/data.csv").headers["X-Error-Code"] == "RepoNotFound"


# -- Whisper and spaCy ---------------------------------------------------------------------------------------


def test_whisper_urls(client: httpx.Client, fx: Fixture) -> None:
    r = client.get(f"/whisper/{sha(fx.whisper)}/tiny.en.pt")
    assert r.status_code == 200 and r.content == fx.whisper
    r = client.get(f"/whisper/{sha(fx.whisper_nested)}/base.pt")
    assert r.status_code == 200 and r.content == fx.whisper_nested
    r = client.get(f"/whisper/{'0' * 64}/tiny.en.pt")  # flat file whose digest is not the pinned one
    assert r.status_code == 404 and sha(fx.whisper) in r.json()["error"]
    assert client.get(f"/whisper/{'0' * 64}/small.pt").status_code == 404
    assert client.get("/whisper/tiny.en.pt").status_code == 404
    r = client.head(f"/whisper/{sha(fx.whisper)}/tiny.en.pt")
    assert r.headers["Content-Length"] == str(len(fx.whisper)) and r.content == b""


def test_spacy_urls(client: httpx.Client, fx: Fixture) -> None:
    r = client.get("/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl")
    assert r.status_code == 200 and r.content == fx.wheel
    r = client.get("/spacy/xx_flat-1.0.0/xx_flat-1.0.0-py3-none-any.whl")
    assert r.status_code == 200 and r.content == fx.wheel_flat
    r = client.get("/spacy/en_tiny-9.9.9/en_tiny-9.9.9-py3-none-any.whl")
    assert r.status_code == 404 and "en_tiny-9.9.9" in r.json()["error"]
    assert client.get("/spacy/..%2Fwhisper/tiny.en.pt").status_code == 404


# -- Range --------------------------------------------------------------------------------------------------


def test_range_requests(client: httpx.Client, fx: Fixture) -> None:
    url = f"/whisper/{sha(fx.whisper)}/tiny.en.pt"
    size = len(fx.whisper)
    r = client.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == fx.whisper[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{size}"
    r = client.get(url, headers={"Range": "bytes=100000-"})
    assert r.status_code == 206 and r.content == fx.whisper[100_000:]
    r = client.get(url, headers={"Range": "bytes=-5"})
    assert r.content == fx.whisper[-5:]
    r = client.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    r = client.get(url, headers={"Range": "bytes=0-1,5-6"})  # multiple ranges: whole file is allowed
    assert r.status_code == 200 and r.content == fx.whisper


def test_parse_range() -> None:
    assert parse_range("bytes=0-", 10) == (0, 9)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=4-2", 10) is None
    assert parse_range("items=0-1", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)


# -- faults -------------------------------------------------------------------------------------------------


def test_corrupt_flips_exactly_one_byte(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    server.faults.corrupt.add("tiny.en.pt")
    body = client.get(f"/whisper/{sha(fx.whisper)}/tiny.en.pt").content
    assert len(body) == len(fx.whisper)
    diff = [i for i, (a, b) in enumerate(zip(body, fx.whisper, strict=True)) if a != b]
    assert diff == [len(fx.whisper) // 2]
    # A ranged read across the middle is corrupted at the same offset; other files are untouched.
    mid = len(fx.whisper) // 2
    part = client.get(f"/whisper/{sha(fx.whisper)}/tiny.en.pt", headers={"Range": f"bytes={mid - 1}-{mid + 1}"})
    assert part.content[0] == fx.whisper[mid - 1] and part.content[1] != fx.whisper[mid]
    assert client.get(f"/whisper/{sha(fx.whisper_nested)}/base.pt").content == fx.whisper_nested


def test_fail_answers_503_n_times(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    server.faults.fail["en_tiny"] = 2
    url = "/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl"
    assert [client.get(url).status_code for _ in range(3)] == [503, 503, 200]
    assert server.faults.fail["en_tiny"] == 0


def test_not_found_and_reset(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    server.faults.not_found.add("config.json")
    r = client.get("/huggingface/org/tiny/resolve/main/config.json")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    server.faults.reset["tiny.en.pt"] = 1
    url = f"/whisper/{sha(fx.whisper)}/tiny.en.pt"
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(url)
    assert client.get(url).content == fx.whisper
    assert [r.bytes_sent for r in server.requests_for("tiny.en.pt")] == [len(fx.whisper) // 2, len(fx.whisper)]


def test_no_content_length_sends_a_chunked_body(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    server.faults.no_content_length.add("tiny.en.pt")
    url = f"/whisper/{sha(fx.whisper)}/tiny.en.pt"
    head = client.head(url)
    assert head.status_code == 200 and "content-length" not in head.headers
    r = client.get(url)
    assert "content-length" not in r.headers and r.headers["transfer-encoding"] == "chunked"
    assert r.content == fx.whisper


def test_html_redirect_loop_and_truncate(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    server.faults.html.add("/api/")
    r = client.get("/huggingface/api/models/org/tiny/revision/main")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and r.text.startswith("<!DOCTYPE")
    url = f"/whisper/{sha(fx.whisper)}/tiny.en.pt"
    server.faults.redirect_loop.add("tiny.en.pt")
    r = client.get(url)
    assert r.status_code == 302 and r.headers["location"] == url
    with pytest.raises(httpx.TooManyRedirects):
        client.get(url, follow_redirects=True)
    server.faults.clear()
    server.faults.truncate.add("tiny.en.pt")
    half = len(fx.whisper) // 2
    for headers in ({}, {"Range": f"bytes={half - 10}-"}, {"Range": f"bytes={half}-"}):
        with pytest.raises(httpx.RemoteProtocolError):  # every time, whatever the range: the file ends at its middle
            client.get(url, headers=headers)
    assert [r.bytes_sent for r in server.requests_for("tiny.en.pt")][-3:] == [half, 10, 0]


def test_bandwidth_throttle(server: MirrorServer, client: httpx.Client, fx: Fixture, monkeypatch) -> None:
    """The send schedule, on a clock of the test's own: 4000 bytes at 20,000 bytes/s is 0.2 s of waits."""
    from modelbake.mirror.faults import Throttle

    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(server, "_throttle", Throttle(clock=lambda: now[0], sleep=sleep))
    server.faults.bandwidth = 20_000
    assert client.get("/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl").content == fx.wheel
    assert len(fx.wheel) == 4000 and waits and sum(waits) == pytest.approx(0.2)
    server.faults.clear()
    assert server.faults.bandwidth is None
    waits.clear()
    assert client.get("/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl").content == fx.wheel
    assert waits == []  # unthrottled again


# -- request log, API, CLI entry ----------------------------------------------------------------------------


def test_request_log(server: MirrorServer, client: httpx.Client, fx: Fixture) -> None:
    client.get("/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl")
    client.head(f"/whisper/{sha(fx.whisper)}/tiny.en.pt")
    client.get("/nowhere")
    log = [(r.method, r.path, r.status, r.bytes_sent) for r in server.requests]
    assert log[0] == ("GET", "/spacy/en_tiny-3.8.0/en_tiny-3.8.0-py3-none-any.whl", 200, len(fx.wheel))
    assert log[1] == ("HEAD", f"/whisper/{sha(fx.whisper)}/tiny.en.pt", 200, 0)
    assert log[2][:3] == ("GET", "/nowhere", 404)
    assert len(server.requests_for("/whisper/")) == 1
    server.clear_requests()
    assert server.requests == []


def test_request_log_keeps_the_authorization_scheme_never_the_credentials(fx: Fixture, tmp_path: Path) -> None:
    """What the canary-token test relies on: `Bearer` where a token came, None where none did, and the
    credentials in neither the records nor the log file, whatever shape the header has."""
    secret = "hf_SECRETvalue0123456789"
    url = f"/whisper/{sha(fx.whisper_nested)}/base.pt"
    sent = {
        "none": {},
        "bearer": {"Authorization": f"Bearer {secret}"},
        "basic": {"Authorization": f"basic {secret}"},
        "bare": {"Authorization": secret},  # no scheme: the first word is the credential
        "empty": {"Authorization": "Bearer"},  # a scheme and no token is no token
    }
    log_path = tmp_path / "mirror.jsonl"
    with MirrorServer(fx.root, log_path=log_path) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        for name, headers in sent.items():
            assert client.get(url, params={"case": name}, headers=headers).status_code == 200
        logged = {r.path.rsplit("=", 1)[1]: r.authorization for r in srv.requests}
    assert logged == {"none": None, "bearer": "Bearer", "basic": "Basic", "bare": "(unknown)", "empty": "(unknown)"}
    text = log_path.read_text()
    assert secret not in text and "SECRET" not in text
    assert [json.loads(line)["authorization"] for line in text.splitlines()] == list(logged.values())


def test_huggingface_hub_sends_its_token_to_the_mirror(server: MirrorServer, fx: Fixture, tmp_path: Path) -> None:
    """The real client with a token: every request to the mirror carries it as `Bearer`; without, none does."""
    run_hf(server, tmp_path / "with", 'snapshot_download("org/tiny", revision="main", token=V["token"])',
           token="hf_" + "x" * 34)  # fmt: skip
    with_token = server.requests
    server.clear_requests()
    run_hf(server, tmp_path / "without", 'snapshot_download("org/tiny", revision="main", token=False)')
    assert with_token and {r.authorization for r in with_token} == {"Bearer"}
    assert server.requests and {r.authorization for r in server.requests} == {None}


def test_log_file_urls_and_index(fx: Fixture, tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "mirror.jsonl"
    with MirrorServer(fx.root, log_path=log_path) as srv:
        assert srv.url.startswith("http://127.0.0.1:") and srv.port > 0
        assert srv.mirrors == {f: f"{srv.url}/{f}" for f in ("huggingface", "whisper", "spacy")}
        assert httpx.get(srv.url + "/").json()["mirrors"] == srv.mirrors
        httpx.get(srv.mirrors["whisper"] + f"/{sha(fx.whisper_nested)}/base.pt")
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(x["method"], x["status"], x["bytes_sent"]) for x in lines][-1] == ("GET", 200, len(fx.whisper_nested))


def test_start_errors_are_one_line(fx: Fixture, tmp_path: Path, server: MirrorServer) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        MirrorServer(tmp_path / "missing").start()
    with pytest.raises(ModelbakeError, match=f"cannot listen on 127.0.0.1:{server.port}") as err:
        MirrorServer(fx.root, port=server.port).start()
    assert "\n" not in str(err.value)


def test_serve_forever_prints_urls_and_stops_on_sigterm(fx: Fixture) -> None:
    code = f"from modelbake.mirror import serve_forever; serve_forever({str(fx.root)!r}, '127.0.0.1', 0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith(f"modelbake mirror: serving {fx.root} on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        assert f"(huggingface={url}/huggingface, whisper={url}/whisper, spacy={url}/spacy)" in line
        assert httpx.get(f"{url}/whisper/{sha(fx.whisper)}/tiny.en.pt").content == fx.whisper
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


# -- hub cache helpers --------------------------------------------------------------------------------------


def test_lfs_rules() -> None:
    assert is_lfs("model.safetensors", 10) and is_lfs("x/weights.BIN", 10)
    assert is_lfs("big.json", 10 * 1024 * 1024) and not is_lfs("big.json", 10 * 1024 * 1024 - 1)
    assert not is_lfs("tokenizer.json", 1000)
    assert len(lfs_pointer("a" * 64, 123_456_789)) == 134  # the Hub's usual pointerSize


def test_digest_cache_hashes_each_file_version_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = hubcache.sha256_file
    monkeypatch.setattr(hubcache, "sha256_file", lambda p: calls.append(p) or real(p))
    f = tmp_path / "w.bin"
    f.write_bytes(b"one")
    cache = DigestCache()
    assert cache.sha256(f) == cache.sha256(f) == sha(b"one")
    assert len(calls) == 1
    f.write_bytes(b"two!")
    os.utime(f, ns=(1, 1))
    assert cache.sha256(f) == sha(b"two!") and len(calls) == 2
