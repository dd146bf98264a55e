"""The naive image's model download: what most Dockerfiles run after `COPY . .` (stdlib, huggingface_hub, pip).

Why a file of its own: the benchmark copies it into the build context as `src/download_models.py`, where the
naive Dockerfile's `RUN python src/download_models.py` finds it; it must not import modelbake or bench. It reads
`src/naive_models.json` (written by bench/naive.py from the lock): every model's URL or repo, and writes the
same /models layout as the modelbake image. No digest checks, no retries, no per-model layer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path


def main() -> int:
    plan = json.loads((Path(__file__).parent / "naive_models.json").read_text())
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else "/models")
    mirror = os.environ["MIRROR"].rstrip("/")
    os.environ["HF_ENDPOINT"] = f"{mirror}/huggingface"
    from huggingface_hub import snapshot_download  # after HF_ENDPOINT: read at import time

    for model in plan:
        if model["family"] == "whisper":
            target = dest / "whisper" / model["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(mirror + model["path"]) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        elif model["family"] == "spacy":
            cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target"]
            subprocess.run([*cmd, str(dest / "spacy"), mirror + model["path"]], check=True)
        else:
            snapshot_download(
                model["repo"],
                revision=model["revision"],
                allow_patterns=model.get("include") or None,
                cache_dir=str(dest / "huggingface" / "hub"),
            )
        print(f"downloaded {model['id']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
