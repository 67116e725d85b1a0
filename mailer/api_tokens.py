"""API tokens: create (shown once), authenticate, list, expire, revoke; and what each role may do.

A token is 32 random bytes in base64url behind a fixed prefix; only its SHA-256 is stored.
The token carries all its entropy itself, so an unsalted fast hash is the right tool here
(there is nothing to guess), and the lookup is one probe of a unique index.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer import audit
from mailer.db import queries, rows
from mailer.errors import InvalidInput, NotFound, Unauthorized

log = logging.getLogger(__name__)

PREFIX = "optout_"
ACCOUNT_ACTOR = "account:"
ROLES = ("admin", "marketing", "compliance", "client")
MAX_LABEL = 200
# Longest token we bother hashing: anything longer is not ours (and not worth the CPU).
MAX_TOKEN_CHARS = 100

# What each role may do (DESIGN §1; issue 5). A right is "<area>.<verb>"; routes name one.
# Every role but admin is bound to one tenant; admin spans them all.
RIGHTS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "tenants.read",
            "tenants.write",
            "topics.read",
            "topics.write",
            "subscribers.read",
            "subscribers.write",
            "consent.read",
            "suppressions.read",
            "suppressions.write",
            "imports.read",
            "imports.write",
            "campaigns.read",
            "campaigns.write",
            "campaigns.send",
            "templates.read",
            "templates.write",
            "policy.read",
            "policy.write",
            "requests.read",
            "requests.create",
            "requests.write",
            "partners.export",
            "audit.read",
            # Staff accounts (issue 24): only admin tokens, which span every tenant.
            "staff.read",
            "staff.write",
            "webhooks.read",
            "webhooks.write",
        }
    ),
    "marketing": frozenset(
        {
            "tenants.read",
            "topics.read",
            "topics.write",
            "subscribers.read",
            # Unsubscribe or suppress one person, through the consent writer (issue 17).
            "subscribers.write",
            "imports.read",
            "imports.write",
            "campaigns.read",
            "campaigns.write",
            # Start or re-queue mail to the audience (the workspace's Send and Retry buttons).
            "campaigns.send",
            # The tenant's own email templates (issue 17).
            "templates.read",
            "templates.write",
            # Event endpoints (issue 22): seen, not changed.
            "webhooks.read",
        }
    ),
    "compliance": frozenset(
        {
            "tenants.read",
            "topics.read",
            "subscribers.read",
            "subscribers.write",
            "consent.read",
            "suppressions.read",
            "suppressions.write",
            "policy.read",
            "policy.write",
            "requests.read",
            "requests.create",
            "requests.write",
            "partners.export",
            "webhooks.read",
        }
    ),
    # Read and request, for its own tenant only.
    "client": frozenset(
        {
            "tenants.read",
            "topics.read",
            "subscribers.read",
            "consent.read",
            "suppressions.read",
            "imports.read",
            "campaigns.read",
            "policy.read",
            "requests.read",
            "requests.create",
            # The client is the controller: it names the systems its events go to (issue 22).
            "webhooks.read",
            "webhooks.write",
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an API token (its id), or a staff account signed in to the workspace
    (its id, token_id None); the role it holds here and its tenant (None: an admin, every
    tenant)."""

    token_id: int | None
    role: str
    tenant_id: int | None
    account_id: int | None = None

    @property
    def actor(self) -> str:
        # The audit log's "who": ids and role only, never a label or a name (the audit page
        # joins the account's name when it shows an entry).
        if self.token_id is None and self.account_id is not None:
            return f"{ACCOUNT_ACTOR}{self.account_id}:{self.role}"
        return f"token:{self.token_id}:{self.role}"

    def may(self, right: str) -> bool:
        return right in RIGHTS[self.role]

    def sees(self, tenant_id: int) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id


