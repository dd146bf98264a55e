"""Preload at the prod profile's real file sizes: cold fetch vs. the second run (everything present).

The issue's target: the second run makes zero network requests and takes under 2 s for the prod profile.
Files are random bytes of the real sizes (Whisper base.en, bart-large-cnn, led-base-16384) served by the
local mirror; the spaCy wheel is the tiny real one (pip must be able to install it).

    python -m bench.preload_rerun [--out bench/results-preload.md] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelbake.cli import main as modelbake
from modelbake.mirror.server import MirrorServer
from testkit.tinymodels import build_mirror_tree

# Real sizes of the prod profile's files (bytes).
PROD_FILES = {
    "whisper": ("base.en", 145_262_807),
    "facebook/bart-large-cnn": {
        "model.safetensors": 1_625_270_765,
        "config.json": 1_585,
        "vocab.json": 898_822,
        "merges.txt": 456_318,
        "tokenizer.json": 1_355_863,
        "generation_config.json": 363,
    },
    "allenai/led-base-16384": {
        "pytorch_model.bin": 647_678_513,
        "config.json": 1_092,
        "vocab.json": 898_822,
        "merges.txt": 456_318,
        "tokenizer.json": 1_355_863,
    },
}
COMMITS = {"facebook/bart-large-cnn": "1" * 40, "allenai/led-base-16384": "2" * 40}


def random_file(path: Path, size: int, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * 32768  # 1 MiB, varied per seed
    with open(path, "wb") as f:
        left = size
        counter = 0
        while left:
            chunk = block[: min(left, len(block))]
            chunk = counter.to_bytes(8, "little") + chunk[8:] if len(chunk) > 8 else chunk
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            counter += 1
    return digest.hexdigest()


def build_tree(root: Path, scale: float) -> str:
    tiny = build_mirror_tree(root / "tiny")
    shutil.copytree(tiny.root / "spacy", root / "spacy")
    name, size = PROD_FILES["whisper"]
    whisper_sha = random_file(root / "whisper" / f"{name}.pt", int(size * scale), 1)
    entries = [f'[models.whisper-base-en]\nfamily = "whisper"\nname = "{name}"\nsha256 = "{whisper_sha}"\n']
    entries.append(
        f'[models.spacy-ner]\nfamily = "spacy"\nname = "en_tiny_ner"\nversion = "0.1.0"\nsha256 = "{tiny.spacy_sha256}"\n'
    )
    for seed, repo in enumerate(("facebook/bart-large-cnn", "allenai/led-base-16384"), start=2):
        repo_dir = root / "huggingface" / ("models--" + repo.replace("/", "--"))
        for path, fsize in PROD_FILES[repo].items():
            random_file(repo_dir / "snapshots" / COMMITS[repo] / path, int(fsize * scale) or 1, seed * 100 + len(path))
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(COMMITS[repo])
        model_id = repo.split("/")[1]
        entries.append(f'[models.{model_id}]\nfamily = "huggingface"\nrepo = "{repo}"\nrevision = "main"\n')
    ids = ["whisper-base-en", "spacy-ner", "bart-large-cnn", "led-base-16384"]
    entries.append(f"[profiles]\nprod = {ids!r}\n".replace("'", '"'))
    manifest = root / "manifest" / "models.toml"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(entries))
    return str(manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results-preload.md"))
    parser.add_argument("--scale", type=float, default=1.0, help="file size factor (1.0 = real sizes)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelbake-bench-"))
    try:
        manifest = build_tree(work, args.scale)
        with MirrorServer(work) as server:
            mirrors = [a for fam, url in server.mirrors.items() for a in ("--mirror", f"{fam}={url}")]
            assert modelbake(["lock", "--manifest", manifest, *mirrors]) == 0
            dest = work / "dest"
            common = ["preload", "--manifest", manifest, "--profile", "prod", "--dest", str(dest), *mirrors]
            server.clear_requests()
            t0 = time.perf_counter()
            assert modelbake(common) == 0
            cold = time.perf_counter() - t0
            cold_bytes = sum(r.bytes_sent for r in server.requests)
            server.clear_requests()
            t0 = time.perf_counter()  # a whole CLI process, as a user or a Makefile runs it
            subprocess.run([sys.executable, "-m", "modelbake", *common], check=True, capture_output=True)
            warm = time.perf_counter() - t0
            warm_requests = len(server.requests)
        total = sum(
            p.stat().st_size
            for p in dest.rglob("*")
            if p.is_file() and not p.is_symlink() and ".modelbake" not in p.parts
        )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    command = "python -m bench.preload_rerun " + " ".join(argv if argv is not None else sys.argv[1:])
    text = f"""# Preload at prod sizes: cold vs. second run

Command: `{command.strip()}`
Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, {time.strftime("%Y-%m-%d")}

| run | wall time | bytes from the mirror | requests |
| --- | ---: | ---: | ---: |
| cold (prod profile, {total / 1e9:.2f} GB of model files) | {cold:.1f} s | {cold_bytes / 1e6:,.1f} MB | - |
| second run, everything present (a whole `modelbake preload` process) | {warm:.2f} s | 0 | {warm_requests} |

Target: second run under 2 s with zero requests: {"met" if warm < 2 and warm_requests == 0 else "MISSED"}.
The second run trusts each file whose size and mtime match the stat recorded when it was verified
(`DEST/.modelbake/verified/<id>.json`), so it costs one `stat` per file and no hashing.
"""
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
