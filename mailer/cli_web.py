"""`optout web --host --port`: serve the web face (one-click, landing and preference pages,
sign-up, /healthz, /metrics) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from typing import Any

from aiohttp import web

from mailer import logs
from mailer.cli_support import Commands
from mailer.config import Settings
from mailer.db import check_keys, connect, database_url
from mailer.errors import DatabaseUnavailable

log = logging.getLogger(__name__)


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser("web", help="serve the web face (one-click, preferences, sign-up)")
    add.add_argument("--host", default="127.0.0.1", help="address to listen on")
    add.add_argument("--port", type=int, default=8080, help="port to listen on")
    add.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    # One JSON access-log line per request on stderr (optout.access), with the app's events.
    logs.configure()
    with database_url(settings) as dsn:
        asyncio.run(_check(settings, dsn))
        # Imported here: the CLI module stays importable without the web stack's cost.
        from unsubscribe_web.app import create_app

        app = create_app(dataclasses.replace(settings, database_url=dsn))
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            access_log=None,  # ours is written by unsubscribe_web.security
            print=lambda _: print(
                f"optout web: listening on http://{args.host}:{args.port}", flush=True
            ),
        )
    return 0


async def _check(settings: Settings, dsn: str) -> None:
    """Refuse keys the database does not know; start anyway while Postgres is away, since
    opt-outs are then spooled and replayed when it answers."""
    try:
        conn = await connect(dsn)
    except DatabaseUnavailable as exc:
        log.warning("starting without Postgres (opt-outs will be spooled): %s", exc.message)
        return
    try:
        await check_keys(conn, settings)
    finally:
        await conn.close()
