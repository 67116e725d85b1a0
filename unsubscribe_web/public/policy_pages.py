"""The public privacy-policy pages: ``/policy/{tenant}`` (the version in effect, with a
prominent notice and a readable diff while a newer one is announced) and
``/policy/{tenant}/versions`` (every version). Read-only; time comes from ``CLOCK``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import asyncpg
import markupsafe
from aiohttp import web

from mailer import tenants
from mailer.i18n import choose
from mailer.rights import policy, subprocessors
from unsubscribe_web.pages import connection, page_language, render, use_language

Clock = Callable[[], dt.datetime]
# Tests put a fixed clock here to see the page before, during and after the notice window.
CLOCK: web.AppKey[Clock] = web.AppKey("policy_clock")
# A public document: indexable and briefly cacheable, unlike the token pages.
# The page's language follows Accept-Language (no person here), so caches must key on it.
PUBLIC_HEADERS = {
    "X-Robots-Tag": "all",
    "Cache-Control": "public, max-age=300",
    "Vary": "Accept-Language",
}


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


def _plain(line: policy.DiffLine) -> policy.DiffLine:
    """A diff line as a reader sees the text: Markdown marks ("## ", "**", "- ") rendered away,
    so the diff shows words, not syntax."""
    if not line.text.strip():
        return line
    text = markupsafe.Markup(policy.render_markdown(line.text)).striptags()
    return policy.DiffLine(line.kind, text)


def _languages(request: web.Request, tenant: asyncpg.Record) -> str:
    """Decide the page's language (``?lang=``, the browser's, the tenant's default) and return
    the policy body's: one body per version, in the language it was written in, which is the
    tenant's default language (docs/web.md)."""
    use_language(request, page_language(request, tenant["default_language"]))
    return choose(tenant["default_language"])


async def show(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        tenant = await tenants.get_tenant(conn, request.match_info["tenant"])
        view = await policy.view(conn, tenant["id"], _now(request.app))
        # The companies that help provide the service, as they stand today (STANDARDS 41).
        own = await subprocessors.register(conn, tenant["id"])
        installation = await subprocessors.register(conn, None)
    zone = ZoneInfo(tenant["time_zone"])
    response = render(
        request,
        "policy.html",
        body_lang=_languages(request, tenant),
        tenant=tenant,
        contact=tenants.contact_of(tenant),
        current=view.current,
        upcoming=view.upcoming,
        diff=[_plain(line) for line in view.diff],
        current_html=_html(view.current["body_md"]) if view.current else None,
        upcoming_html=_html(view.upcoming["body_md"]) if view.upcoming else None,
        zone=zone,
        versions_url=request.app.router["policy_versions"].url_for(tenant=tenant["slug"]),
        subprocessors=[*own, *installation],
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
        body_lang=_languages(request, tenant),
        tenant=tenant,
        contact=tenants.contact_of(tenant),
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
        body_lang=_languages(request, tenant),
        tenant=tenant,
        contact=tenants.contact_of(tenant),
        version=version,
        body_html=_html(version["body_md"]),
        zone=ZoneInfo(tenant["time_zone"]),
        versions_url=request.app.router["policy_versions"].url_for(tenant=tenant["slug"]),
    )
    response.headers.update(PUBLIC_HEADERS)
    return response
