"""`optout serve`: the web face, the inbound SMTP server and the sending worker in one process,
for small installs. SIGTERM or SIGINT drains in-flight work before it exits (mailer/serve.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from mailer import logs
from mailer.cli.services import ServeAddresses, ServeOptions, check_options, serve_all
from mailer.cli.support import Commands
from mailer.config import Settings
from mailer.db import database_url

log = logging.getLogger(__name__)

PREFIX = "optout serve:"


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser(
        "serve", help="web, inbound and worker in one process (small installs)"
    )
    add.add_argument("--host", default="127.0.0.1", help="web: address to listen on")
    add.add_argument("--port", type=int, default=8080, help="web: port (0 picks a free one)")
    add.add_argument("--inbound-host", default="127.0.0.1", help="inbound SMTP: address")
    add.add_argument(
        "--inbound-port", type=int, default=2525, help="inbound SMTP: port (0 picks a free one)"
    )
    add.add_argument("--no-inbound", action="store_true", help="run no inbound SMTP server")
    add.add_argument("--no-worker", action="store_true", help="run no sending worker")
    add.add_argument("--concurrency", type=int, help="SMTP connections (OPTOUT_SMTP_POOL_SIZE)")
    add.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    options = ServeOptions(
        web_host=args.host,
        web_port=args.port,
        inbound_host=args.inbound_host,
        inbound_port=None if args.no_inbound else args.inbound_port,
        worker=not args.no_worker,
        concurrency=args.concurrency,
    )
    check_options(settings, options)  # before the embedded Postgres is started for nothing
    # As `optout web`: one JSON access-log line per request on stderr (optout.access), with
    # the events of the worker and the inbound server.
    logs.configure()
    with database_url(settings) as dsn:
        asyncio.run(_serve(settings, dsn, options))
    print(f"{PREFIX} stopped cleanly", flush=True)
    return 0


async def _serve(settings: Settings, dsn: str, options: ServeOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("serve_already_stopping signal=%s (every step is bounded)", signum.name)
            return
        print(f"{PREFIX} {signum.name}: finishing in-flight work, then stopping", flush=True)
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serve_all(settings, dsn, options, stop, ready=_announcer(settings, options))
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _announcer(settings: Settings, options: ServeOptions) -> Callable[[ServeAddresses], None]:
    def ready(addresses: ServeAddresses) -> None:
        print(f"{PREFIX} web listening on {addresses.web_url}", flush=True)
        if addresses.inbound is not None:
            host, port = addresses.inbound
            print(f"{PREFIX} inbound SMTP listening on {host}:{port}", flush=True)
        if options.worker and settings.smtp is not None:
            relay = settings.smtp
            size = options.concurrency or settings.mailer.pool_size
            print(
                f"{PREFIX} worker sending through {relay.host}:{relay.port} ({size} connections)",
                flush=True,
            )

    return ready
