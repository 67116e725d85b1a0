"""Staff accounts: a person (name, email, status) with a role per tenant, or installation admin.
Invitation and password reset by single-use links (only their hash is stored); disabling or
changing roles ends the account's sessions and revokes the API tokens it created, unless the
caller keeps them (audited either way).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from mailer import audit, staff_mail, staff_sessions
from mailer.addresses import parse_address
from mailer.api_tokens import ROLES
from mailer.db import queries, rows
from mailer.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer.passwords import Hasher

INVITE = "invite"
RESET = "reset"
SIGNIN = "signin"
RESET_SECONDS = 3600.0  # a reset link works for an hour (DESIGN G5's single-use links)
MAX_NAME = 200
MAX_LINK_CHARS = 100
STATUSES = ("invited", "active", "disabled")


@dataclass(frozen=True, slots=True)
class Link:
    """A single-use link's secret (shown or mailed once) and the account it is for."""

    account_id: int
    email: str
    secret: str
    purpose: str

    def path(self) -> str:
        folder = {INVITE: "invitation", RESET: "reset", SIGNIN: "signin"}[self.purpose]
        return f"/dashboard/{folder}/{self.secret}"


def link_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _clean_name(name: str) -> str:
    name = name.strip()
    if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"The name must be one line of at most {MAX_NAME} characters.")
    return name


def _check_role(role: str | None, tenant_id: int | None, installation_admin: bool) -> None:
    if installation_admin:
        if role is not None or tenant_id is not None:
            raise InvalidInput("An installation admin spans every tenant: give no role.")
        return
    if role not in ROLES:
        raise InvalidInput(f"The role must be one of {', '.join(ROLES)}.", field="role")
    if tenant_id is None:
        raise InvalidInput("A role belongs to one tenant: give the tenant.", field="tenant")


async def _new_link(
    conn: asyncpg.Connection, account_id: int, email: str, purpose: str, seconds: float
) -> Link:
    secret = secrets.token_urlsafe(32)
    q = queries().staff
    await q.retire_links(conn, account_id=account_id, purpose=purpose)
    await q.create_link(
        conn,
        account_id=account_id,
        purpose=purpose,
        link_hash=link_hash(secret),
        seconds=float(seconds),
    )
    return Link(account_id, email, secret, purpose)


async def invite(
    conn: asyncpg.Connection,
    *,
    email: str,
    name: str = "",
    role: str | None = None,
    tenant_id: int | None = None,
    installation_admin: bool = False,
    valid_seconds: float,
    actor: str = "cli",
    mail_base_url: str | None = None,
) -> Link:
    """A new account, invited: its role and a single-use link to set a password. Inviting an
    address that is still only invited sends a fresh link (the old one stops working). With
    ``mail_base_url`` the link is mailed (queued in this transaction) from the installation."""
    address = parse_address(email).as_given
    name = _clean_name(name)
    _check_role(role, tenant_id, installation_admin)
    q = queries().staff
    async with conn.transaction():
        row = await q.create_account(
            conn,
            name=name,
            email=address,
            installation_admin=installation_admin,
            created_by=audit.account_of(actor),
        )
        if row is None:
            found = await q.account_by_email(conn, email=address)
            if found is None or found["status"] != "invited":
                raise Conflict("An account with that address exists already.", field="email")
            row = found
        if role is not None and tenant_id is not None:
            await q.set_role(conn, account_id=row["id"], tenant_id=tenant_id, role=role)
        link = await _new_link(conn, row["id"], address, INVITE, valid_seconds)
        if mail_base_url is not None:
            await mail_link(conn, link, mail_base_url, valid_seconds)
        await audit.record(
            conn,
            actor=actor,
            tenant_id=tenant_id,
            action="staff.invite",
            target_type="staff_account",
            target_id=row["id"],
            detail={"role": role or "installation_admin"},
        )
    return link


async def mail_link(
    conn: asyncpg.Connection, link: Link, base_url: str, valid_seconds: float
) -> int:
    """Queue the mail carrying ``link`` to its account's address (the caller's transaction)."""
    template = {INVITE: staff_mail.INVITE, RESET: staff_mail.RESET}[link.purpose]
    base = base_url.rstrip("/")
    return await staff_mail.enqueue(
        conn,
        recipient=link.email,
        template=template,
        values={"url": base + link.path(), "base_url": base, "hours": round(valid_seconds / 3600)},
    )


async def resend(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    valid_seconds: float,
    actor: str = "cli",
    mail_base_url: str | None = None,
) -> Link:
    """A new invitation link for an account that has not set its password yet."""
    async with conn.transaction():
        row = await _account(conn, account_id)
        if row["status"] != "invited":
            raise Conflict("That account has accepted its invitation already.")
        link = await _new_link(conn, account_id, row["email"], INVITE, valid_seconds)
        if mail_base_url is not None:
            await mail_link(conn, link, mail_base_url, valid_seconds)
        await audit.record(
            conn,
            actor=actor,
            action="staff.invite_resend",
            target_type="staff_account",
            target_id=account_id,
        )
    return link


