"""`optout WORD ...` builds the parser of WORD's commands only, importing only their modules:
each start of the program stays short, and every command is still there, with all its
sub-commands and options, when it is the one that runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mailer.cli.main import COMMAND_MODULES, build_parser, modules_for
from tests.support.cli import leaf_commands

EVERY_COMMAND = leaf_commands(build_parser())
FIRST_WORDS = sorted({name.split()[0] for name in EVERY_COMMAND})


def _options(parser) -> list[tuple[str, ...]]:
    return sorted(tuple(action.option_strings) for action in parser._actions)


@pytest.mark.parametrize("word", FIRST_WORDS)
def test_a_command_line_gets_every_command_under_its_first_word(word: str) -> None:
    """The parser built for ``word`` has the same commands under it, with the same options,
    as the whole parser (a module missing from COMMAND_MODULES fails here)."""
    whole = {name: p for name, p in EVERY_COMMAND.items() if name.split()[0] == word}
    narrow = {
        name: p for name, p in leaf_commands(build_parser(word)).items() if name.split()[0] == word
    }
    assert sorted(narrow) == sorted(whole)
    for name, parser in whole.items():
        assert _options(narrow[name]) == _options(parser), name


def test_help_and_unknown_words_list_every_command() -> None:
    assert modules_for(None) == modules_for("--help") == modules_for("nosuch")
    assert modules_for(None) == list(COMMAND_MODULES)
    assert set(leaf_commands(build_parser("nosuch"))) == set(EVERY_COMMAND)


def test_a_command_imports_neither_the_web_face_nor_other_commands() -> None:
    """`optout staff list` in a fresh interpreter: its parser loads mailer.cli.staff alone."""
    probe = (
        "import json, sys\n"
        "from mailer.cli.main import build_parser\n"
        "build_parser('staff')\n"
        "parts = ('mailer.cli.', 'unsubscribe_web')\n"
        "print(json.dumps([m for m in sys.modules if m.startswith(parts)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    loaded = json.loads(out)
    assert "mailer.cli.staff" in loaded
    assert not [m for m in loaded if m.startswith("unsubscribe_web")], loaded
    assert set(loaded) <= {"mailer.cli.main", "mailer.cli.support", "mailer.cli.staff"}, loaded
