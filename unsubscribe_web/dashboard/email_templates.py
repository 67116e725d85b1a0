"""The workspace's template pages (issue 17): the tenant's own email templates, a new one from
the built-in newsletter layout, the editor of the HTML and text parts with its versions, and
the preview for a sample recipient in a sandboxed frame.

Handlers are thin: parse the form, call mailer.sending.tenant_templates (which refuses a
template at save, storing nothing), audit, redirect (post/redirect/get).
"""

from __future__ import annotations

import contextlib

import asyncpg
from aiohttp import web

from mailer.errors import InvalidInput, NotFound, OptoutError
from mailer.sending import sandbox, tenant_templates
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.dashboard.campaigns import PREVIEW_CSP
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/templates"
ONE = BASE + "/{template_id}"
# Both parts at their limit, every octet percent-encoded by the browser, and the rest.
MAX_FORM = 2 * 3 * sandbox.MAX_SOURCE + 64 * 1024
NOTICES = {
    "created": "Template created from the built-in newsletter layout: version 1.",
    "saved": "Saved as a new version.",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_page, name="ws_templates")
    app.router.add_post(BASE, create, name="ws_template_create")
    app.router.add_get(ONE, template_page, name="ws_template")
    app.router.add_post(ONE, save, name="ws_template_save")
    app.router.add_get(ONE + "/preview.html", preview_frame, name="ws_template_preview")


async def list_page(request: web.Request) -> web.Response:
    """GET: the tenant's templates, newest version of each."""
    async with opened(request, "list_templates") as ws:
        return await _list(ws)


async def _list(
    ws: Workspace, *, error: OptoutError | None = None, name: str = "", status: int = 200
) -> web.Response:
    return ws.page(
        "workspace/templates.html",
        status=status,
        templates=await tenant_templates.list_templates(ws.conn, ws.tenant_id),
        error=error,
        name=name,
    )


async def template_page(request: web.Request) -> web.Response:
    """GET: the editor at the newest version (or ``?version=N``, to read or restore it)."""
    async with opened(request, "get_template") as ws:
        template = await _template(ws)
        number = path_id(ws.request.query.get("version", ""))
        shown = await tenant_templates.version(ws.conn, template["id"], number)
        values = {"html": shown["html"], "text": shown["body_text"]}
        return await _editor(ws, template, values, shown["version"])


async def preview_frame(request: web.Request) -> web.Response:
    """GET: the newest version's HTML part for a sample recipient, for the page's sandboxed
    frame (no script runs, nothing remote loads)."""
    async with opened(request, "preview_template") as ws:
        template = await _template(ws)
        html_part, _text = await _preview(ws, template["id"])
    return web.Response(
        text=html_part,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


async def create(request: web.Request) -> web.Response:
    """POST: a new template from the built-in newsletter layout."""
    async with posted(request, "create_template") as (ws, form):
        name = text_field(form, "name")
        try:
            async with ws.conn.transaction():
                row = await tenant_templates.create(
                    ws.conn, ws.tenant, name, created_by=ws.principal.actor
                )
                await ws.audit("create_template", ("email_template", row["id"]))
        except OptoutError as exc:
            return await _list(ws, error=exc, name=name, status=400)
        target = ws.url("ws_template", {"done": "created"}, template_id=row["id"])
    return see_other(target)


async def save(request: web.Request) -> web.Response:
    """POST: the editor's parts as the next version; refused (with the one reason, the
    submitted parts kept in the form) when the checks fail."""
    async with posted(request, "save_template", max_size=MAX_FORM) as (ws, form):
        template = await _template(ws)
        values = {
            "html": text_field(form, "html", multiline=True),
            "text": text_field(form, "text", multiline=True),
        }
        try:
            async with ws.conn.transaction():
                await tenant_templates.save(
                    ws.conn,
                    ws.tenant,
                    template["id"],
                    html=values["html"],
                    text=values["text"],
                    created_by=ws.principal.actor,
                )
                await ws.audit("save_template", ("email_template", template["id"]))
        except OptoutError as exc:
            return await _editor(ws, template, values, None, error=exc, status=400)
        target = ws.url("ws_template", {"done": "saved"}, template_id=template["id"])
    return see_other(target)


# --- helpers ------------------------------------------------------------------------------------


async def _template(ws: Workspace) -> asyncpg.Record:
    """The template in the URL, inside the tenant: another tenant's id reads like none."""
    template_id = path_id(ws.request.match_info["template_id"])
    if template_id is None:
        raise tenant_templates.NO_TEMPLATE
    return await tenant_templates.get(ws.conn, ws.tenant_id, template_id)


async def _preview(ws: Workspace, template_id: int) -> tuple[str, str]:
    settings = ws.request.app[SETTINGS]
    try:
        return await tenant_templates.preview(ws.conn, settings, ws.tenant, template_id)
    except InvalidInput:
        # A version saved before the tenant changed (e.g. its postal address) may fail now;
        # the editor shows why, the frame stays empty.
        return "", ""


async def _editor(
    ws: Workspace,
    template: asyncpg.Record,
    values: dict[str, str],
    shown_version: int | None,
    *,
    error: OptoutError | None = None,
    status: int = 200,
) -> web.Response:
    versions = await tenant_templates.versions(ws.conn, template["id"])
    newest = versions[0]["version"] if versions else None
    preview_text = ""
    preview_error = None
    with contextlib.suppress(NotFound):
        try:
            _html, preview_text = await tenant_templates.preview(
                ws.conn, ws.request.app[SETTINGS], ws.tenant, template["id"]
            )
        except InvalidInput as exc:
            preview_error = exc.message
    return ws.page(
        "workspace/template.html",
        status=status,
        tpl=template,
        values=values,
        versions=versions,
        shown_version=shown_version,
        newest=newest,
        error=error,
        notice=NOTICES.get(ws.request.query.get("done", "")),
        preview_text=preview_text,
        preview_error=preview_error,
        limit_kib=sandbox.MAX_SOURCE // 1024,
        seconds=sandbox.RENDER_SECONDS,
        frame_url=ws.url("ws_template_preview", template_id=template["id"]),
    )