async def request_reset(
    conn: asyncpg.Connection,
    email: str,
    *,
    actor: str | None = None,
    mail_base_url: str | None = None,
) -> Link | None:
    """A reset link for an active account; None for any other address (the caller answers the
    same either way, so the form tells no one which addresses have accounts)."""
    try:
        address = parse_address(email).as_given
    except InvalidInput:
        return None
    row = await queries().staff.account_by_email(conn, email=address)
    if row is None or row["status"] != "active":
        return None
    async with conn.transaction():
        link = await _new_link(conn, row["id"], row["email"], RESET, RESET_SECONDS)
        if mail_base_url is not None:
            await mail_link(conn, link, mail_base_url, RESET_SECONDS)
        await audit.record(
            conn,
            actor=actor or f"account:{row['id']}:self",
            action="staff.reset_request",
            target_type="staff_account",
            target_id=row["id"],
        )
    return link


async def demo_account(
    conn: asyncpg.Connection,
    *,
    name: str,
    email: str,
    role: str | None,
    tenant_id: int | None,
    link_seconds: float,
) -> Link:
    """`optout demo`'s account (made once, active) and a fresh one-time sign-in link for it."""
    q = queries().staff
    async with conn.transaction():
        account_id: int = await q.ensure_demo_account(
            conn, name=name, email=email, installation_admin=role is None
        )
        if role is not None and tenant_id is not None:
            await q.set_role(conn, account_id=account_id, tenant_id=tenant_id, role=role)
        link = await _new_link(conn, account_id, email, SIGNIN, link_seconds)
        await audit.record(
            conn,
            actor="demo",
            action="staff.signin_link",
            target_type="staff_account",
            target_id=account_id,
        )
    return link


async def use_signin_link(conn: asyncpg.Connection, secret: str) -> int:
    """Spend a one-time sign-in link; the account id, or NotFound."""
    if not secret or len(secret) > MAX_LINK_CHARS:
        raise NotFound("This link was already used or has expired.")
    used = await queries().staff.use_link(conn, link_hash=link_hash(secret), purpose=SIGNIN)
    if used is None:
        raise NotFound("This link was already used or has expired.")
    account_id: int = used["account_id"]
    return account_id


async def peek_link(conn: asyncpg.Connection, secret: str, purpose: str) -> asyncpg.Record | None:
    """The account a link is for, without using it (a GET shows the form)."""
    if not secret or len(secret) > MAX_LINK_CHARS:
        return None
    row: asyncpg.Record | None = await queries().staff.peek_link(
        conn, link_hash=link_hash(secret), purpose=purpose
    )
    return row


async def set_password_by_link(
    conn: asyncpg.Connection, hasher: Hasher, secret: str, purpose: str, password: str
) -> int:
    """Use a single-use link to set the account's password; every session of the account ends.
    Returns the account id. NotFound when the link is unknown, used or expired."""
    if not secret or len(secret) > MAX_LINK_CHARS:
        raise NotFound("This link was already used or has expired.")
    hashed = await hasher.hash(password)  # refuses a weak password before the link is spent
    q = queries().staff
    async with conn.transaction():
        used = await q.use_link(conn, link_hash=link_hash(secret), purpose=purpose)
        if used is None:
            raise NotFound("This link was already used or has expired.")
        account_id: int = used["account_id"]
        row = await _account(conn, account_id)
        if row["status"] == "disabled":
            raise NotFound("This link was already used or has expired.")
        await q.set_password(conn, id=account_id, password_hash=hashed)
        await staff_sessions.end_all(conn, account_id)
        await audit.record(
            conn,
            actor=f"account:{account_id}:self",
            action="staff.password_set" if purpose == INVITE else "staff.password_reset",
            target_type="staff_account",
            target_id=account_id,
        )
    return account_id


async def change_password(
    conn: asyncpg.Connection,
    hasher: Hasher,
    account_id: int,
    current: str,
    new: str,
    *,
    keep_session: int,
) -> None:
    """A signed-in person changes their password; their other sessions end."""
    row = await _account(conn, account_id)
    if not await hasher.verify(row["password_hash"], current):
        raise Forbidden("The current password is not right.")
    hashed = await hasher.hash(new)
    async with conn.transaction():
        await queries().staff.set_password(conn, id=account_id, password_hash=hashed)
        await staff_sessions.end_all(conn, account_id, keep=keep_session)
        await audit.record(
            conn,
            actor=f"account:{account_id}:self",
            action="staff.password_change",
            target_type="staff_account",
            target_id=account_id,
        )


