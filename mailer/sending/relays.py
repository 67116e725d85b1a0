"""Shared rate budgets per SMTP relay, kept in Postgres so every worker on every machine draws
from the same bucket, and the health of each relay (one that keeps failing is set aside)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

import asyncpg

from mailer.config import SmtpRelay
from mailer.db import queries

log = logging.getLogger(__name__)

SET_ASIDE_AFTER = 5  # consecutive failed connections
SET_ASIDE_SECONDS = 60.0


def relay_name(relay: SmtpRelay) -> str:
    """A stable name for a relay (host and port), the key of its shared budget."""
    name = re.sub(r"[^a-z0-9_-]+", "-", f"{relay.host}-{relay.port}".lower()).strip("-")
    return name[:40] or "relay"


async def ensure_relay(
    conn: asyncpg.Connection, name: str, *, per_second: float, per_hour: int
) -> None:
    await queries().relays.ensure_relay(conn, name=name, per_second=per_second, per_hour=per_hour)


class RateGate:
    """Hands out permission to send, drawn from the relay's shared bucket a few at a time.

    Taking tokens in small chunks keeps the database round trips far below one per message
    while the bucket's one-second burst bounds what any worker can hold.
    """

    def __init__(
        self,
        acquire_conn: Callable[[], Awaitable[asyncpg.Connection]],
        release_conn: Callable[[asyncpg.Connection], Awaitable[None]],
        name: str,
        per_second: float,
    ) -> None:
        self._acquire_conn = acquire_conn
        self._release_conn = release_conn
        self.name = name
        self.chunk = max(1, min(50, int(per_second / 4) or 1))
        self._local = 0
        self._lock = asyncio.Lock()
        self.set_aside_for = 0.0  # seconds the relay is still set aside, as last seen
        self.per_second = per_second

    async def acquire(self, max_wait: float = 30.0) -> bool:
        """Wait for one send's worth of budget; False if none came within ``max_wait``, or at
        once when the relay is set aside (``set_aside_for`` says for how long)."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_wait
            while self._local <= 0:
                conn = await self._acquire_conn()
                try:
                    row = await queries().relays.take_tokens(conn, name=self.name, want=self.chunk)
                finally:
                    await self._release_conn(conn)
                granted = int(row["granted"]) if row else 0
                if granted > 0:
                    self._local += granted
                    self.set_aside_for = 0.0
                    break
                if row is not None and (row["set_aside_for"] or 0) > 0:
                    # Set aside by some worker: do not wait, another relay may take the mail.
                    self.set_aside_for = float(row["set_aside_for"])
                    return False
                wait = self._wait_for(row)
                if loop.time() + wait > deadline:
                    return False
                await asyncio.sleep(wait)
            self._local -= 1
            return True

    def _wait_for(self, row: asyncpg.Record | None) -> float:
        if row is None:
            return 1.0
        if row["set_aside_for"] is not None and row["set_aside_for"] > 0:
            return min(float(row["set_aside_for"]), 5.0)
        if row["hour_left"] is not None and row["hour_left"] <= 0:
            return min(max(float(row["hour_resets_in"]), 0.05), 5.0)
        missing = min(self.chunk, max(1.0, float(row["per_second"]))) - float(row["left_over"])
        return max(0.01, missing / float(row["per_second"]))
