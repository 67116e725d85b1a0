"""Helpers for `optout` command modules (mailer/cli/*.py): run an action on the database.

Each command module exposes ``register(commands: Commands) -> None``; mailer/cli/main.py calls
it, only for the command that runs (its table COMMAND_MODULES names each module's commands).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from mailer.config import Settings
from mailer.db import check_keys, connect, database_url

Command = Callable[[Settings, argparse.Namespace], int]
Commands = argparse._SubParsersAction  # what `register(commands)` functions receive
DbAction = Callable[[asyncpg.Connection, argparse.Namespace], Awaitable[int]]
# `optout import correct ...`: mailer.cli.main routes it to this parser of mailer.cli.admin.
IMPORT_CORRECT = "import-correct"


def with_db(action: DbAction, *, check: bool = True) -> Command:
    """Run ``action`` on one connection; ``check`` refuses keys the database does not know."""

    def command(settings: Settings, args: argparse.Namespace) -> int:
        args.settings = settings

        async def run(dsn: str) -> int:
            conn = await connect(dsn)
            try:
                if check:
                    await check_keys(conn, settings)
                return await action(conn, args)
            finally:
                await conn.close()

        with database_url(settings) as dsn:
            return asyncio.run(run(dsn))

    return command
