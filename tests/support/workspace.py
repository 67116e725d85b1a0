"""Helpers for the staff workspace's tests (integration and browser): two tenants ready to send
(DKIM key, postal address, confirmed subscribers), a token per role, signing in, the CSRF
token of a page, and a snapshot of everything a workspace POST could change."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import asyncpg

from mailer import api_tokens
from mailer.config import Settings
from mailer.sending import campaigns
from tests.conftest import probes
from tests.support.mailer_env import add_subscribers, make_tenant
from tests.support.staff import session_as, staff_probes
from unsubscribe_web.dashboard.workspace import COOKIE, SECURE_COOKIE, app_cookie_name
from unsubscribe_web.keys import POOL

ROLES = ("admin", "marketing", "compliance", "client")
BODY = (
    "# Spring news for {{ name }}\n\n"
    "Our garden opens on **Monday**.\n\n"
    "[Unsubscribe]({{ unsubscribe_url }}) · [Your preferences]({{ preferences_url }})\n"
)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Tenant:
    id: int
    slug: str
    topic_id: int
    people: dict[int, str]
    tokens: dict[str, str] = field(default_factory=dict)


async def ready_tenant(
    conn: asyncpg.Connection,
    settings: Settings,
    tmp_path: Path,
    slug: str,
    *,
    people: int = 3,
    postal: str | None = "Acme Inc.\n1 Main Street\nSpringfield",
) -> Tenant:
    """A tenant that can send: DKIM key, postal address, ``people`` confirmed subscribers on
    its topic ``newsletter``; a token per role (the admin's spans every tenant)."""
    tenant, topic = await make_tenant(conn, tmp_path, slug=slug, postal=postal)
    found = await add_subscribers(
        conn, settings, tenant["id"], topic["id"], people, prefix=f"{slug}-r"
    )
    t = Tenant(tenant["id"], slug, topic["id"], found)
    for role in ROLES:
        token = await api_tokens.create_token(
            conn, role=role, tenant_id=None if role == "admin" else tenant["id"]
        )
        t.tokens[role] = token.secret
    return t


async def draft(
    conn: asyncpg.Connection, t: Tenant, *, name: str = "Spring", text: str = BODY
) -> asyncpg.Record:
    return await campaigns.create_draft(
        conn,
        tenant_id=t.id,
        topic_slug="newsletter",
        name=name,
        subject="Spring news",
        content={"format": "markdown", "body": text, "text": "", "preheader": "Hello"},
    )


def session_cookie(set_cookie: str) -> dict[str, str]:
    """The Cookie header a browser sends after the sign-in's Set-Cookie."""
    jar = SimpleCookie(set_cookie)
    name = SECURE_COOKIE if SECURE_COOKIE in jar else COOKIE
    return {"Cookie": f"{name}={jar[name].value}"}


async def sign_in(client: Any, secret: str) -> dict[str, str]:
    """The Cookie header of a staff account signed in with the role and tenant of the API token
    ``secret`` (the account is made on first use). The session's id is the token's text, so a
    CSRF value derived from the token (``csrf_for(app, secret)``) is this session's."""
    async with client.app[POOL].acquire() as conn:
        principal = await api_tokens.authenticate(conn, f"Bearer {secret}")
        await session_as(conn, principal, secret)
    client.session.cookie_jar.clear()
    return {"Cookie": f"{app_cookie_name(client.app)}={secret}"}


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def state(conn: asyncpg.Connection) -> dict[str, Any]:
    """Everything a workspace action could change: campaigns, deliveries, templates, tenant
    wording, the people's subscriptions, ledger, suppressions and requests, data requests,
    staff accounts and roles, event endpoints with their deliveries and log, the audit log."""
    return {
        "people": dict(await probes().workspace_people(conn)),
        "templates": [dict(r) async for r in probes().workspace_templates(conn)],
        "wording": [dict(r) async for r in probes().all_tenant_wording(conn)],
        "campaigns": [dict(r) async for r in probes().workspace_campaigns(conn)],
        "deliveries": [dict(r) async for r in probes().workspace_deliveries(conn)],
        "audit": await probes().audit_count(conn),
        "requests": [dict(r) async for r in probes().workspace_requests(conn)],
        "subscribers": [dict(r) async for r in probes().workspace_subscriber_rows(conn)],
        "staff": [dict(r) async for r in staff_probes().staff_state(conn)],
        "webhooks": [dict(r) async for r in probes().workspace_event_state(conn)],
    }


async def page_of(client: Any, cookie: dict[str, str], path: str, status: int = 200) -> str:
    """A workspace GET's HTML, asserting its status."""
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text: str = await response.text()
    assert response.status == status, text
    return text


async def submit(
    client: Any, cookie: dict[str, str], path: str, data: dict[str, str], csrf: str | None
) -> Any:
    """A workspace form POST (with ``csrf`` unless None), not following the redirect."""
    form = dict(data) | ({"csrf": csrf} if csrf is not None else {})
    return await client.post(path, data=form, headers=cookie, allow_redirects=False)
