"""The workspace's staff page (/dashboard/t/{tenant}/staff): the people with a role in this
tenant, inviting someone (the single-use link is shown once, to hand over), changing or removing
a role here, and, for installation admins, disabling an account. Rights are the admin API's
staff endpoints'; a tenant's admin acts only on roles in its own tenant."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mailer import staff_accounts
from mailer.errors import Forbidden, InvalidInput, NotFound, OptoutError
from unsubscribe_web.dashboard.workspace import (
    Workspace,
    opened,
    posted,
    see_other,
    text_field,
)
from unsubscribe_web.keys import SETTINGS

ROLE_CHOICES = ("marketing", "compliance", "client", "admin")


def add_routes(app: web.Application) -> None:
    base = "/dashboard/t/{tenant}/staff"
    app.router.add_get(base, show, name="ws_staff")
    app.router.add_post(f"{base}/invite", invite, name="ws_staff_invite")
    app.router.add_post(f"{base}/role", change_role, name="ws_staff_role")
    app.router.add_post(f"{base}/disable", disable, name="ws_staff_disable")


async def _page(ws: Workspace, *, status: int = 200, **context: Any) -> web.Response:
    people = await staff_accounts.list_accounts(ws.conn, ws.tenant_id)
    context = {"invited": None, "error": None, "form_values": None, "done": None} | context
    return ws.page(
        "workspace/staff.html",
        status=status,
        people=people,
        roles=ROLE_CHOICES,
        installation_admin=ws.principal.tenant_id is None,
        **context,
    )


async def show(request: web.Request) -> web.Response:
    async with opened(request, "list_staff") as ws:
        return await _page(ws, done=request.query.get("done"))


def _account_id(form: Any) -> int:
    raw = text_field(form, "account")
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("No such staff account.", field="account")
    return int(raw)


async def _in_this_tenant(ws: Workspace, account_id: int) -> None:
    """An account this tenant's admin may act on: one with a role here, never an
    installation admin (only installation admins act on those)."""
    account = await staff_accounts.by_id(ws.conn, account_id)
    held = {r["tenant_id"] for r in await staff_accounts.roles(ws.conn, account_id)}
    if ws.tenant_id not in held:
        raise NotFound("No such staff account.", field="account")
    if account["installation_admin"] and ws.principal.tenant_id is not None:
        raise Forbidden("Only an installation admin may change an installation admin.")


async def invite(request: web.Request) -> web.Response:
    async with posted(request, "invite_staff") as (ws, form):
        values = {
            "email": text_field(form, "email"),
            "name": text_field(form, "name"),
            "role": text_field(form, "role"),
        }
        if values["role"] not in ROLE_CHOICES:
            return await _page(
                ws, status=400, error=InvalidInput("Choose a role."), form_values=values
            )
        settings = request.app[SETTINGS]
        mailing = settings.staff.mail_from is not None
        try:
            link = await staff_accounts.invite(
                ws.conn,
                email=values["email"],
                name=values["name"],
                role=values["role"],
                tenant_id=ws.tenant_id,
                valid_seconds=settings.staff.invite_seconds,
                actor=ws.principal.actor,
                mail_base_url=settings.base_url if mailing else None,
            )
        except OptoutError as exc:
            return await _page(ws, status=400, error=exc, form_values=values)
        hours = round(settings.staff.invite_seconds / 3600)
        if mailing:
            return await _page(ws, invited={"email": link.email, "url": None, "hours": hours})
        url = settings.base_url.rstrip("/") + link.path()
        # The link is shown once, on this answer (not behind a redirect that could be reloaded
        # from history): whoever invites hands it over.
        return await _page(ws, invited={"email": link.email, "url": url, "hours": hours})


async def change_role(request: web.Request) -> web.Response:
    async with posted(request, "set_staff_role") as (ws, form):
        account_id = _account_id(form)
        await _in_this_tenant(ws, account_id)
        role = text_field(form, "role")
        if role not in (*ROLE_CHOICES, "none"):
            raise InvalidInput("Choose a role.", field="role")
        await staff_accounts.set_role(
            ws.conn,
            account_id,
            tenant_id=ws.tenant_id,
            role=None if role == "none" else role,
            actor=ws.principal.actor,
        )
        target = ws.url("ws_staff", {"done": "role"})
    return see_other(target)


async def disable(request: web.Request) -> web.Response:
    async with posted(request, "disable_staff") as (ws, form):
        if ws.principal.tenant_id is not None:
            raise Forbidden("Only an installation admin may disable an account.")
        account_id = _account_id(form)
        await _in_this_tenant(ws, account_id)
        await staff_accounts.disable(ws.conn, account_id, actor=ws.principal.actor)
        target = ws.url("ws_staff", {"done": "disabled"})
    return see_other(target)
