"""The public privacy-policy pages: ``/policy/{tenant}`` (the version in effect, with a
prominent notice and a readable diff while a newer one is announced) and
``/policy/{tenant}/versions`` (every version). Read-only; time comes from ``CLOCK``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import markupsafe
from aiohttp import web

from mailer import tenants
from mailer.rights import policy
from unsubscribe_web.pages import connection, render

Clock = Callable[[], dt.datetime]
# Tests put a fixed clock here to see the page before, during and after the notice window.
CLOCK: web.AppKey[Clock] = web.AppKey("policy_clock")
# A public document: indexable and briefly cacheable, unlike the token pages.
PUBLIC_HEADERS = {"X-Robots-Tag": "all", "Cache-Control": "public, max-age=300"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/policy/{tenant}", show, name="policy")
    app.router.add_get("/policy/{tenant}/versions", list_versions, name="policy_versions")
    app.router.add_get(
        "/policy/{tenant}/versions/{version:[0-9]{1,9}}", show_version, name="policy_version"
    )


def _now(app: web.Application) -> dt.datetime:
    clock = app.get(CLOCK)
    return clock() if clock is not None else dt.datetime.now(dt.UTC)


def _html(text: str) -> markupsafe.Markup:
    # render_markdown escapes raw HTML in the policy text; its output is safe to embed.
    return markupsafe.Markup(policy.render_markdown(text))


async def show(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        tenant = await tenants.get_tenant(conn, request.match_info["tenant"])
        view = await policy.view(conn, tenant["id"], _now(request.app))
    zone = ZoneInfo(tenant["time_zone"])
    response = render(
        request,
        "policy.html",
        tenant=tenant,
        current=view.current,
        upcoming=view.upcoming,
        diff=view.diff,
        current_html=_html(view.current["body_md"]) if view.current else None,
        upcoming_html=_html(view.upcoming["body_md"]) if view.upcoming else None,
        zone=zone,
        versions_url=request.app.router["policy_versions"].url_for(tenant=tenant["slug"]),
    )
    response.headers.update(PUBLIC_HEADERS)
    return response


async def list_versions(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        tenant = await tenants.get_tenant(conn, request.match_info["tenant"])
        found = await policy.versions(conn, tenant["id"])
    now = _now(request.app)
    router = request.app.router["policy_version"]
    response = render(
        request,
        "policy_versions.html",
        tenant=tenant,
        versions=[
            {
                "row": v,
                "url": router.url_for(tenant=tenant["slug"], version=str(v["version"])),
                "in_effect": v["effective_at"] <= now,
            }
            for v in found
        ],
        zone=ZoneInfo(tenant["time_zone"]),
        policy_url=request.app.router["policy"].url_for(tenant=tenant["slug"]),
    )
    response.headers.update(PUBLIC_HEADERS)
    return response


async def show_version(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        tenant = await tenants.get_tenant(conn, request.match_info["tenant"])
        version = await policy.get_version(conn, tenant["id"], int(request.match_info["version"]))
    response = render(
        request,
        "policy_version.html",
        tenant=tenant,
        version=version,
        body_html=_html(version["body_md"]),
        zone=ZoneInfo(tenant["time_zone"]),
        versions_url=request.app.router["policy_versions"].url_for(tenant=tenant["slug"]),
    )
    response.headers.update(PUBLIC_HEADERS)
    return response
