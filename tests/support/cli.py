"""`optout ...` as an operator runs it: a subprocess of this interpreter, output captured."""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def optout(
    *args: str, env: dict[str, str], timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leaf_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every runnable command of the parser, by its words: {"campaign send": parser, ...}; a
    command that runs by itself and also has sub-commands (`inbound`, `inbound reapply`) counts
    both."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(node: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        groups = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        if words and (not groups or node.get_default("run") is not None):
            found[" ".join(words)] = node
        for group in groups:
            for name, child in group.choices.items():
                walk(child, (*words, name))

    walk(parser, ())
    return found


def optout_many(
    commands: list[list[str]], *, env: dict[str, str], timeout: float = 90
) -> list[subprocess.CompletedProcess[str]]:
    """Run many `optout` commands, a few at a time (the machine is shared)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: optout(*args, env=env, timeout=timeout), commands))