async def disable(
    conn: asyncpg.Connection, account_id: int, *, actor: str = "cli", keep_tokens: bool = False
) -> dict[str, int]:
    """Disable an account: its sessions end at once, and the API tokens it created are revoked
    unless ``keep_tokens`` (recorded in the audit line)."""
    q = queries().staff
    async with conn.transaction():
        await _account(conn, account_id)
        await q.set_status(conn, id=account_id, status="disabled")
        ended = await staff_sessions.end_all(conn, account_id)
        revoked = 0 if keep_tokens else await q.revoke_tokens_of(conn, account_id=account_id)
        await audit.record(
            conn,
            actor=actor,
            action="staff.disable",
            target_type="staff_account",
            target_id=account_id,
            detail={"sessions_ended": ended, "tokens_revoked": revoked, "kept_tokens": keep_tokens},
        )
    return {"sessions_ended": ended, "tokens_revoked": revoked}


async def set_role(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    tenant_id: int,
    role: str | None,
    actor: str = "cli",
    keep_tokens: bool = False,
) -> dict[str, int]:
    """Give the account ``role`` in a tenant (None: no role there). Its sessions end (a new
    sign-in picks up the new rights) and its tokens are revoked unless ``keep_tokens``."""
    if role is not None and role not in ROLES:
        raise InvalidInput(f"The role must be one of {', '.join(ROLES)}.", field="role")
    q = queries().staff
    async with conn.transaction():
        await _account(conn, account_id)
        if role is None:
            await q.drop_role(conn, account_id=account_id, tenant_id=tenant_id)
        else:
            await q.set_role(conn, account_id=account_id, tenant_id=tenant_id, role=role)
        ended = await staff_sessions.end_all(conn, account_id)
        revoked = 0 if keep_tokens else await q.revoke_tokens_of(conn, account_id=account_id)
        await audit.record(
            conn,
            actor=actor,
            tenant_id=tenant_id,
            action="staff.role",
            target_type="staff_account",
            target_id=account_id,
            detail={
                "role": role,
                "sessions_ended": ended,
                "tokens_revoked": revoked,
                "kept_tokens": keep_tokens,
            },
        )
    return {"sessions_ended": ended, "tokens_revoked": revoked}


async def reset_second_factor(
    conn: asyncpg.Connection, account_id: int, *, actor: str = "cli"
) -> None:
    """Remove a lost authenticator (installation admins only, checked by the caller); the
    account's sessions end and it enrols again at its next sign-in."""
    async with conn.transaction():
        await _account(conn, account_id)
        await queries().staff.set_totp(conn, id=account_id, secret=None)
        await queries().staff.drop_recovery_codes(conn, account_id=account_id)
        await staff_sessions.end_all(conn, account_id)
        await audit.record(
            conn,
            actor=actor,
            action="staff.reset_2fa",
            target_type="staff_account",
            target_id=account_id,
        )


async def list_accounts(conn: asyncpg.Connection, tenant_id: int | None) -> list[asyncpg.Record]:
    return await rows(queries().staff.list_accounts(conn, tenant_id=tenant_id))


async def roles(conn: asyncpg.Connection, account_id: int) -> list[asyncpg.Record]:
    """The account's (tenant_id, slug, role) rows."""
    return await rows(queries().staff.roles_of(conn, account_id=account_id))


async def by_email(conn: asyncpg.Connection, email: str) -> asyncpg.Record | None:
    found: asyncpg.Record | None = await queries().staff.account_by_email(conn, email=email)
    return found


async def notice_new_signin(
    conn: asyncpg.Connection,
    account_id: int,
    *,
    ip: str,
    user_agent: str,
    base_url: str,
    now: dt.datetime,
) -> bool:
    """Before a sign-in's session starts: mail the person when the account has signed in
    before but never from this address and browser. Whether a notice was queued."""
    ip, user_agent = ip[:64], user_agent[:300]  # as the session row keeps them
    new: bool = await queries().staff_mail.signin_is_new(
        conn, account_id=account_id, ip=ip, user_agent=user_agent
    )
    if not new:
        return False
    account = await _account(conn, account_id)
    await staff_mail.enqueue(
        conn,
        recipient=account["email"],
        template=staff_mail.NEW_SIGNIN,
        values={
            "base_url": base_url.rstrip("/"),
            "time": f"{now:%Y-%m-%d %H:%M} UTC",
            "ip": ip or "unknown",
            "user_agent": user_agent or "unknown",
        },
    )
    return True


async def by_id(conn: asyncpg.Connection, account_id: int) -> asyncpg.Record:
    return await _account(conn, account_id)


async def _account(conn: asyncpg.Connection, account_id: int) -> asyncpg.Record:
    row = await queries().staff.account_by_id(conn, id=account_id)
    if row is None:
        raise NotFound(f"No staff account {account_id}.", field="id")
    return row
