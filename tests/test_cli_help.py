"""`--help` reads as a user's guide: what each command does for you, with examples, no internal docstrings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelbake.cli import main

pytestmark = pytest.mark.unit

COMMANDS = [
    [],
    ["lock"],
    ["preload"],
    ["verify"],
    ["clean-cache"],
    ["mirror"],
    ["mirror", "serve"],
    ["dockerfile"],
]


def _examples(text: str) -> list[str]:
    """The lines under `examples:` that run a command."""
    after = text.split("examples:\n", 1)[1] if "examples:\n" in text else ""
    return [line for line in after.splitlines() if line.startswith("  modelbake ")]


def test_program_help_is_a_users_guide():
    proc = subprocess.run([sys.executable, "-m", "modelbake", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "main(argv" not in proc.stdout and "exits 2 for bad input" in proc.stdout
    assert proc.stdout.split("\n\n")[1].startswith("Bake ML models")
    assert _examples(proc.stdout)


@pytest.mark.parametrize("command", COMMANDS[1:], ids=[" ".join(c) for c in COMMANDS[1:]])
def test_each_command_says_what_it_does_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "main(argv" not in text
    description = text.split("\n\n")[1]
    assert len(description.split()) >= 8, description  # a sentence for the user, not a fragment
    examples = _examples(text)
    assert examples and any(command[0] in line for line in examples), text


@pytest.mark.parametrize("command", ["gha-cache", "tinymodels"])
def test_test_tooling_is_no_command_of_the_product(command, capsys):
    """The gha cache emulator and the tiny models are test support (`python -m testkit.ghacache`,
    `python -m testkit.tinymodels`): the shipped CLI does not offer them."""
    assert main([command, "--help"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_bad_argument_is_one_error_line(capsys):
    assert main(["preload", "--jobs", "many"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: modelbake preload: argument --jobs: invalid int value: 'many'"
    assert err[1] == "hint: see `modelbake preload --help`" and len(err) == 2
