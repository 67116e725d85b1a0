"""Bounces to a VERP address that no parser understood: kept (never a silent drop), counted,
and shown to a tenant's staff as plain text until their raw message expires or is erased."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from mailer.db import queries, rows

__all__ = ["SHOWN_CHARS", "UnparsedBounce", "count_unparsed", "list_unparsed"]

# Enough to read any notice; a huge returned attachment is cut, not shown whole.
SHOWN_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class UnparsedBounce:
    id: int
    delivery_id: int | None
    received_at: dt.datetime
    expires_at: dt.datetime | None
    text: str  # the raw message decoded for reading: to be escaped, never rendered as HTML
    cut: bool  # longer than SHOWN_CHARS


async def count_unparsed(conn: asyncpg.Connection, tenant_id: int | None = None) -> int:
    """Unparsed bounces still kept: all of them, or one tenant's."""
    q = queries().inbound
    if tenant_id is None:
        return int(await q.count_unparsed_bounces(conn))
    return int(await q.count_unparsed_bounces_of_tenant(conn, tenant_id=tenant_id))


async def list_unparsed(
    conn: asyncpg.Connection, tenant_id: int, limit: int = 20
) -> list[UnparsedBounce]:
    """A tenant's newest unparsed bounces, their raw bytes decoded (UTF-8, else Latin-1)."""
    found = []
    for row in await rows(
        queries().inbound.list_unparsed_bounces(conn, tenant_id=tenant_id, lim=limit)
    ):
        raw = bytes(row["raw"])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        found.append(
            UnparsedBounce(
                id=row["id"],
                delivery_id=row["delivery_id"],
                received_at=row["received_at"],
                expires_at=row["raw_expires_at"],
                text=text[:SHOWN_CHARS],
                cut=len(text) > SHOWN_CHARS,
            )
        )
    return found
