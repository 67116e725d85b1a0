"""Staff sign-in limits that slow a guesser without locking the admin out (issue 24, item 7).

Failures are counted per account and client IP: the first 4 cost nothing, the 5th makes that
pair wait 1 minute, each further one doubles the wait up to 1 hour. Another IP (the admin at
home while someone hammers from elsewhere) is not held up. Per account, across IPs, more than
100 failures in an hour only slows each further attempt by a few seconds. A reset link and
single sign-on do not pass here, so they keep working meanwhile. An unknown address is counted
exactly like a known one, so the limits reveal nothing either.

Only keyed hashes of the subjects are stored (HMAC under a key derived from OPTOUT_HASH_KEY for
this purpose alone, like mailer.limits).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import asyncpg

from mailer.db import queries

KEY_LABEL = b"optout-staff-signin-v1"
FREE_FAILURES = 5  # the 5th failure starts the delays
FIRST_DELAY = 60.0
MAX_DELAY = 3600.0
PAIR_WINDOW = 86_400.0  # a pair's failures start over after a quiet day
ACCOUNT_CEILING = 100  # failures per account per hour before every attempt is slowed
ACCOUNT_WINDOW = 3600.0
SLOW_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Verdict:
    wait: float  # seconds before this account+IP may try again (0: now)
    slow: bool  # the account is over its hourly ceiling: answer slowly


class SigninLimits:
    def __init__(self, hash_key: bytes) -> None:
        self._key = hmac.new(hash_key, KEY_LABEL, hashlib.sha256).digest()

    def _subject(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest()

    def _keys(self, email: str, ip: str) -> tuple[bytes, bytes]:
        account = email.strip().lower()
        return self._subject("pair", account, ip), self._subject("account", account)

    async def check(self, conn: asyncpg.Connection, email: str, ip: str) -> Verdict:
        pair, account = self._keys(email, ip)
        q = queries().staff
        wait: float = await q.signin_wait(conn, subject_key=pair)
        failures: int = await q.signin_failures(
            conn, subject_key=account, window_seconds=ACCOUNT_WINDOW
        )
        return Verdict(wait=wait, slow=failures >= ACCOUNT_CEILING)

    async def failed(self, conn: asyncpg.Connection, email: str, ip: str) -> None:
        pair, account = self._keys(email, ip)
        q = queries().staff
        await q.signin_failed(
            conn,
            subject_key=pair,
            window_seconds=PAIR_WINDOW,
            free=FREE_FAILURES,
            first_delay=FIRST_DELAY,
            max_delay=MAX_DELAY,
        )
        # The account's row only counts (its delay never applies): it slows, never locks.
        await q.signin_failed(
            conn,
            subject_key=account,
            window_seconds=ACCOUNT_WINDOW,
            free=2**31 - 1,
            first_delay=0.0,
            max_delay=0.0,
        )

    async def succeeded(self, conn: asyncpg.Connection, email: str, ip: str) -> None:
        pair, _ = self._keys(email, ip)
        await queries().staff.signin_succeeded(conn, subject_key=pair)


async def purge_expired(conn: asyncpg.Connection) -> int:
    """Delete the failure rows that can no longer count (the worker's housekeeping)."""
    count: int = await queries().staff.purge_signin_failures(conn)
    return count
