"""The requirements locks (requirements/app.txt, dev.txt, fetch.txt) read back: one entry per package.

A lock is what `uv pip compile --generate-hashes` writes: `name==version \\` followed by `--hash=sha256:...`
continuation lines, with `# via` comments. Parsed here by hand (pip has no public parser) into logical lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
APP_LOCK = REPO / "requirements" / "app.txt"
DEV_LOCK = REPO / "requirements" / "dev.txt"
FETCH_LOCK = REPO / "requirements" / "fetch.txt"
HASH = re.compile(r"^--hash=sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Locked:
    name: str  # canonical (PEP 503)
    requirement: Requirement
    hashes: tuple[str, ...]
    options: tuple[str, ...]  # anything on the line that is neither the requirement nor a hash

    @property
    def version(self) -> str | None:
        """The pinned version, when the specifier is exactly one `==` (no wildcard)."""
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
            return specs[0].version
        return None


def logical_lines(text: str) -> list[str]:
    """The file's lines with `\\` continuations joined and comments dropped (pip's own rules)."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def read_lock(path: Path) -> list[Locked]:
    """Every requirement of a lock, in file order (duplicates kept, so a test can see them)."""
    entries = []
    for line in logical_lines(path.read_text()):
        tokens = line.split()
        head = [t for t in tokens if not t.startswith("--")]
        requirement = Requirement(" ".join(head))
        hashes = tuple(m[1] for t in tokens if (m := HASH.match(t)))
        options = tuple(t for t in tokens if t.startswith("--") and not HASH.match(t))
        entries.append(Locked(canonicalize_name(requirement.name), requirement, hashes, options))
    return entries


def pins(path: Path) -> dict[str, str]:
    """name -> pinned version."""
    return {e.name: e.version or str(e.requirement.specifier) for e in read_lock(path)}
