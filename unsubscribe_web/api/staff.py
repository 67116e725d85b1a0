"""Admin API routes over staff accounts (issue 24): list, invite (the single-use link is mailed
from OPTOUT_STAFF_MAIL_FROM; without that sender it is in the answer, shown once), set a role,
disable, reset two-factor. Staff accounts span tenants, so only admin tokens (every tenant) hold
these rights; each change is audited by mailer with the token as actor."""

from __future__ import annotations

from typing import Any

import asyncpg

from mailer import staff_accounts, tenants
from mailer.api_tokens import ROLES
from mailer.errors import InvalidInput, NotFound
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import BOOLEAN, ID, SLUG, Endpoint, Param, obj, string

ACCOUNT = Param("account_id", ID, location="path", required=True)
NO_ACCOUNT = NotFound("No such staff account.", field="account_id")
LIST = {"type": "object", "properties": {"items": {"type": "array"}}}


def _account(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "status": row["status"],
        "installation_admin": row["installation_admin"],
        "two_factor": row["has_totp"],
        "roles": [
            dict(zip(("tenant", "role"), r.split(":", 1), strict=True)) for r in row["roles"]
        ],
    }


def _role(pair: str) -> dict[str, str]:
    tenant, _, role = pair.partition(":")
    return {"tenant": tenant, "role": role}


async def _tenant_id(ctx: Ctx, slug: str) -> int:
    row = await tenants.get_tenant(ctx.conn, slug)
    tenant_id: int = row["id"]
    return tenant_id


async def list_staff(ctx: Ctx) -> Any:
    return {"items": [_account(r) for r in await staff_accounts.list_accounts(ctx.conn, None)]}


async def invite_staff(ctx: Ctx) -> Any:
    body = ctx.body
    admin = bool(body.get("installation_admin"))
    if not admin and not (body.get("role") and body.get("tenant")):
        raise InvalidInput("Give a role and its tenant, or installation_admin.", field="role")
    settings = ctx.settings
    mailing = settings.staff.mail_from is not None
    link = await staff_accounts.invite(
        ctx.conn,
        email=body["email"],
        name=body.get("name", ""),
        role=None if admin else body["role"],
        tenant_id=None if admin else await _tenant_id(ctx, body["tenant"]),
        installation_admin=admin,
        valid_seconds=settings.staff.invite_seconds,
        actor=ctx.principal.actor,
        mail_base_url=settings.base_url if mailing else None,
    )
    answer: dict[str, Any] = {
        "id": link.account_id,
        "valid_hours": round(settings.staff.invite_seconds / 3600),
    }
    if mailing:
        # Mailed to the person: the link is in no answer, so no caller ever holds it.
        return answer | {"mailed_to": link.email}
    return answer | {"invitation_url": settings.base_url.rstrip("/") + link.path()}


async def set_staff_role(ctx: Ctx) -> Any:
    account_id = ctx.path_id("account_id", NO_ACCOUNT)
    done = await staff_accounts.set_role(
        ctx.conn,
        account_id,
        tenant_id=await _tenant_id(ctx, ctx.body["tenant"]),
        role=ctx.body.get("role"),
        actor=ctx.principal.actor,
        keep_tokens=bool(ctx.body.get("keep_tokens")),
    )
    return {"id": account_id} | done


async def disable_staff(ctx: Ctx) -> Any:
    account_id = ctx.path_id("account_id", NO_ACCOUNT)
    done = await staff_accounts.disable(
        ctx.conn,
        account_id,
        actor=ctx.principal.actor,
        keep_tokens=bool(ctx.body.get("keep_tokens")),
    )
    return {"id": account_id, "status": "disabled"} | done


async def reset_staff_2fa(ctx: Ctx) -> Any:
    account_id = ctx.path_id("account_id", NO_ACCOUNT)
    await staff_accounts.reset_second_factor(ctx.conn, account_id, actor=ctx.principal.actor)
    return {"id": account_id, "two_factor": False}


KEEP = {"keep_tokens": BOOLEAN}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/staff",
        "list_staff",
        "Staff accounts: status, two-factor, roles per tenant",
        list_staff,
        "staff.read",
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/staff",
        "invite_staff",
        "Invite a person: the account and its single-use link to set a password (mailed from "
        "OPTOUT_STAFF_MAIL_FROM when set, else in this answer, shown once)",
        invite_staff,
        "staff.write",
        body=obj(
            {
                "email": string(254, min_length=3),
                "name": string(staff_accounts.MAX_NAME),
                "role": string(enum=ROLES),
                "tenant": SLUG,
                "installation_admin": BOOLEAN,
            },
            required=("email",),
        ),
        status=201,
        domain_audit=True,
    ),
    Endpoint(
        "POST",
        "/staff/{account_id}/role",
        "set_staff_role",
        "Set (role null: remove) an account's role in a tenant; its sessions end and its API "
        "tokens are revoked unless keep_tokens",
        set_staff_role,
        "staff.write",
        params=(ACCOUNT,),
        body=obj(
            {"tenant": SLUG, "role": {"type": ["string", "null"], "enum": [*ROLES, None]}} | KEEP,
            required=("tenant", "role"),
        ),
        domain_audit=True,
    ),
    Endpoint(
        "POST",
        "/staff/{account_id}/disable",
        "disable_staff",
        "Disable an account: its sessions end, its API tokens are revoked unless keep_tokens",
        disable_staff,
        "staff.write",
        params=(ACCOUNT,),
        body=obj(KEEP),
        domain_audit=True,
    ),
    Endpoint(
        "POST",
        "/staff/{account_id}/reset-2fa",
        "reset_staff_2fa",
        "Remove a lost authenticator; the account's sessions end",
        reset_staff_2fa,
        "staff.write",
        params=(ACCOUNT,),
        domain_audit=True,
    ),
)
