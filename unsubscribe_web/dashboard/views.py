"""The staff dashboard (/dashboard): the workspace's home, a read-only page per tenant with
campaigns and their progress, recent unsubscribes, the policy versions, overdue data requests
and two plots; the workspace's pages (unsubscribe_web.dashboard.campaigns) hang below it.

Staff sign in with their API token; each role sees what its API rights read, a client token
only its own tenant. The token is kept in an HttpOnly, SameSite=Strict cookie scoped to
/dashboard and checked again on every request (unsubscribe_web.dashboard.workspace), so a
revoked or expired token stops working at once. Nothing here changes data: the page is read
in one read-only transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from markupsafe import Markup

from mailer.addresses import mask
from mailer.api_tokens import Principal
from mailer.db import queries, rows
from mailer.errors import InvalidAddress, Unauthorized, UnknownTenant
from mailer.limits import Limit
from mailer.resources import STATIC_DIR
from mailer.rights import deadlines, policy, privacy
from mailer.sending import campaigns
from unsubscribe_web.api.spec import SLUG_PATTERN
from unsubscribe_web.dashboard.svg_plot import bar_chart
from unsubscribe_web.dashboard.workspace import (
    COOKIE,
    COOKIE_PATH,
    CROSS_SITE,
    WRONG_TOKEN,
    from_another_site,
    secure,
    staff,
    tenant_choices,
)
from unsubscribe_web.keys import LIMITS
from unsubscribe_web.pages import connection, render
from unsubscribe_web.security import client_ip
from unsubscribe_web.static import add_stylesheet

RECENT_CAMPAIGNS = 20
RECENT_UNSUBSCRIBES = 50
UNSUBSCRIBE_DAYS = 30
SEND_MINUTES = 60
STYLESHEET = STATIC_DIR / "dashboard.css"

# Sign-in attempts per client IP, counted across every web process (mailer.limits): a token
# cannot be guessed, but each attempt is a lookup.
SIGN_INS_PER_IP = Limit("dashboard_login", count=20, window=600)
TOO_MANY = "Too many sign-in attempts from your address. Wait ten minutes and try again."
SESSION_ENDED = "Your session has ended. Sign in again with a valid token."
# What a ledger row with no topic withdrew from.
WITHOUT_TOPIC = {
    "unsubscribe_all": "All marketing",
    "partner_withdraw": "Partner sharing",
    "suppress": "All mail",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", show, name="dashboard")
    app.router.add_post("/dashboard/login", login, name="dashboard_login")
    app.router.add_post("/dashboard/logout", logout, name="dashboard_logout")
    # The dashboard's wider layout.
    add_stylesheet(app, "/static/dashboard.css", STYLESHEET, "dashboard_stylesheet")


# --- handlers -----------------------------------------------------------------------------------


async def show(request: web.Request) -> web.Response:
    """GET /dashboard: the login form without a session, else the chosen tenant's page."""
    token = request.cookies.get(COOKIE)
    if not token:
        return _login_page(request)
    async with connection(request) as conn:
        try:
            principal = await staff(conn, token)
        except Unauthorized:
            response = _login_page(request, status=401, message=SESSION_ENDED)
            _clear_cookie(request, response)
            return response
        tenant, choices = await _chosen_tenant(conn, principal, request.query.get("tenant"))
        now = dt.datetime.now(dt.UTC)
        # One snapshot, and Postgres itself refuses any write from here on.
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            view = await _view(conn, principal, tenant, now) if tenant is not None else None
    return render(
        request,
        "dashboard.html",
        css=request.app.router["dashboard_stylesheet"].url_for(),
        logout=request.app.router["dashboard_logout"].url_for(),
        here=request.app.router["dashboard"].url_for(),
        role=principal.role,
        choices=[{"slug": t["slug"], "name": t["name"]} for t in choices],
        pick_tenant=principal.tenant_id is None,
        view=view,
        campaigns_url=(
            request.app.router["ws_campaigns"].url_for(tenant=view.tenant["slug"])
            if view is not None and "campaigns" in view.sections
            else None
        ),
        policy_url=(
            request.app.router["ws_policy"].url_for(tenant=view.tenant["slug"])
            if view is not None and principal.may("policy.read")
            else None
        ),
    )


