"""Staff accounts for tests: an active account per role and tenant, and a session for it in the
app's database."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiosql
import asyncpg

from mailer import staff_accounts
from mailer.api_tokens import Principal
from mailer.passwords import Hasher


def staff_probes() -> Any:
    return aiosql.from_path(Path(__file__).parent.parent / "sql" / "staff_probes.sql", "asyncpg")


async def account_for(
    conn: asyncpg.Connection, role: str, tenant_id: int | None, *, name: str | None = None
) -> int:
    """The active account holding ``role`` in ``tenant_id`` (None: an installation admin),
    made on first use; one per role and tenant, so a test's sign-ins share it."""
    email = f"{role}.{tenant_id or 'all'}@staff.example"
    found = await staff_accounts.by_email(conn, email)
    if found is not None:
        account_id: int = found["id"]
        return account_id
    probes = staff_probes()
    account_id = await probes.active_account(
        conn,
        name=name or f"{role.title()} person of {tenant_id or 'every tenant'}",
        email=email,
        installation_admin=tenant_id is None,
    )
    if tenant_id is not None:
        await probes.grant(conn, account_id=account_id, tenant_id=tenant_id, role=role)
    return account_id


async def session_as(conn: asyncpg.Connection, principal: Principal, raw: str) -> int:
    """A live session with the id ``raw`` for the account holding ``principal``'s role."""
    account_id = await account_for(conn, principal.role, principal.tenant_id)
    await staff_probes().session_with_hash(
        conn, account_id=account_id, id_hash=hashlib.sha256(raw.encode()).digest()
    )
    return account_id


async def person(
    conn: asyncpg.Connection,
    hasher: Hasher,
    *,
    email: str,
    password: str,
    role: str | None,
    tenant_id: int | None,
    name: str = "",
) -> int:
    """An account made the real way: invited, then its password set from the invitation link."""
    link = await staff_accounts.invite(
        conn,
        email=email,
        name=name,
        role=role,
        tenant_id=tenant_id,
        installation_admin=role is None,
        valid_seconds=3600,
        actor="test",
    )
    return await staff_accounts.set_password_by_link(
        conn, hasher, link.secret, staff_accounts.INVITE, password
    )
