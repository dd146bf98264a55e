"""The app build contexts `python -m bench` builds with `build.py --context DIR`: per layout (new, old) and per
requirements lock (A: the project's, B: a second app's, smaller).

Why directories of their own: build.py always builds the models image from its own tree (the repository copy)
and the app from `--context`, so both layouts share one models target and one report, and an app-code edit in
one layout's context never touches the other's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from testkit.checkout import BUILD_FILES

NEW, OLD = "new", "old"
LAYOUTS = (NEW, OLD)
# The requirements locks the apps install: A, the project's requirements/app.txt; BUMP, a dependency bump of it
# (rich and the three packages only rich needs dropped: another venv layer of the same size); SMALL, a second
# app's smaller lock (no torch, Whisper or numba: a text service on the same models).
LOCK_A, LOCK_BUMP, LOCK_SMALL = "a", "bump", "small"
LOCK_DROPS = {
    LOCK_A: (),
    LOCK_BUMP: ("rich", "markdown-it-py", "mdurl", "pygments"),
    LOCK_SMALL: ("torch", "openai-whisper", "numba", "llvmlite", "sympy", "mpmath", "networkx"),
}
# `--tiny` (developing the benchmark on a shared disk) installs every lock without the heavy part: A's venv
# is then about 0.3 GB, not 1.6 GB, and the second app's lighter still.
LEAN_DROPS = LOCK_DROPS[LOCK_SMALL]
LEAN_SMALL_DROPS = ("transformers", "tokenizers", "safetensors")
REQUIREMENTS = Path("requirements/app.txt")


def without_packages(lock_text: str, names: tuple[str, ...]) -> str:
    """A hashed pip lock (`uv pip compile --generate-hashes`) without the entries of `names`: an entry is its
    `name==version \\` line and every indented line after it (hashes, `# via` comments)."""
    wanted = {n.lower() for n in names}
    out: list[str] = []
    dropping = False
    found: set[str] = set()
    for line in lock_text.splitlines(keepends=True):
        if line[:1].isalnum():
            name = line.split("==", 1)[0].strip().lower()
            dropping = name in wanted
            if dropping:
                found.add(name)
        elif not line.startswith((" ", "\t")):
            dropping = False
        if not dropping:
            out.append(line)
    if found != wanted:
        raise RuntimeError(f"{REQUIREMENTS}: no entry for {sorted(wanted - found)}")
    return "".join(out)


@dataclass(frozen=True)
class Context:
    layout: str
    lock: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.layout}-{self.lock}"


def make_context(
    repo: Path, dest: Path, layout: str, lock: str, manifest: Path, profile: str, lean: bool = False
) -> Context:
    """A copy of the repository copy's build files, with the old-layout Dockerfile and/or another lock (`lean`:
    without the heavy packages, see LEAN_DROPS)."""
    from bench.oldlayout import render_for

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in BUILD_FILES:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if layout == OLD:
        current = (repo / "Dockerfile").read_text()
        (dest / "Dockerfile").write_text(render_for(manifest, profile, current))
    drops = tuple(dict.fromkeys(LOCK_DROPS[lock] + (LEAN_DROPS if lean else ())))
    drops += LEAN_SMALL_DROPS if lean and lock == LOCK_SMALL else ()
    if drops:
        text = (repo / REQUIREMENTS).read_text()
        (dest / REQUIREMENTS).write_text(without_packages(text, drops))
    return Context(layout, lock, dest)
