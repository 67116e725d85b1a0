"""The workspace's campaign pages: the list, the editor (Markdown or HTML body, text part,
duplicate), the campaign page with its inline checks, preview, actions and live progress.

Handlers are thin: parse the form, call mailer.sending, audit, redirect (post/redirect/get).
A refused action changes nothing and shows the campaign page again with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from multidict import MultiDictProxy

from mailer import tenants
from mailer.addresses import parse_address
from mailer.db import queries
from mailer.errors import InvalidAddress, InvalidInput, NotFound, OptoutError
from mailer.resources import STATIC_DIR
from mailer.sending import body, campaigns, compose, preview, tenant_templates
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.dashboard.workspace import (
    Workspace,
    opened,
    posted,
    see_other,
    text_field,
)
from unsubscribe_web.keys import SETTINGS
from unsubscribe_web.static import add_static

BASE = "/dashboard/t/{tenant}/campaigns"
ONE = BASE + "/{campaign_id}"
SCRIPT = STATIC_DIR / "workspace.js"
NO_CAMPAIGN = NotFound("No such campaign.", field="campaign_id")
ENDED = ("done", "cancelled")
NOT_HERE = (
    "This campaign uses a template whose content the workspace does not edit (made from the "
    "command line or the API); change it there, or write a new campaign here."
)
EDITABLE = ("draft", "scheduled")
# The preview frame: no script, no plugin, no remote load of any kind (images only as data:
# URLs), styles only inline (an email's own); never shown outside our own pages.
PREVIEW_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
# What a redirect after a successful action says on the next page (a code, never free text).
NOTICES = {
    "created": "Campaign saved as a draft.",
    "saved": "Changes saved.",
    "duplicated": "This is a copy: a new draft.",
    "tested": "Test message queued; it arrives within a few seconds.",
    "scheduled": "Campaign scheduled.",
    "started": "Sending started.",
    "paused": "Sending paused.",
    "resumed": "Sending resumed.",
    "cancelled": "Campaign cancelled.",
    "retried": "Failed messages queued again.",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_page, name="ws_campaigns")
    app.router.add_get(BASE + "/new", new_page, name="ws_campaign_new")
    app.router.add_post(BASE, create, name="ws_campaign_create")
    app.router.add_get(ONE, campaign_page, name="ws_campaign")
    app.router.add_get(ONE + "/edit", edit_page, name="ws_campaign_edit")
    app.router.add_post(ONE, update, name="ws_campaign_update")
    app.router.add_get(ONE + "/preview.html", preview_frame, name="ws_campaign_preview")
    app.router.add_get(ONE + "/progress.json", progress, name="ws_campaign_progress")
    for verb, handler in ACTIONS.items():
        app.router.add_post(f"{ONE}/{verb}", handler, name=f"ws_campaign_{verb}")
    add_static(app, "/static/workspace.js", SCRIPT, "workspace_script", "text/javascript")


# --- pages --------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    """GET: the tenant's campaigns with their status and progress."""
    async with opened(request, "list_campaigns") as ws:
        lines = []
        for row in await campaigns.list_campaigns(ws.conn, ws.tenant_id):
            stats = await campaigns.stats(ws.conn, ws.tenant_id, row["id"])
            lines.append({"row": row, "stats": stats, "percent": _percent(stats)})
        topics = await _topics(ws)
        return ws.page(
            "workspace/campaigns.html",
            lines=lines,
            topics={t["id"]: t["name"] for t in topics},
        )


async def new_page(request: web.Request) -> web.Response:
    async with opened(request, "create_campaign") as ws:
        values = {
            "name": "",
            "topic": "",
            "subject": "",
            "preheader": "",
            "format": "markdown",
            "body": body.DEFAULT_BODY,
            "text": "",
            "layout": "",
        }
        return await _editor(ws, values, None)


async def edit_page(request: web.Request) -> web.Response:
    async with opened(request, "update_campaign") as ws:
        campaign = await _campaign(ws)
        return await _editor(ws, await _values(ws, campaign), campaign)


async def campaign_page(request: web.Request) -> web.Response:
    async with opened(request, "get_campaign") as ws:
        return await _campaign_view(ws, await _campaign(ws))


