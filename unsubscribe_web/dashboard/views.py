"""The staff dashboard (/dashboard): the workspace's home, a read-only page per tenant with
campaigns and their progress, recent unsubscribes, the policy versions, overdue data requests
and two plots; the workspace's pages (unsubscribe_web.dashboard.campaigns) hang below it.

Staff sign in with their account (unsubscribe_web.dashboard.accounts); each role sees what its
API rights read, a client only its own tenant. The session is checked again on every request
(unsubscribe_web.dashboard.workspace), so a disabled account or an ended session stops at
once. Nothing here changes data: the page is read in one read-only transaction.
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
from mailer.inbound.unparsed import count_unparsed, list_unparsed
from mailer.resources import STATIC_DIR
from mailer.rights import deadlines, policy, privacy
from mailer.sending import campaigns
from unsubscribe_web.api.spec import SLUG_PATTERN
from unsubscribe_web.dashboard.accounts import login_page
from unsubscribe_web.dashboard.svg_plot import bar_chart
from unsubscribe_web.dashboard.workspace import (
    clear_session_cookie,
    session_token,
    signed_in,
    tenant_choices,
)
from unsubscribe_web.pages import connection, render
from unsubscribe_web.static import add_stylesheet

RECENT_CAMPAIGNS = 20
RECENT_UNSUBSCRIBES = 50
UNSUBSCRIBE_DAYS = 30
SEND_MINUTES = 60
STYLESHEET = STATIC_DIR / "dashboard.css"

SESSION_ENDED = "Your session has ended. Sign in again."
# What a ledger row with no topic withdrew from.
WITHOUT_TOPIC = {
    "unsubscribe_all": "All marketing",
    "partner_withdraw": "Partner sharing",
    "suppress": "All mail",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", show, name="dashboard")
    # The dashboard's wider layout.
    add_stylesheet(app, "/static/dashboard.css", STYLESHEET, "dashboard_stylesheet")


# --- handlers -----------------------------------------------------------------------------------


async def show(request: web.Request) -> web.Response:
    """GET /dashboard: the login form without a session, else the chosen tenant's page."""
    token = session_token(request)
    if not token:
        return login_page(request)
    slug = request.query.get("tenant") or None
    if slug is not None and not re.fullmatch(SLUG_PATTERN, slug):
        raise UnknownTenant("No such tenant.", field="tenant")
    async with connection(request) as conn:
        try:
            principal, account = await signed_in(request, conn, token, slug)
        except Unauthorized:
            response = login_page(request, status=401, message=SESSION_ENDED)
            clear_session_cookie(request, response)
            return response
        tenant, choices = await _chosen_tenant(conn, principal, slug)
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
        person=account.name or account.email if account is not None else None,
        choices=[{"slug": t["slug"], "name": t["name"]} for t in choices],
        pick_tenant=principal.tenant_id is None or len(choices) > 1,
        view=view,
        campaigns_url=(
            request.app.router["ws_campaigns"].url_for(tenant=view.tenant["slug"])
            if view is not None and "campaigns" in view.sections
            else None
        ),
        requests_url=(
            request.app.router["ws_requests"].url_for(tenant=view.tenant["slug"])
            if view is not None and "requests" in view.sections
            else None
        ),
        policy_url=(
            request.app.router["ws_policy"].url_for(tenant=view.tenant["slug"])
            if view is not None and principal.may("policy.read")
            else None
        ),
    )


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
    unparsed_count: int = 0
    unparsed: tuple[dict[str, Any], ...] = ()


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
    unparsed_count = 0
    unparsed: list[dict[str, Any]] = []
    if "campaigns" in sections:
        # Bounces no parser understood: kept for staff to read (issue 23, never a silent drop).
        unparsed_count = await count_unparsed(conn, tenant_id)
        unparsed = [
            {
                "id": u.id,
                "delivery": u.delivery_id,
                "received": _local(u.received_at, zone),
                "expires": _local(u.expires_at, zone) if u.expires_at else None,
                "text": u.text,
                "cut": u.cut,
            }
            for u in await list_unparsed(conn, tenant_id)
        ]
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
        unparsed_count=unparsed_count,
        unparsed=tuple(unparsed),
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
