"""Rate limits shared by every process, kept in Postgres: at most N events per subject (an IP,
an address, an account) in a fixed window, whichever web process or machine sees them.

A row holds only a keyed hash of the subject (HMAC-SHA256 under a key derived from
OPTOUT_HASH_KEY for this purpose alone, so a limit row can never be matched against a
suppression) and its window; rows whose window has ended are deleted by ``purge_expired``,
which the worker's housekeeping runs (the regular job).

Use::

    SIGN_UP = Limit("signup_ip", count=20, window=600)
    limits = RateLimits(settings.hash_key)
    if not await limits.allow(conn, SIGN_UP, ip):
        ...  # over the limit: answer 429 (Retry-After: SIGN_UP.retry_after)
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import asyncpg

from mailer.addresses import MIN_HASH_KEY_BYTES
from mailer.db import queries
from mailer.errors import ConfigError

__all__ = ["Limit", "RateLimits", "purge_expired"]

# The purpose label of the limits key: a hash made here is useless anywhere else.
LIMITS_KEY_LABEL = b"optout-rate-limits-v1"
_NAME = re.compile(r"^[a-z_]{1,40}$")


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` events per subject in each ``window`` seconds. ``name`` keeps the
    counts of different limits apart (the same IP signs up and signs in)."""

    name: str
    count: int
    window: float

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"a limit's name is 1 to 40 of a-z and _: {self.name!r}")
        if self.count < 1 or self.window <= 0:
            raise ValueError("a limit needs a count of at least 1 and a positive window")

    @property
    def retry_after(self) -> int:
        """Seconds to tell a refused client (the longest it may have to wait)."""
        return max(1, round(self.window))


class RateLimits:
    """Counts events against limits in Postgres. One per process; holds only the derived key."""

    def __init__(self, hash_key: bytes) -> None:
        if not isinstance(hash_key, bytes) or len(hash_key) < MIN_HASH_KEY_BYTES:
            raise ConfigError(f"The hash key must be at least {MIN_HASH_KEY_BYTES} bytes.")
        self._key = hmac.new(hash_key, LIMITS_KEY_LABEL, hashlib.sha256).digest()

    def subject_key(self, limit: Limit, subject: str) -> bytes:
        """The keyed hash stored for ``subject`` under ``limit`` (32 bytes)."""
        message = f"{limit.name}\x00{subject}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def allow(self, conn: asyncpg.Connection, limit: Limit, subject: str) -> bool:
        """Count one event for ``subject``; False when it is over the limit in this window.

        One statement, committed on its own (or with the caller's transaction): a refused
        event counts too, so hammering does not reopen the window early."""
        allowed: bool = await queries().limits.hit(
            conn,
            name=limit.name,
            subject_key=self.subject_key(limit, subject),
            lim=limit.count,
            window_seconds=float(limit.window),
        )
        return allowed


async def purge_expired(conn: asyncpg.Connection) -> int:
    """Delete the rows whose window has ended; returns how many went."""
    count: int = await queries().limits.purge_expired(conn)
    return count
