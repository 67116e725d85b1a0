"""`optout journal reapply DIR...`: after a restore from a backup, re-apply the opt-outs,
suppressions, lifts and erasures the journal holds and the restored database does not
(mailer/rights/journal_reapply.py); counts per event on stdout, damage found on stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import asyncpg

from mailer.cli.support import Commands, with_db
from mailer.errors import InvalidInput
from mailer.journal import EVENTS
from mailer.rights import journal_reapply

# Exit code when the journal was damaged (an edited line, a file cut short or missing): the
# intact part was applied, and the operator must look at what was not.
DAMAGED = 1


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser(
        "journal", help="the consent journal kept outside the database"
    ).add_subparsers(metavar="ACTION")
    add = group.add_parser(
        "reapply",
        help="after a restore: re-apply opt-outs, suppressions, lifts and erasures since the "
        "backup",
    )
    add.add_argument(
        "directories", nargs="+", type=Path, metavar="DIR", help="journal folders of every host"
    )
    add.set_defaults(run=with_db(_reapply))


async def _reapply(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    try:
        report = await journal_reapply.reapply(conn, args.directories)
    except (FileNotFoundError, ValueError) as exc:
        raise InvalidInput(f"journal: {exc}", field="DIR") from None
    print(
        f"{report.files} file(s), {report.lines} intact line(s), "
        f"{report.pending} not in the database before this run"
    )
    for event in sorted(EVENTS):
        print(f"{event}: {report.changed[event]} re-applied")
    print(f"total: {report.total_changed} change(s)")
    for problem in report.problems:
        print(f"optout journal: {problem}", file=sys.stderr)
    return DAMAGED if report.problems else 0