@dataclass(frozen=True, slots=True)
class NewToken:
    id: int
    secret: str  # the only time the token exists in clear
    role: str
    tenant_id: int | None
    expires_at: dt.datetime | None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_token(
    conn: asyncpg.Connection,
    *,
    role: str,
    tenant_id: int | None,
    label: str = "",
    expires_at: dt.datetime | None = None,
    actor: str = "cli",
    created_by: int | None = None,
) -> NewToken:
    """A new token; its secret is returned once and never stored. ``created_by``: the staff
    account that made it (disabling the account, or changing its roles, revokes it)."""
    if role not in ROLES:
        raise InvalidInput(f"The role must be one of {', '.join(ROLES)}.", field="role")
    if role == "admin" and tenant_id is not None:
        raise InvalidInput("An admin token spans every tenant: give no tenant.", field="tenant")
    if role != "admin" and tenant_id is None:
        raise InvalidInput(f"A {role} token belongs to one tenant: give --tenant.", field="tenant")
    if len(label) > MAX_LABEL or any(ord(c) < 32 for c in label):
        raise InvalidInput(f"The label must be one line of at most {MAX_LABEL} characters.")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidInput("The expiry needs a time zone.", field="expires_at")
    secret = PREFIX + secrets.token_urlsafe(32)
    async with conn.transaction():
        row = await queries().api_tokens.create_token(
            conn,
            tenant_id=tenant_id,
            role=role,
            token_hash=hash_token(secret),
            label=label,
            expires_at=expires_at,
            created_by=created_by,
        )
        await audit.record(
            conn,
            actor=actor,
            tenant_id=tenant_id,
            action="token.create",
            target_type="api_token",
            target_id=row["id"],
            detail={"role": role},
        )
    return NewToken(row["id"], secret, role, tenant_id, row["expires_at"])


async def authenticate(conn: asyncpg.Connection, header: str | None) -> Principal:
    """The caller behind an ``Authorization`` header; Unauthorized when there is none."""
    if not header:
        raise Unauthorized()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Use Authorization: Bearer TOKEN.")
    if len(token) > MAX_TOKEN_CHARS or not token.startswith(PREFIX):
        raise Unauthorized("The API token is not valid.")
    q = queries().api_tokens
    row = await q.token_by_hash(conn, token_hash=hash_token(token))
    if row is None:
        raise Unauthorized("The API token is not valid.")
    if row["revoked_at"] is not None:
        raise Unauthorized("The API token was revoked.")
    if row["expired"]:
        raise Unauthorized("The API token has expired.")
    await q.touch_token(conn, id=row["id"])
    return Principal(row["id"], row["role"], row["tenant_id"])


async def list_tokens(conn: asyncpg.Connection, tenant_id: int | None) -> list[asyncpg.Record]:
    """Tokens with their state; the secret is never shown again (only its hash exists)."""
    return await rows(queries().api_tokens.list_tokens(conn, tenant_id=tenant_id))


async def expire_token(
    conn: asyncpg.Connection, token_id: int, at: dt.datetime | None = None, *, actor: str = "cli"
) -> dict[str, Any]:
    """Make a token expire at ``at`` (default: now); expiry only moves earlier."""
    when = at or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        row = await queries().api_tokens.expire_token(conn, id=token_id, at=when)
        if row is None:
            raise NotFound(f"No API token {token_id}.", field="id")
        await audit.record(
            conn,
            actor=actor,
            tenant_id=row["tenant_id"],
            action="token.expire",
            target_type="api_token",
            target_id=token_id,
        )
    return dict(row)


async def revoke_token(
    conn: asyncpg.Connection, token_id: int, *, actor: str = "cli"
) -> dict[str, Any]:
    async with conn.transaction():
        row = await queries().api_tokens.revoke_token(conn, id=token_id)
        if row is None:
            raise NotFound(f"No API token {token_id}.", field="id")
        await audit.record(
            conn,
            actor=actor,
            tenant_id=row["tenant_id"],
            action="token.revoke",
            target_type="api_token",
            target_id=token_id,
        )
    log.info("api token revoked id=%s", token_id)
    return dict(row)
