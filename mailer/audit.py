"""The audit log: every staff action (API or CLI) with who, which token, what, when, on which
id. Ids and codes only: never an address, a name or a token."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg

from mailer.db import queries, rows

MAX_PAGE = 500
# "account:ID:role" (mailer.api_tokens.Principal.actor); ASCII digits only.
_ACCOUNT_ACTOR = re.compile(r"account:([1-9][0-9]{0,18})(?::|$)")


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
    account_id: int | None = None,
) -> int:
    """Append one entry. Call it inside the transaction of the action it records, so the
    action and its record commit together or not at all. A staff account acting in the
    workspace is named by its actor ("account:ID:role"), so every caller passing a principal's
    actor records the account without knowing about accounts."""
    if account_id is None:
        account_id = account_of(actor)
    entry_id: int = await queries().audit.record(
        conn,
        actor=actor,
        account_id=account_id,
        token_id=token_id,
        tenant_id=tenant_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        detail=dict(detail or {}),
    )
    return entry_id


def account_of(actor: str) -> int | None:
    """The staff account named by an actor string, if it names one."""
    found = _ACCOUNT_ACTOR.match(actor)
    return int(found.group(1)) if found else None


async def entries(
    conn: asyncpg.Connection,
    *,
    tenant_id: int | None,
    before_id: int | None,
    limit: int,
    account_id: int | None = None,
) -> list[asyncpg.Record]:
    """Newest first; ``before_id`` is the cursor (the last id of the previous page);
    ``account_id``: only what that person did (in the workspace, or with a token they made)."""
    return await rows(
        queries().audit.list_entries(
            conn,
            tenant_id=tenant_id,
            account_id=account_id,
            before_id=before_id if before_id is not None else 2**63 - 1,
            lim=min(limit, MAX_PAGE),
        )
    )
