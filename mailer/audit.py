"""The audit log: every staff action (API or CLI) with who, which token, what, when, on which
id. Ids and codes only: never an address, a name or a token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from mailer.db import queries, rows

MAX_PAGE = 500


async def record(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    tenant_id: int | None = None,
    token_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry. Call it inside the transaction of the action it records, so the
    action and its record commit together or not at all."""
    entry_id: int = await queries().audit.record(
        conn,
        actor=actor,
        token_id=token_id,
        tenant_id=tenant_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=dict(detail or {}),
    )
    return entry_id


async def entries(
    conn: asyncpg.Connection, *, tenant_id: int | None, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first; ``before_id`` is the cursor (the last id of the previous page)."""
    return await rows(
        queries().audit.list_entries(
            conn,
            tenant_id=tenant_id,
            before_id=before_id if before_id is not None else 2**63 - 1,
            lim=min(limit, MAX_PAGE),
        )
    )
