"""Every `optout ...` command that README.md, docs/ or the program's own messages name exists
in the parser: a renamed or never-built command (`optout campaign start`) fails here."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from mailer.cli.main import build_parser, route

ROOT = Path(__file__).resolve().parents[3]
# `optout` and the words after it (`a|b` alternatives allowed), up to the first argument.
COMMAND = re.compile(r"(?<![\w.-])optout((?:[ \t]+[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*)+)")
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.S)


def _markdown_code(path: Path) -> list[str]:
    """Code in a page (spans and fenced blocks): prose may say "optout process runs"."""
    return CODE_SPAN.findall(path.read_text(encoding="utf-8"))


def _python_strings(path: Path) -> list[str]:
    """Every string constant of a module, docstrings and f-string pieces included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def named_commands() -> dict[tuple[str, ...], set[str]]:
    """Each command named somewhere, as its words, with the files naming it."""
    texts: list[tuple[str, str]] = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        texts += [(page.relative_to(ROOT).as_posix(), code) for code in _markdown_code(page)]
    for part in ("mailer", "unsubscribe_web"):
        for module in sorted((ROOT / part).rglob("*.py")):
            where = module.relative_to(ROOT).as_posix()
            texts += [(where, text) for text in _python_strings(module)]
    found: dict[tuple[str, ...], set[str]] = {}
    for where, text in texts:
        for match in COMMAND.finditer(text):
            for words in _alternatives(match.group(1).split()):
                found.setdefault(words, set()).add(where)
    return found


def _alternatives(words: list[str]) -> list[tuple[str, ...]]:
    """`campaign pause|resume` names two commands."""
    out: list[tuple[str, ...]] = [()]
    for word in words:
        out = [(*head, choice) for head in out for choice in word.split("|")]
    return out


def resolves(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> bool:
    """Whether the words name a command group or a command (later words are its arguments)."""
    node = parser
    for word in route(list(words)):
        groups = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            return True  # a command: the rest are its arguments
        choices = {name: child for group in groups for name, child in group.choices.items()}
        if word not in choices:
            return False
        node = choices[word]
    return True


COMMANDS = named_commands()


def test_the_pages_and_messages_name_many_commands():
    """The collection itself works: it finds commands of every kind of source."""
    sources = set().union(*COMMANDS.values())
    assert {"README.md", "docs/commands.md", "mailer/db.py"} <= sources
    assert ("import", "correct") in COMMANDS and ("campaign", "send") in COMMANDS
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
def test_every_named_command_exists(words: tuple[str, ...]) -> None:
    where = ", ".join(sorted(COMMANDS[words]))
    assert resolves(build_parser(), words), f"`optout {' '.join(words)}` in {where}"


def test_a_command_that_does_not_exist_is_caught():
    parser = build_parser()
    assert not resolves(parser, ("campaign", "start"))
    assert not resolves(parser, ("campain", "list"))
    assert resolves(parser, ("import", "correct", "12"))
