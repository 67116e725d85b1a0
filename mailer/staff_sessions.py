"""Staff sessions, held in Postgres: a random id lives only in the person's cookie, the row holds
its SHA-256. A session ends on sign-out, after an idle time, at an absolute end, and when its
account is disabled, changes password, role or second factor (issue 24)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from mailer.db import queries, rows

ID_BYTES = 32
MAX_ID_CHARS = 100


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and the person behind it."""

    id: int
    account_id: int
    name: str
    email: str
    installation_admin: bool
    has_totp: bool = False


def _hash(raw: str) -> bytes:
    return hashlib.sha256(raw.encode()).digest()


async def start(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    max_seconds: float,
    ip: str = "",
    user_agent: str = "",
    awaiting_code: bool = False,
) -> str:
    """A new session; returns its id, which only the cookie keeps. ``awaiting_code``: the
    password was right, the second factor is still to come; such a session opens nothing."""
    raw = secrets.token_urlsafe(ID_BYTES)
    await queries().staff.create_session(
        conn,
        account_id=account_id,
        id_hash=_hash(raw),
        max_seconds=float(max_seconds),
        ip=ip[:64],
        user_agent=user_agent[:300],
        awaiting_code=awaiting_code,
    )
    return raw


async def awaiting(conn: asyncpg.Connection, raw: str) -> asyncpg.Record | None:
    """The sign-in behind a cookie that waits for its second factor (id, account_id, email,
    totp_secret), or None."""
    if not raw or len(raw) > MAX_ID_CHARS:
        return None
    found: asyncpg.Record | None = await queries().staff.awaiting_session(conn, id_hash=_hash(raw))
    return found


async def resume(conn: asyncpg.Connection, raw: str, *, idle_seconds: float) -> Session | None:
    """The session behind a cookie's id, kept alive by this request; None when it has ended
    (signed out, idle, past its end, or its account is no longer active)."""
    if not raw or len(raw) > MAX_ID_CHARS:
        return None
    row = await queries().staff.touch_session(
        conn, id_hash=_hash(raw), idle_seconds=float(idle_seconds)
    )
    if row is None:
        return None
    return Session(
        row["id"],
        row["account_id"],
        row["name"],
        row["email"],
        row["installation_admin"],
        row["has_totp"],
    )


async def end(conn: asyncpg.Connection, raw: str) -> int | None:
    """End the session behind a cookie's id; the account it belonged to, if it was live."""
    if not raw or len(raw) > MAX_ID_CHARS:
        return None
    row = await queries().staff.end_session(conn, id_hash=_hash(raw))
    return None if row is None else int(row["account_id"])


async def end_all(conn: asyncpg.Connection, account_id: int, *, keep: int | None = None) -> int:
    """End every live session of an account (but ``keep``); returns how many ended."""
    count: int = await queries().staff.end_sessions(conn, account_id=account_id, keep_id=keep)
    return count


async def end_one(conn: asyncpg.Connection, account_id: int, session_id: int) -> bool:
    found = await queries().staff.end_session_by_id(conn, id=session_id, account_id=account_id)
    return found is not None


async def live(
    conn: asyncpg.Connection, account_id: int, *, idle_seconds: float
) -> list[asyncpg.Record]:
    return await rows(
        queries().staff.live_sessions(conn, account_id=account_id, idle_seconds=float(idle_seconds))
    )