async def preview_frame(request: web.Request) -> web.Response:
    """GET: the HTML part alone, for the page's sandboxed frame (scripts never run, nothing
    remote loads: the CSP sandboxes it even when opened directly)."""
    async with opened(request, "preview_campaign") as ws:
        campaign = await _campaign(ws)
        shown = await _preview(ws, campaign)
        html_text = shown.html if isinstance(shown, preview.Preview) else ""
    return web.Response(
        text=html_text,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


async def progress(request: web.Request) -> web.Response:
    """GET: the campaign's figures as JSON, for the page's live progress (the same figures
    as the page and the API: mailer.sending.campaigns.stats)."""
    async with opened(request, "campaign_stats") as ws:
        campaign = await _campaign(ws)
        stats = await campaigns.stats(ws.conn, ws.tenant_id, campaign["id"])
    return web.json_response(_figures(stats))


# --- actions ------------------------------------------------------------------------------------


def _form_values(form: MultiDictProxy[Any]) -> dict[str, str]:
    return {
        "name": text_field(form, "name"),
        "topic": text_field(form, "topic"),
        "subject": text_field(form, "subject"),
        "preheader": text_field(form, "preheader"),
        "format": text_field(form, "format") or "markdown",
        "body": text_field(form, "body", multiline=True),
        "text": text_field(form, "text", multiline=True),
        "layout": text_field(form, "layout"),
    }


def _content(values: dict[str, str]) -> dict[str, Any]:
    return {
        "format": values["format"],
        "body": values["body"],
        "text": values["text"],
        "preheader": values["preheader"],
    }


async def create(request: web.Request) -> web.Response:
    """POST: a new draft from the editor."""
    async with posted(request, "create_campaign") as (ws, form):
        values = _form_values(form)
        try:
            layout_id = _layout_choice(values["layout"])
            async with ws.conn.transaction():
                row = await campaigns.create_draft(
                    ws.conn,
                    tenant_id=ws.tenant_id,
                    topic_slug=values["topic"],
                    name=values["name"],
                    subject=values["subject"],
                    content=_content(values),
                    created_by=ws.principal.actor,
                    layout_id=layout_id,
                )
                await ws.audit("create_campaign", ("campaign", row["id"]))
        except (InvalidInput, NotFound) as exc:
            return await _editor(ws, values, None, error=exc, status=400)
        target = ws.url("ws_campaign", {"done": "created"}, campaign_id=row["id"])
    return see_other(target)


async def update(request: web.Request) -> web.Response:
    """POST: save the editor; "Fill the text part from the body" saves and fills it."""
    async with posted(request, "update_campaign") as (ws, form):
        campaign = await _campaign(ws)
        if campaign["template"] not in compose.BODY_TEMPLATES:
            return await _campaign_view(ws, campaign, error=NOT_HERE, status=409)
        values = _form_values(form)
        fill = form.get("fill_text") == "1"
        try:
            if fill:
                values["text"] = body.generated_text(_content(values))
            # Without the field (a role that cannot read templates) the layout stays as it is.
            layout_id = (
                _layout_choice(values["layout"]) if "layout" in form else campaign["layout_id"]
            )
            async with ws.conn.transaction():
                await campaigns.update_draft(
                    ws.conn,
                    tenant_id=ws.tenant_id,
                    campaign_id=campaign["id"],
                    topic_slug=values["topic"],
                    name=values["name"],
                    subject=values["subject"],
                    content=_content(values),
                    layout_id=layout_id,
                )
                await ws.audit("update_campaign", ("campaign", campaign["id"]))
        except (InvalidInput, NotFound) as exc:
            return await _editor(ws, values, campaign, error=exc, status=400)
        except OptoutError as exc:  # no longer editable
            return await _campaign_view(ws, campaign, error=exc.message, status=409)
        route = "ws_campaign_edit" if fill else "ws_campaign"
        target = ws.url(route, {"done": "saved"}, campaign_id=campaign["id"])
    return see_other(target)


Action = Callable[[Workspace, asyncpg.Record, MultiDictProxy[Any]], Awaitable[int | None]]


def _action(api_name: str, done: str, run: Action) -> Callable[[web.Request], Awaitable[Any]]:
    """A campaign action: the right of API endpoint ``api_name``, run with its audit line in
    one transaction, then back to the campaign page (or, refused, the page with the reason)."""

    async def handler(request: web.Request) -> web.Response:
        async with posted(request, api_name) as (ws, form):
            campaign = await _campaign(ws)
            try:
                async with ws.conn.transaction():
                    shown = await run(ws, campaign, form)
                    await ws.audit(api_name, ("campaign", campaign["id"]))
            except OptoutError as exc:
                status = 404 if isinstance(exc, NotFound) else 409
                status = 400 if isinstance(exc, InvalidInput) else status
                return await _campaign_view(ws, campaign, error=exc.message, status=status)
            target = ws.url("ws_campaign", {"done": done}, campaign_id=shown or campaign["id"])
        return see_other(target)

    return handler


async def _duplicate(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    row = await campaigns.duplicate(
        ws.conn, ws.tenant_id, campaign["id"], created_by=ws.principal.actor
    )
    new_id: int = row["id"]
    return new_id


async def _test(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    to = text_field(form, "to")
    try:
        address = parse_address(to).as_given
    except InvalidAddress as exc:
        raise InvalidAddress(f"The test address is not valid: {exc.message}", field="to") from None
    settings = ws.request.app[SETTINGS]
    await campaigns.test_send(ws.conn, settings, ws.tenant_id, campaign["id"], address)
    return None


async def _schedule(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    zone = ZoneInfo(ws.tenant["time_zone"])
    raw = text_field(form, "at")
    try:
        at = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("Give the date and time to send at.", field="at") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone)  # the form's time is the tenant's local time
    campaigns.check_schedule_time(at, dt.datetime.now(dt.UTC))
    await campaigns.schedule(ws.conn, ws.request.app[SETTINGS], ws.tenant_id, campaign["id"], at)
    return None


async def _start(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    await campaigns.start(ws.conn, ws.request.app[SETTINGS], ws.tenant_id, campaign["id"])
    return None


async def _pause(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    await campaigns.pause(ws.conn, ws.tenant_id, campaign["id"])
    return None


async def _resume(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    await campaigns.resume(ws.conn, ws.tenant_id, campaign["id"])
    return None


async def _cancel(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    await campaigns.cancel(ws.conn, ws.tenant_id, campaign["id"])
    return None


async def _retry(ws: Workspace, campaign: asyncpg.Record, form: Any) -> int | None:
    await campaigns.retry_failed(ws.conn, ws.tenant_id, campaign["id"])
    return None


# Each workspace action and the admin-API endpoint whose right (and audit name) it shares.
ACTIONS: dict[str, Callable[[web.Request], Awaitable[Any]]] = {
    "duplicate": _action("duplicate_campaign", "duplicated", _duplicate),
    "test": _action("test_campaign", "tested", _test),
    "schedule": _action("schedule_campaign", "scheduled", _schedule),
    "start": _action("start_campaign", "started", _start),
    "pause": _action("pause_campaign", "paused", _pause),
    "resume": _action("resume_campaign", "resumed", _resume),
    "cancel": _action("cancel_campaign", "cancelled", _cancel),
    "retry": _action("retry_campaign", "retried", _retry),
}


# --- helpers ------------------------------------------------------------------------------------


def _layout_choice(raw: str) -> int | None:
    """The editor's layout field: "" for the built-in layout, else one of the tenant's own
    templates (checked inside the tenant by mailer)."""
    if not raw:
        return None
    found = path_id(raw)
    if found is None:
        raise InvalidInput("Choose a layout from the list.", field="layout")
    return found


async def _campaign(ws: Workspace) -> asyncpg.Record:
    """The campaign in the URL, looked up inside the tenant: another tenant's id reads like
    one that does not exist."""
    campaign_id = path_id(ws.request.match_info["campaign_id"])
    if campaign_id is None:
        raise NO_CAMPAIGN
    row = await queries().campaigns.get_campaign(ws.conn, tenant_id=ws.tenant_id, id=campaign_id)
    if row is None:
        raise NO_CAMPAIGN
    return row


async def _topics(ws: Workspace) -> list[asyncpg.Record]:
    return await tenants.list_topics(ws.conn, ws.tenant_id)


async def _values(ws: Workspace, campaign: asyncpg.Record) -> dict[str, str]:
    content = campaign["content"] or {}
    topic = await queries().tenants.get_topic(
        ws.conn, tenant_id=ws.tenant_id, id=campaign["topic_id"]
    )
    return {
        "name": campaign["name"],
        "topic": topic["slug"] if topic else "",
        "subject": campaign["subject"],
        "preheader": str(content.get("preheader", "")),
        "format": str(content.get("format", "markdown")),
        "body": str(content.get("body", "")),
        "text": str(content.get("text", "")),
        "layout": str(campaign["layout_id"] or ""),
    }


async def _editor(
    ws: Workspace,
    values: dict[str, str],
    campaign: asyncpg.Record | None,
    *,
    error: OptoutError | None = None,
    status: int = 200,
) -> web.Response:
    editable = campaign is None or campaign["template"] in compose.BODY_TEMPLATES
    if not editable:
        error = error or InvalidInput(NOT_HERE)
    generated = ""
    with contextlib.suppress(OptoutError):  # the body's own problem is shown by the checks
        generated = body.generated_text(_content(values))
    action = (
        ws.url("ws_campaign_create")
        if campaign is None
        else ws.url("ws_campaign_update", campaign_id=campaign["id"])
    )
    return ws.page(
        "workspace/editor.html",
        status=status,
        values=values,
        campaign=campaign,
        topics=await _topics(ws),
        formats=body.FORMATS,
        merge_fields=body.MERGE_FIELDS,
        layouts=(
            await tenant_templates.list_templates(ws.conn, ws.tenant_id)
            if ws.may("list_templates")
            else []
        ),
        generated=generated,
        action=action,
        error=error,
        editable=editable,
    )


async def _preview(ws: Workspace, campaign: asyncpg.Record) -> preview.Preview | OptoutError:
    """The preview for the recipient picked in ``?recipient=``, or the problem preventing it."""
    settings = ws.request.app[SETTINGS]
    chosen = None
    picked = path_id(ws.request.query.get("recipient", ""))
    if picked is not None:
        found = await preview.recipients(ws.conn, ws.tenant_id, campaign["topic_id"])
        chosen = next((r for r in found if r["id"] == picked), None)
    try:
        return await preview.render(ws.conn, settings, campaign, chosen)
    except OptoutError as exc:
        return exc


def _percent(stats: campaigns.Stats) -> int:
    if not stats.total:
        return 0
    return min(100, round(100 * (stats.total - stats.remaining) / stats.total))


def _figures(stats: campaigns.Stats) -> dict[str, Any]:
    figures = dataclasses.asdict(stats)
    for name in ("first_sent_at", "last_sent_at"):
        figures.pop(name)
    return figures | {
        "remaining": stats.remaining,
        "rate": round(stats.rate, 1),
        "percent": _percent(stats),
        "ended": stats.status in ENDED,
        "unsubscribed_total": sum(stats.unsubscribed.values()),
    }


async def _campaign_view(
    ws: Workspace, campaign: asyncpg.Record, *, error: str | None = None, status: int = 200
) -> web.Response:
    settings = ws.request.app[SETTINGS]
    zone = ZoneInfo(ws.tenant["time_zone"])
    stats = await campaigns.stats(ws.conn, ws.tenant_id, campaign["id"])
    checks = []
    if campaign["status"] in EDITABLE:
        checks = await campaigns.problems(ws.conn, settings, campaign)
    shown = await _preview(ws, campaign)
    topic = await queries().tenants.get_topic(
        ws.conn, tenant_id=ws.tenant_id, id=campaign["topic_id"]
    )
    picked = ws.request.query.get("recipient", "")
    layout = await tenant_templates.layout_for(ws.conn, campaign)
    scheduled = campaign["scheduled_at"]
    now_local = dt.datetime.now(zone).replace(second=0, microsecond=0, tzinfo=None)
    return ws.page(
        "workspace/campaign.html",
        status=status,
        campaign=campaign,
        topic=topic,
        layout=layout,
        stats=stats,
        figures=_figures(stats),
        checks=checks,
        error=error,
        notice=NOTICES.get(ws.request.query.get("done", "")),
        preview=shown if isinstance(shown, preview.Preview) else None,
        preview_error=shown.message if isinstance(shown, OptoutError) else None,
        recipients=await preview.recipients(ws.conn, ws.tenant_id, campaign["topic_id"]),
        picked=picked,
        frame_url=ws.url(
            "ws_campaign_preview",
            {"recipient": picked} if picked else None,
            campaign_id=campaign["id"],
        ),
        zone=zone.key,
        scheduled=scheduled.astimezone(zone).strftime("%Y-%m-%d %H:%M") if scheduled else None,
        schedule_min=now_local.isoformat(timespec="minutes"),
        live=campaign["status"] not in ENDED and campaign["status"] != "draft",
        editable=campaign["status"] in EDITABLE and campaign["template"] in compose.BODY_TEMPLATES,
    )
