"""Stand-in model files for the unit tests: the tiny models' mirror layout, names and sizes, without the models.

`lock`, `preload`, the mirror and the error boundary move bytes and check digests; they never load a model. So
the unit tests fetch these files, made in a fraction of a second with the standard library alone, instead of the
real tiny models (`testkit.tinymodels`: torch, transformers and spaCy, ~9 s), which stay with the tests that
load them (`ml_models`, `docker`). Sizes follow the real files where a test depends on them: the Whisper file and
the spaCy wheel outgrow the small file systems of the full-disk cases, and `model.safetensors` is an LFS file.
The wheel is a real one (pip installs it; `import en_tiny_ner` works), holding no pipeline.
"""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import zipfile
from pathlib import Path

from testkit.tinymodels import (
    BART_REPO,
    LED_REPO,
    SPACY_NAME,
    SPACY_VERSION,
    WHISPER_FILENAME,
    TinySet,
    hub_repo_dir,
    manifest_text,
)
from testkit.tinymodels.mirrorset import publish_snapshot

WHISPER_BYTES = 7 * 2**20  # the real tiny checkpoint's order of size: more than the 1 MB full-disk case
SPACY_DATA_BYTES = 400_000  # the wheel must outgrow the 300 kB full-disk case, as the real one does
SAFETENSORS_BYTES = {BART_REPO: 256_000, LED_REPO: 348_000}  # more than the 200 kB full-disk case


def build_byte_tree(root: Path) -> TinySet:
    """Write the stand-in mirror tree under `root` (deterministic: the same bytes every time) and describe it."""
    if root.exists():
        shutil.rmtree(root)
    whisper = root / "whisper" / WHISPER_FILENAME
    whisper.parent.mkdir(parents=True)
    whisper.write_bytes(_noise("whisper", WHISPER_BYTES))
    wheel = root / "spacy" / f"{SPACY_NAME}-{SPACY_VERSION}-py3-none-any.whl"
    wheel.parent.mkdir()
    _write_wheel(wheel)
    commits = {repo: _hub_repo(root, repo) for repo in (BART_REPO, LED_REPO)}
    manifest = root / "models.toml"
    manifest.write_text(manifest_text(_sha256(whisper), _sha256(wheel)))
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p != manifest)
    return TinySet(
        root=root,
        manifest=manifest,
        whisper_path=whisper,
        whisper_sha256=_sha256(whisper),
        spacy_wheel=wheel,
        spacy_sha256=_sha256(wheel),
        bart_repo_dir=hub_repo_dir(root, BART_REPO),
        bart_commit=commits[BART_REPO],
        led_repo_dir=hub_repo_dir(root, LED_REPO),
        led_commit=commits[LED_REPO],
        total_bytes=total,
    )


def _hub_repo(root: Path, repo: str) -> str:
    repo_dir = hub_repo_dir(root, repo)
    staging = repo_dir / ".staging"
    staging.mkdir(parents=True)
    name = repo.rsplit("/", 1)[1]
    (staging / "config.json").write_text(f'{{"model_type": "{name}", "stand_in": true}}\n')
    (staging / "generation_config.json").write_text('{"max_length": 32}\n')
    (staging / "tokenizer_config.json").write_text('{"model_max_length": 1024}\n')
    (staging / "tokenizer.json").write_text('{"version": "1.0", "vocab": "' + "ab" * 18_000 + '"}\n')
    (staging / "model.safetensors").write_bytes(_noise(repo, SAFETENSORS_BYTES[repo]))
    commit, _ = publish_snapshot(repo_dir, repo, staging)
    return commit


def _write_wheel(path: Path) -> None:
    """A minimal valid wheel (METADATA, WHEEL, RECORD), written with fixed timestamps."""
    dist_info = f"{SPACY_NAME}-{SPACY_VERSION}.dist-info"
    files = {
        f"{SPACY_NAME}/__init__.py": f'"""A stand-in for a spaCy pipeline package: bytes to fetch, no model."""\n\n'
        f'__version__ = "{SPACY_VERSION}"\n'.encode(),
        f"{SPACY_NAME}/data.bin": _noise("spacy", SPACY_DATA_BYTES),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {SPACY_NAME}\nVersion: {SPACY_VERSION}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests/bytemodels.py\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},sha256={_b64_digest(data)},{len(data)}\n" for name, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


def _noise(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
