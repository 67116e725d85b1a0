"""The signed-in person's own page (/dashboard/account): their sessions (each can be ended),
a new password (the other sessions end), and two-factor enrolment (a QR code drawn here, a code
to prove the app has the secret, recovery codes shown once; the session gets a new id)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web
from multidict import MultiDictProxy

from mailer import api_tokens, staff_accounts, staff_sessions, totp
from mailer.db import queries, rows
from mailer.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from unsubscribe_web.dashboard.workspace import (
    CSP,
    CSRF_FIELD,
    EXPIRED_FORM,
    csrf_ok,
    csrf_value,
    from_another_site,
    see_other,
    session_token,
    set_session_cookie,
    sign_in_again,
    text_field,
)
from unsubscribe_web.keys import HASHER, SECRET_BOX, SETTINGS
from unsubscribe_web.pages import connection, render

MAX_TOKEN_DAYS = 365


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard/account", show, name="staff_account")
    app.router.add_post("/dashboard/account/password", change_password, name="staff_password")
    app.router.add_post("/dashboard/account/totp", enrol, name="staff_enrol")
    app.router.add_post("/dashboard/account/tokens", create_token, name="staff_create_token")
    app.router.add_post(
        "/dashboard/account/tokens/{token_id:[0-9]{1,18}}/revoke",
        revoke_token,
        name="staff_revoke_token",
    )
    app.router.add_post(
        "/dashboard/account/sessions/{session_id:[0-9]{1,18}}/end",
        end_session,
        name="staff_end_session",
    )


async def _session(
    request: web.Request, conn: asyncpg.Connection, raw: str | None
) -> staff_sessions.Session:
    if raw is None:
        raise Unauthorized("Your session has ended. Sign in again.")
    found = await staff_sessions.resume(
        conn, raw, idle_seconds=request.app[SETTINGS].staff.session_idle
    )
    if found is None:
        raise Unauthorized("Your session has ended. Sign in again.")
    return found


@contextlib.asynccontextmanager
async def _posted(
    request: web.Request,
) -> AsyncIterator[tuple[asyncpg.Connection, staff_sessions.Session, MultiDictProxy[Any]]]:
    """A POST of the person's own page: from our page, with the session's CSRF value."""
    if from_another_site(request):
        raise Forbidden(EXPIRED_FORM)
    raw = session_token(request)
    form = await request.post()
    if raw is None or not csrf_ok(request, raw, form.get(CSRF_FIELD)):
        raise Forbidden(EXPIRED_FORM)
    async with connection(request) as conn:
        yield conn, await _session(request, conn, raw), form


def _page(
    request: web.Request, raw: str, session: staff_sessions.Session, **context: Any
) -> web.Response:
    router = request.app.router
    response = render(
        request,
        "staff_account.html",
        css=router["dashboard_stylesheet"].url_for(),
        logout=router["dashboard_logout"].url_for(),
        home=router["dashboard"].url_for(),
        csrf=csrf_value(request, raw),
        me=session,
        **context,
    )
    response.headers["Content-Security-Policy"] = CSP
    return response


async def show(request: web.Request) -> web.Response:
    raw = session_token(request)
    async with connection(request) as conn:
        try:
            session = await _session(request, conn, raw)
        except Unauthorized:
            raise sign_in_again(request) from None
        assert raw is not None
        return _page(request, raw, session, **await _context(request, conn, session))


async def _context(
    request: web.Request, conn: asyncpg.Connection, session: staff_sessions.Session
) -> dict[str, Any]:
    idle = request.app[SETTINGS].staff.session_idle
    live = await staff_sessions.live(conn, session.account_id, idle_seconds=idle)
    context: dict[str, Any] = {
        "sessions": live,
        "current": session.id,
        "enrol_required": request.query.get("enrol") == "required",
        "tokens": await rows(queries().staff.tokens_of(conn, account_id=session.account_id)),
        "token_tenants": await _token_choices(conn, session),
        "new_token": None,
    }
    if not session.has_totp:
        # The candidate secret travels sealed in the form (bound to this account), so
        # nothing is stored before the person proves their app has it.
        secret = totp.new_secret()
        sealed = request.app[SECRET_BOX].seal(session.account_id, secret)
        context |= {
            "qr": totp.qr_svg(secret, session.email),
            "secret": secret,
            "sealed": base64.urlsafe_b64encode(sealed).decode(),
        }
    return context


async def change_password(request: web.Request) -> web.Response:
    async with _posted(request) as (conn, session, form):
        new = form.get("new_password")
        current = form.get("current_password")
        if not isinstance(new, str) or not isinstance(current, str):
            raise InvalidInput("Give the current and the new password.")
        if new != form.get("new_password_again"):
            raise InvalidInput("The two new passwords differ.", field="new_password")
        await staff_accounts.change_password(
            conn, request.app[HASHER], session.account_id, current, new, keep_session=session.id
        )
    return see_other(str(request.app.router["staff_account"].url_for()) + "?done=password")


async def end_session(request: web.Request) -> web.Response:
    async with _posted(request) as (conn, session, _form):
        await staff_sessions.end_one(
            conn, session.account_id, int(request.match_info["session_id"])
        )
    return see_other(str(request.app.router["staff_account"].url_for()))


async def enrol(request: web.Request) -> web.Response:
    async with _posted(request) as (conn, session, form):
        try:
            sealed = base64.urlsafe_b64decode(text_field(form, "sealed"))
        except (binascii.Error, ValueError):
            raise InvalidInput("This form has expired. Reload the page.") from None
        secret = request.app[SECRET_BOX].open(session.account_id, sealed)
        if secret is None:
            raise InvalidInput("This form has expired. Reload the page.")
        codes = await totp.enrol(
            conn,
            request.app[SECRET_BOX],
            session.account_id,
            secret,
            text_field(form, "code"),
            keep_session=None,
        )
        # A new second factor, a new session id (the old one ended with the others).
        new_raw = await staff_sessions.start(
            conn,
            session.account_id,
            max_seconds=request.app[SETTINGS].staff.session_max,
            user_agent=request.headers.get("User-Agent", ""),
        )
    response = render(
        request,
        "staff_recovery_codes.html",
        css=request.app.router["dashboard_stylesheet"].url_for(),
        account=request.app.router["staff_account"].url_for(),
        codes=codes,
    )
    response.headers["Content-Security-Policy"] = CSP
    set_session_cookie(request, response, new_raw)
    return response


async def _token_choices(
    conn: asyncpg.Connection, session: staff_sessions.Session
) -> list[dict[str, str]]:
    """Where the person may make a token: each tenant with its role there ("" with the
    installation admin's token, which spans every tenant)."""
    if session.installation_admin:
        return [{"slug": "", "label": "every tenant (admin)"}]
    return [
        {"slug": r["slug"], "label": f"{r['slug']} ({r['role']})"}
        for r in await staff_accounts.roles(conn, session.account_id)
    ]


async def create_token(request: web.Request) -> web.Response:
    """An API token for a machine, made by this person with their own role in the tenant they
    pick: named, expiring, shown once; disabling the person or changing their roles revokes
    it."""
    async with _posted(request) as (conn, session, form):
        name = text_field(form, "name")
        if not name:
            raise InvalidInput("Name the token (what it is for).", field="name")
        days = text_field(form, "days")
        if not days.isdigit() or not 1 <= int(days) <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"The expiry is 1 to {MAX_TOKEN_DAYS} days.", field="days")
        slug = text_field(form, "tenant")
        if session.installation_admin:
            role, tenant_id = "admin", None
        else:
            held = {r["slug"]: r for r in await staff_accounts.roles(conn, session.account_id)}
            if slug not in held:
                raise NotFound("No such tenant.", field="tenant")
            role, tenant_id = held[slug]["role"], held[slug]["tenant_id"]
            if role == "admin":
                # A tenant's admin token would span every tenant: not from a tenant role.
                raise Forbidden("A tenant's admin makes tokens with the CLI's --role admin only.")
        made = await api_tokens.create_token(
            conn,
            role=role,
            tenant_id=tenant_id,
            label=name,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=int(days)),
            actor=f"account:{session.account_id}:{role}",
            created_by=session.account_id,
        )
        raw = session_token(request)
        assert raw is not None
        context = await _context(request, conn, session)
        context["new_token"] = {"id": made.id, "secret": made.secret, "name": name}
        # Shown on this answer only (never behind a redirect a reload could show again).
        return _page(request, raw, session, **context)


async def revoke_token(request: web.Request) -> web.Response:
    async with _posted(request) as (conn, session, _form):
        token_id = int(request.match_info["token_id"])
        mine = await queries().staff.token_of(conn, id=token_id, account_id=session.account_id)
        if mine is None:
            raise NotFound("No such API token.", field="token")
        await api_tokens.revoke_token(conn, token_id, actor=f"account:{session.account_id}:self")
    return see_other(str(request.app.router["staff_account"].url_for()))
