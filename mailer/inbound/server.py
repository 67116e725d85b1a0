"""Run the inbound SMTP server: limits (message size, recipients, connections per IP),
STARTTLS when a certificate is configured, and the periodic chores (tenant-table refresh,
expiry of kept raw messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, AnyStr

import asyncpg

from mailer.config import Settings
from mailer.db import UNAVAILABLE_ERRORS, pool_for, queries
from mailer.errors import ConfigError
from mailer.inbound.handler import DIRECTORY_MAX_AGE, InboundHandler
from mailer.inbound_settings import InboundSettings
from mailer.smtp_envelope import RawEnvelopeSMTP
from mailer.waits import wait_for_event

__all__ = ["ConnectionLimiter", "InboundSMTP", "purge_expired_raw", "serve", "start_server"]

log = logging.getLogger(__name__)

IDENT = "Optout inbound"
REPLY_TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections from your address\r\n"
# aiosmtpd's reply to a DATA line over its limit carries no enhanced status.
_AIOSMTPD_LINE_TOO_LONG = "500 Line too long"
PURGE_EVERY = 3600.0
PURGE_BATCH = 1000
PURGE_MAX_BATCHES = 100


class ConnectionLimiter:
    """Open connections per client IP, shared by every session of one server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self.open[ip] >= self.limit:
            return False
        self.open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class InboundSMTP(RawEnvelopeSMTP):
    """aiosmtpd's SMTP with a per-IP connection limit (421 to the connection over it), DATA
    lines up to ``max_line`` octets (longer ones get 500 5.5.2), raw envelope addresses.

    aiosmtpd reads every line through one StreamReader bounded by ``line_length_limit``;
    command lines stay bounded by its separate ``command_size_limit`` (512 octets plus the
    ESMTP extensions' allowances), so only DATA lines grow.
    """

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        max_line: int = 64 * 1024,
        **options: Any,
    ) -> None:
        self.line_length_limit = max_line  # read by SMTP.__init__ to size its reader
        super().__init__(handler, **options)
        self._limiter = limiter
        self._counted_ip: str | None = None

    async def push(self, status: AnyStr) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        if text.startswith(_AIOSMTPD_LINE_TOO_LONG):
            text = f"500 5.5.2 Line too long: at most {self.line_length_limit} octets"
        await super().push(text)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls_again = self._counted_ip is not None
        super().connection_made(transport)
        if starttls_again:
            return  # the same connection, now encrypted: already counted
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "unknown"
        if not self._limiter.acquire(ip):
            log.warning("inbound connection refused: too many from one address")
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(REPLY_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self._counted_ip = ip

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted_ip is not None:
            self._limiter.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)


def tls_context(settings: InboundSettings) -> ssl.SSLContext | None:
    """The server context for STARTTLS, or None when no certificate is configured."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"OPTOUT_INBOUND_TLS_CERT/KEY cannot be loaded: {exc}") from exc
    return context


async def start_server(
    handler: InboundHandler, host: str, port: int, *, hostname: str | None = None
) -> asyncio.Server:
    """Listen on host:port in the running loop; the caller closes the server."""
    settings = handler.settings.inbound
    limiter = ConnectionLimiter(settings.max_connections_per_ip)
    context = tls_context(settings)

    def factory() -> InboundSMTP:
        return InboundSMTP(
            handler,
            limiter=limiter,
            data_size_limit=settings.max_message_bytes,
            max_line=settings.max_line_bytes,
            enable_SMTPUTF8=True,
            tls_context=context,
            hostname=hostname,
            ident=IDENT,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host, port)


async def purge_expired_raw(pool: asyncpg.Pool, now: dt.datetime | None = None) -> int:
    """Drop raw messages past their retention (bounded batches); returns how many."""
    when = now or dt.datetime.now(dt.UTC)
    total = 0
    for _ in range(PURGE_MAX_BATCHES):
        async with pool.acquire() as conn:
            purged: int = await queries().inbound.purge_expired_raw(conn, now=when, lim=PURGE_BATCH)
        total += purged
        if purged < PURGE_BATCH:
            break
    return total


async def _chores(handler: InboundHandler, stop: asyncio.Event) -> None:
    since_purge = PURGE_EVERY  # purge once at start
    while not stop.is_set():
        if since_purge >= PURGE_EVERY:
            since_purge = 0.0
            try:
                purged = await purge_expired_raw(handler.pool)
                if purged:
                    log.info("inbound raw messages expired count=%d", purged)
            except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("inbound raw expiry failed: %s", type(exc).__name__)
        await wait_for_event(stop, DIRECTORY_MAX_AGE / 2)
        since_purge += DIRECTORY_MAX_AGE / 2
        await handler.refresh()


@contextlib.asynccontextmanager
async def running(
    settings: Settings, dsn: str, host: str, port: int
) -> AsyncIterator[tuple[InboundHandler, asyncio.Server]]:
    """The server with its pool and chores, for `optout inbound` and `optout serve`."""
    async with pool_for(settings, dsn) as pool:
        handler = InboundHandler(settings, pool)
        await handler.refresh()
        server = await start_server(handler, host, port)
        stop = asyncio.Event()
        chores = asyncio.create_task(_chores(handler, stop))
        try:
            yield handler, server
        finally:
            stop.set()
            server.close()
            await server.wait_closed()
            await chores


async def serve(
    settings: Settings,
    dsn: str,
    host: str,
    port: int,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run until SIGINT or SIGTERM; ``ready`` is told the bound address once listening."""
    async with running(settings, dsn, host, port) as (_handler, server):
        bound = server.sockets[0].getsockname()
        log.info("inbound listening host=%s port=%s", bound[0], bound[1])
        if ready is not None:
            ready(str(bound[0]), int(bound[1]))
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, done.set)
        try:
            await done.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
