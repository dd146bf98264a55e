"""A short spoken sample episode, synthesized with espeak-ng, for the demo, the tests and first tries.

`podcast-pipeline sample ep.wav` (or `python -m podcast_pipeline.sample ep.wav`) writes a mono 16-bit WAV at
espeak-ng's own 22050 Hz: two people talking for about 20 seconds. It needs the `espeak-ng` program (Debian:
`apt-get install espeak-ng`), which the app image does not carry: make the file on the host, then mount it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

from .errors import InputError, PipelineError

# Title and description use names the tiny test spaCy pipeline was trained on (testkit.tinymodels), so
# the demo finds speakers even with random-weight models; real models find them in the transcript too.
TITLE = "Alice Smith talked with Bob Jones about the budget"
DESCRIPTION = "Carol White joins Alice Smith in the studio."
TEXT = (
    "Welcome to the show. I am Alice Smith, and my guest today is Bob Jones. "
    "Bob, you looked at the city budget this year. What changed? "
    "Thanks, Alice. Sales grew by ten percent in the last quarter, and the council approved the plan on Tuesday. "
    "Next week Carol White joins us in the studio. "
    "Thank you for coming, Bob, and thanks to everyone for listening."
)
VOICE = "en-us"
WORDS_PER_MINUTE = 160


class SynthesisError(PipelineError):
    """espeak-ng is missing or failed."""

    exit_code = 1


def espeak_path() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise SynthesisError("espeak-ng not found on PATH: install it (Debian/Ubuntu: apt-get install espeak-ng)")
    return found


def synthesize(out: str | Path, text: str = TEXT, voice: str = VOICE, speed: int = WORDS_PER_MINUTE) -> Path:
    """Speak `text` into the WAV file `out` (written atomically); return its path."""
    out = Path(out)
    if not text.strip():
        raise InputError("nothing to say: the text is empty")
    if out.is_dir():
        raise InputError(f"{out}: is a directory, expected a .wav file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{out}: directory {parent} does not exist")
    espeak = espeak_path()
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # the text goes on stdin: it may start with "-" or be long
        proc = subprocess.run(
            [espeak, "-v", voice, "-s", str(speed), "-w", tmp, "--stdin"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["no detail"])[-1]
            raise SynthesisError(f"espeak-ng failed (exit {proc.returncode}): {detail}")
        with wave.open(tmp, "rb") as w:
            if w.getnframes() == 0:
                raise SynthesisError(f"espeak-ng wrote no audio for voice {voice!r}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def duration(path: str | Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(["sample", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
