"""`optout inbound`: the SMTP server for mailto unsubscribes, bounces and complaints;
`optout inbound reapply`: run kept messages (those that failed to apply) again."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from mailer.cli.support import Commands
from mailer.config import Settings
from mailer.db import database_url, pool_for, queries, rows
from mailer.errors import DatabaseUnavailable, InvalidInput
from mailer.inbound.handler import InboundHandler
from mailer.inbound.server import serve

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2525
REAPPLY_LIMIT = 1000


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser(
        "inbound", help="receive mailto unsubscribes, bounces and complaints by SMTP"
    )
    add.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})")
    add.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0 picks a free one)"
    )
    add.set_defaults(run=_inbound)
    actions = add.add_subparsers(metavar="ACTION")
    again = actions.add_parser(
        "reapply", help="run kept messages (outcome error) again, after a fix or an outage"
    )
    again.add_argument(
        "--limit", type=int, default=REAPPLY_LIMIT, help=f"at most this many ({REAPPLY_LIMIT})"
    )
    again.add_argument(
        "--unparsed",
        action="store_true",
        help="run the bounces no parser understood through today's parser instead",
    )
    again.set_defaults(run=_reapply)


def _ready(host: str, port: int) -> None:
    print(f"optout inbound: listening on {host}:{port}", flush=True)


def _inbound(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as dsn:
        asyncio.run(serve(settings, dsn, args.host, args.port, _ready))
    return 0


def _reapply(settings: Settings, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InvalidInput("--limit must be at least 1", field="limit")
    with database_url(settings) as dsn:
        if args.unparsed:
            done, still = asyncio.run(reapply_unparsed(settings, dsn, args.limit))
            print(f"optout inbound reapply: {done} now parsed, {still} still unparsed", flush=True)
            return 0
        done, failed = asyncio.run(reapply_kept(settings, dsn, args.limit))
    print(f"optout inbound reapply: {done} applied, {failed} still failing", flush=True)
    return 0 if failed == 0 else 1


async def reapply_unparsed(settings: Settings, dsn: str, limit: int) -> tuple[int, int]:
    """Run up to ``limit`` unparsed bounces through today's parser; (now parsed, still not).

    One that still does not parse stays as it was (and is tried again by a later run); one
    that parses is applied once, in the same transaction that rewrites its outcome.
    """
    async with pool_for(settings, dsn) as pool:
        async with pool.acquire() as conn:
            ids = [
                row["id"]
                for row in await rows(queries().inbound.unparsed_bounce_ids(conn, lim=limit))
            ]
        handler = InboundHandler(settings, pool)
        if ids and not await handler.refresh():
            raise DatabaseUnavailable()
        parsed = still = 0
        for event_id in ids:
            result = await handler.reapply(event_id, unparsed=True)
            if result is None:
                continue  # applied by another run meanwhile
            if result.outcome == "unparsed":
                still += 1
            else:
                parsed += 1
        return parsed, still


async def reapply_kept(settings: Settings, dsn: str, limit: int) -> tuple[int, int]:
    """Run up to ``limit`` kept messages again; (applied, still failing)."""
    async with pool_for(settings, dsn) as pool:
        async with pool.acquire() as conn:
            ids = [
                row["id"] for row in await rows(queries().inbound.kept_event_ids(conn, lim=limit))
            ]
        handler = InboundHandler(settings, pool)
        if ids and not await handler.refresh():
            raise DatabaseUnavailable()
        done = failed = 0
        for event_id in ids:
            try:
                result = await handler.reapply(event_id)
            except Exception as exc:  # one bad message must not stop the others
                log.warning("reapply failed event=%s: %s", event_id, type(exc).__name__)
                failed += 1
                continue
            done += result is not None
        return done, failed
