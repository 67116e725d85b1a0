"""`optout web --host --port`: serve the web face (one-click, landing and preference pages,
sign-up, /healthz, /metrics) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from typing import Any

from aiohttp import web

from mailer import logs
from mailer.cli.support import Commands
from mailer.config import Settings
from mailer.db import check_keys_at_start, database_url


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser("web", help="serve the web face (one-click, preferences, sign-up)")
    add.add_argument("--host", default="127.0.0.1", help="address to listen on")
    add.add_argument("--port", type=int, default=8080, help="port to listen on")
    add.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    # One JSON access-log line per request on stderr (optout.access), with the app's events.
    logs.configure()
    with database_url(settings) as dsn:
        asyncio.run(check_keys_at_start(settings, dsn, required=False))
        # Imported here: the CLI module stays importable without the web stack's cost.
        from unsubscribe_web.app import create_app
        from unsubscribe_web.limits import server_options

        app = create_app(dataclasses.replace(settings, database_url=dsn))
        web.run_app(
            app,
            **server_options(settings),
            loop=event_loop(),
            host=args.host,
            port=args.port,
            access_log=None,  # ours is written by unsubscribe_web.security
            print=lambda _: print(
                f"optout web: listening on http://{args.host}:{args.port}", flush=True
            ),
        )
    return 0


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (a dependency except on Windows): the same
    asyncio API with less CPU per request on the one-click path; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