async def login(request: web.Request) -> web.Response:
    """POST /dashboard/login: check the token, keep it in the session cookie, back to the page."""
    if from_another_site(request):
        # Another site's form could sign a browser in with the other site's token.
        return _login_page(request, status=403, message=CROSS_SITE)
    async with connection(request) as conn:
        allowed = await request.app[LIMITS].allow(conn, SIGN_INS_PER_IP, client_ip(request) or "")
    if not allowed:
        return _login_page(request, status=429, message=TOO_MANY)
    form = await request.post()
    token = form.get("token")
    if not isinstance(token, str) or not token.strip():
        return _login_page(request, status=401, message=WRONG_TOKEN)
    async with connection(request) as conn:
        try:
            await staff(conn, token.strip())
        except Unauthorized:
            return _login_page(request, status=401, message=WRONG_TOKEN)
    response = _see_other(request)
    response.set_cookie(
        COOKIE,
        token.strip(),
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /dashboard/logout: forget the session cookie."""
    response = _see_other(request)
    _clear_cookie(request, response)
    return response


# --- the page's data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignLine:
    id: int
    name: str
    topic: str
    status: str
    stats: campaigns.Stats

    @property
    def percent(self) -> int:
        """Share of the audience sent so far."""
        return round(100 * self.stats.sent / self.stats.total) if self.stats.total else 0


@dataclass(frozen=True, slots=True)
class View:
    tenant: dict[str, str]
    zone: str
    sections: frozenset[str]  # what this role may read (see _SECTIONS)
    campaigns: list[CampaignLine]
    sends_chart: Markup | None
    sends_total: int
    unsubscribes: list[dict[str, str]]
    channels: list[tuple[str, int]]
    unsubscribes_chart: Markup | None
    policy_current: dict[str, Any] | None
    policy_upcoming: dict[str, Any] | None
    overdue: list[dict[str, Any]]


# Each section is shown to the roles with the API right that reads the same data. The policy
# versions are on the public policy page anyway, so every staff role sees them.
_SECTIONS = {
    "campaigns": "campaigns.read",
    "unsubscribes": "subscribers.read",
    "requests": "requests.read",
}


async def _view(
    conn: asyncpg.Connection, principal: Principal, tenant: asyncpg.Record, now: dt.datetime
) -> View:
    tenant_id: int = tenant["id"]
    zone = ZoneInfo(tenant["time_zone"])
    sections = frozenset(
        {name for name, right in _SECTIONS.items() if principal.may(right)} | {"policy"}
    )
    q = queries().dashboard
    lines: list[CampaignLine] = []
    sends_chart = None
    sends_total = 0
    if "campaigns" in sections:
        for row in await rows(q.recent_campaigns(conn, tenant_id=tenant_id, lim=RECENT_CAMPAIGNS)):
            stats = await campaigns.stats(conn, tenant_id, row["id"])
            lines.append(
                CampaignLine(row["id"], row["name"], row["topic_name"], row["status"], stats)
            )
        per_minute = await rows(
            q.sends_per_minute(conn, tenant_id=tenant_id, now=now, minutes=SEND_MINUTES)
        )
        sends_total = sum(r["n"] for r in per_minute)
        sends_chart = Markup(  # safe: bar_chart escapes every text it writes
            bar_chart(
                [(r["minute"].astimezone(zone), r["n"]) for r in per_minute],
                title=f"Sends per minute, last {SEND_MINUTES} minutes ({zone.key})",
                time_format="%H:%M",
            )
        )
    unsubscribes: list[dict[str, str]] = []
    channels: list[tuple[str, int]] = []
    unsubscribes_chart = None
    if "unsubscribes" in sections:
        recent = q.recent_withdrawals(conn, tenant_id=tenant_id, lim=RECENT_UNSUBSCRIBES)
        unsubscribes = [_unsubscribe(r, zone) for r in await rows(recent)]
        since = now - dt.timedelta(days=UNSUBSCRIBE_DAYS)
        channels = [
            (r["source"], r["n"])
            for r in await rows(q.withdrawals_by_channel(conn, tenant_id=tenant_id, since=since))
        ]
        per_day = await rows(
            q.withdrawals_per_day(conn, tenant_id=tenant_id, now=now, days=UNSUBSCRIBE_DAYS)
        )
        unsubscribes_chart = Markup(  # safe: bar_chart escapes every text it writes
            bar_chart(
                [(r["day"], r["n"]) for r in per_day],
                title=f"Unsubscribes per day, last {UNSUBSCRIBE_DAYS} days ({zone.key})",
            )
        )
    versions = await policy.view(conn, tenant_id, now)
    overdue: list[dict[str, Any]] = []
    if "requests" in sections:
        found = await privacy.list_requests(conn, tenant_id=tenant_id, overdue_at=now)
        overdue = [_overdue(r, zone, now) for r in found]
    return View(
        tenant={"slug": tenant["slug"], "name": tenant["name"]},
        zone=zone.key,
        sections=sections,
        campaigns=lines,
        sends_chart=sends_chart,
        sends_total=sends_total,
        unsubscribes=unsubscribes,
        channels=channels,
        unsubscribes_chart=unsubscribes_chart,
        policy_current=_version(versions.current, zone),
        policy_upcoming=_version(versions.upcoming, zone),
        overdue=overdue,
    )


def _local(moment: dt.datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _masked(email: str | None) -> str:
    if email is None:
        return "(erased)"
    try:
        return mask(email)
    except InvalidAddress:  # stored before today's rules: show nothing rather than fail
        return "(hidden)"


def _unsubscribe(row: asyncpg.Record, zone: ZoneInfo) -> dict[str, str]:
    return {
        "time": _local(row["occurred_at"], zone),
        "address": _masked(row["email"]),
        "topic": row["topic_name"] or WITHOUT_TOPIC.get(row["action"], "-"),
        "channel": row["source"],
    }


def _version(row: asyncpg.Record | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "version": row["version"],
        "summary": row["summary"],
        "effective": _local(row["effective_at"], zone),
        "published": _local(row["published_at"], zone),
    }


def _overdue(row: asyncpg.Record, zone: ZoneInfo, now: dt.datetime) -> dict[str, Any]:
    due: dt.datetime = row["extended_due_at"] or row["due_at"]
    return {
        "id": row["id"],
        "kind": row["kind"],
        "status": row["status"],
        "received": row["received_at"].astimezone(zone).date().isoformat(),
        "last_day": deadlines.last_day(due, zone).isoformat(),
        "extended": row["extended_due_at"] is not None,
        "days_late": max((now - due).days, 0),
    }


# --- sessions -----------------------------------------------------------------------------------


async def _chosen_tenant(
    conn: asyncpg.Connection, principal: Principal, slug: str | None
) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """The tenant to show and those the picker offers. Another tenant's slug answers 404, word
    for word like a tenant that does not exist (as the API does)."""
    choices = await tenant_choices(conn, principal)
    if not slug:
        return (choices[0] if choices else None), choices
    if not re.fullmatch(SLUG_PATTERN, slug):
        raise UnknownTenant("No such tenant.", field="tenant")
    chosen = next((t for t in choices if t["slug"] == slug), None)
    if chosen is None:
        raise UnknownTenant("No such tenant.", field="tenant")
    return chosen, choices


def _clear_cookie(request: web.Request, response: web.Response) -> None:
    response.del_cookie(
        COOKIE, path=COOKIE_PATH, secure=secure(request), httponly=True, samesite="Strict"
    )


def _see_other(request: web.Request) -> web.Response:
    # A response, not a raised HTTPSeeOther, so the cookie header travels with it.
    location = str(request.app.router["dashboard"].url_for())
    return web.Response(status=303, headers={"Location": location})


def _login_page(
    request: web.Request, *, status: int = 200, message: str | None = None
) -> web.Response:
    return render(
        request,
        "dashboard_login.html",
        status=status,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        action=request.app.router["dashboard_login"].url_for(),
        message=message,
    )
