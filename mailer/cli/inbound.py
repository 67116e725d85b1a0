"""`optout inbound`: the SMTP server for mailto unsubscribes, bounces and complaints."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from mailer.cli.support import Commands
from mailer.config import Settings
from mailer.db import database_url
from mailer.inbound.server import serve

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2525


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser(
        "inbound", help="receive mailto unsubscribes, bounces and complaints by SMTP"
    )
    add.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on ({DEFAULT_HOST})")
    add.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT}; 0 picks a free one)"
    )
    add.set_defaults(run=_inbound)


def _ready(host: str, port: int) -> None:
    print(f"optout inbound: listening on {host}:{port}", flush=True)


def _inbound(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as dsn:
        asyncio.run(serve(settings, dsn, args.host, args.port, _ready))
    return 0
