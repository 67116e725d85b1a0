"""The workspace's policy pages, for compliance: the versions, the next version written in
Markdown with its rendered text and diff against the version in effect, the notice period
enforced (a shorter notice only with a recorded reason), the notice campaign's text and its
sending, the notice's progress against the time left, and the proof of notice as CSV.

Thin over mailer.rights.policy (publish, status, proof) and mailer.sending.campaigns (start):
nothing here decides a rule, it only shows and asks.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import markupsafe
from aiohttp import web
from multidict import MultiDictProxy

from mailer.csv_safe import write_csv
from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidInput, NotFound, OptoutError
from mailer.rights import policy
from mailer.sending import campaigns, preview
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.dashboard.campaigns import PREVIEW_CSP
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/policy"
ONE = BASE + "/v/{version}"
NO_VERSION = NotFound("No such policy version.", field="version")
NOTICES = {
    "published": "Version published. Its notice mail, if any, is below: check it, then send it.",
    "saved": "Notice saved.",
    "started": "The notice is being sent.",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_page, name="ws_policy")
    app.router.add_get(BASE + "/new", new_page, name="ws_policy_new")
    app.router.add_post(BASE + "/new", preview_draft, name="ws_policy_preview")
    app.router.add_post(BASE, publish, name="ws_policy_publish")
    app.router.add_get(ONE, version_page, name="ws_policy_version")
    app.router.add_get(ONE + "/notice.html", notice_frame, name="ws_policy_notice_frame")
    app.router.add_post(ONE + "/notice", save_notice, name="ws_policy_notice_save")
    app.router.add_post(ONE + "/notice/send", send_notice, name="ws_policy_notice_send")
    app.router.add_get(ONE + "/proof.csv", proof_csv, name="ws_policy_proof")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _zone(ws: Workspace) -> ZoneInfo:
    return ZoneInfo(ws.tenant["time_zone"])


def _html(text: str) -> markupsafe.Markup:
    # render_markdown escapes raw HTML in the policy text; its output is safe to embed.
    return markupsafe.Markup(policy.render_markdown(text))


def _public_url(ws: Workspace) -> str:
    return str(ws.request.app.router["policy"].url_for(tenant=ws.slug))


def _local(ws: Workspace, moment: dt.datetime) -> str:
    return f"{moment.astimezone(_zone(ws)):%Y-%m-%d %H:%M %Z}"


# --- pages --------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    """GET: every version, in effect or announced, with its notice's progress."""
    async with opened(request, "list_policy_versions") as ws:
        now = _now()
        items = await policy.status(ws.conn, ws.tenant_id, now)
        return ws.page(
            "workspace/policy_versions.html",
            items=items,
            now=now,
            when=lambda m: _local(ws, m),
            public_url=_public_url(ws),
        )


async def new_page(request: web.Request) -> web.Response:
    """GET: the editor for the next version, filled with the newest text."""
    async with opened(request, "publish_policy_version") as ws:
        latest = await queries().policy.latest_version(ws.conn, tenant_id=ws.tenant_id)
        values = {
            "body": latest["body_md"] if latest else "",
            "summary": "",
            "effective": "",
            "force_reason": "",
        }
        return await _editor(ws, values)


async def preview_draft(request: web.Request) -> web.Response:
    """POST: the draft rendered and diffed against the version in effect. Nothing is
    recorded, so there is nothing to audit or redirect to."""
    async with posted(request, "publish_policy_version", max_size=_MAX_FORM) as (ws, form):
        return await _editor(ws, _form_values(form), show=True)


async def publish(request: web.Request) -> web.Response:
    """POST: publish the version and make its notice a draft on the notice topic (sent from
    the version's page once compliance has read it)."""
    async with posted(request, "publish_policy_version", max_size=_MAX_FORM) as (ws, form):
        values = _form_values(form)
        now = _now()
        try:
            effective = _effective(ws, values["effective"])
            topic = await policy.first_notice_topic(ws.conn, ws.tenant_id)
            async with ws.conn.transaction():
                version = await policy.publish(
                    ws.conn,
                    tenant=ws.tenant,
                    body=values["body"],
                    summary=values["summary"],
                    effective_at=effective,
                    now=now,
                    force_reason=values["force_reason"] or None,
                    published_by=ws.principal.actor,
                )
                if topic is not None:
                    await policy.create_notice_campaign(
                        ws.conn,
                        tenant=ws.tenant,
                        version=version,
                        topic=topic,
                        policy_url=_policy_url(ws),
                        by=ws.principal.actor,
                    )
                await ws.audit("publish_policy_version", ("policy_version", version["id"]))
        except OptoutError as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            return await _editor(ws, values, show=True, error=exc.message, status=status)
        target = ws.url("ws_policy_version", {"done": "published"}, version=version["version"])
    return see_other(target)


async def version_page(request: web.Request) -> web.Response:
    """GET: the version's text, its notice (editable until sent) and the notice's progress."""
    async with opened(request, "get_policy_version") as ws:
        return await _version_view(ws, await _version(ws))


async def notice_frame(request: web.Request) -> web.Response:
    """GET: the notice's HTML part alone, for the page's sandboxed frame."""
    async with opened(request, "get_policy_version") as ws:
        version = await _version(ws)
        notice = await _notice(ws, version)
        html_text = ""
        if notice is not None:
            shown = await _preview(ws, notice)
            html_text = shown.html if isinstance(shown, preview.Preview) else ""
    return web.Response(
        text=html_text,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": PREVIEW_CSP, "X-Frame-Options": "SAMEORIGIN"},
    )


async def save_notice(request: web.Request) -> web.Response:
    """POST: the notice's subject, headline and changes."""
    async with posted(request, "publish_policy_version") as (ws, form):
        version = await _version(ws)
        notice = await _draft_notice(ws, version)
        try:
            async with ws.conn.transaction():
                await policy.update_notice(
                    ws.conn,
                    tenant_id=ws.tenant_id,
                    campaign=notice,
                    subject=text_field(form, "subject"),
                    headline=text_field(form, "headline"),
                    changes=policy.notice_changes(text_field(form, "changes", multiline=True)),
                )
                await ws.audit("update_policy_notice", ("campaign", notice["id"]))
        except OptoutError as exc:
            return await _version_view(ws, version, error=exc.message, status=_status(exc))
        target = ws.url("ws_policy_version", {"done": "saved"}, version=version["version"])
    return see_other(target)


async def send_notice(request: web.Request) -> web.Response:
    """POST: start the notice: every person on the notice topic not suppressed is queued, in
    front of any marketing mail."""
    async with posted(request, "publish_policy_version") as (ws, _form):
        version = await _version(ws)
        notice = await _draft_notice(ws, version)
        try:
            async with ws.conn.transaction():
                await campaigns.start(ws.conn, ws.request.app[SETTINGS], ws.tenant_id, notice["id"])
                await ws.audit("start_policy_notice", ("campaign", notice["id"]))
        except OptoutError as exc:
            return await _version_view(ws, version, error=exc.message, status=_status(exc))
        target = ws.url("ws_policy_version", {"done": "started"}, version=version["version"])
    return see_other(target)


async def proof_csv(request: web.Request) -> web.Response:
    """GET: who was notified, how and when, and who is covered by the site notice, as CSV.
    A read of personal data: audited like the API's proof."""
    async with opened(request, "policy_version_proof") as ws:
        version = await _version(ws)
        async with ws.conn.transaction():
            _, people = await policy.proof_of_notice(ws.conn, ws.tenant_id, version["version"])
            await ws.audit("policy_version_proof", ("policy_version", version["id"]))
    out = io.StringIO()
    write_csv(out, policy.PROOF_COLUMNS, policy.proof_rows(people))
    name = f"proof-of-notice-{ws.slug}-v{version['version']}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- helpers ------------------------------------------------------------------------------------

# A policy text may be long (policy.MAX_BODY_CHARS characters, up to 4 bytes each, form-encoded).
_MAX_FORM = policy.MAX_BODY_CHARS * 12 + 64 * 1024


def _status(exc: OptoutError) -> int:
    if isinstance(exc, NotFound):
        return 404
    return 400 if isinstance(exc, InvalidInput) else 409


def _form_values(form: MultiDictProxy[Any]) -> dict[str, str]:
    return {
        "body": text_field(form, "body", multiline=True),
        "summary": text_field(form, "summary", multiline=True),
        "effective": text_field(form, "effective"),
        "force_reason": text_field(form, "force_reason"),
    }


def _effective(ws: Workspace, raw: str) -> dt.datetime:
    if not raw:
        raise InvalidInput("Give the date and time the version takes effect.", field="effective")
    # The form's datetime-local value is the tenant's local time, as parse_effective reads it.
    return policy.parse_effective(raw, ws.tenant["time_zone"])


def _policy_url(ws: Workspace) -> str:
    base = ws.request.app[SETTINGS].base_url.rstrip("/")
    return f"{base}/policy/{ws.slug}"


async def _editor(
    ws: Workspace,
    values: dict[str, str],
    *,
    show: bool = False,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    now = _now()
    current = await queries().policy.in_effect(ws.conn, tenant_id=ws.tenant_id, now=now)
    # Rounded up to the next minute: the form's field has no seconds.
    earliest = (
        policy.earliest_effective(ws.tenant, now).astimezone(_zone(ws)) + dt.timedelta(minutes=1)
    ).replace(second=0, microsecond=0)
    rendered = diff = None
    if show and values["body"].strip():
        rendered = _html(values["body"])
        diff = policy.diff_lines(current["body_md"] if current else "", values["body"])
    return ws.page(
        "workspace/policy_editor.html",
        status=status,
        values=values,
        current=current,
        rendered=rendered,
        diff=diff,
        error=error,
        earliest=f"{earliest:%Y-%m-%d %H:%M %Z}",
        earliest_value=earliest.replace(tzinfo=None).isoformat(timespec="minutes"),
        notice_days=ws.tenant["notice_period_days"],
    )


async def _version(ws: Workspace) -> asyncpg.Record:
    """The version in the URL, inside the tenant: another tenant's reads like none at all."""
    number = path_id(ws.request.match_info["version"])
    if number is None:
        raise NO_VERSION
    row = await queries().policy.get_version(ws.conn, tenant_id=ws.tenant_id, version=number)
    if row is None:
        raise NO_VERSION
    return row


async def _notice(ws: Workspace, version: asyncpg.Record) -> asyncpg.Record | None:
    """The version's newest notice campaign, if it has one."""
    found = await rows(
        queries().policy.notice_progress(
            ws.conn, tenant_id=ws.tenant_id, policy_version_id=version["id"]
        )
    )
    if not found:
        return None
    return await campaigns.get(ws.conn, ws.tenant_id, found[-1]["id"])


async def _draft_notice(ws: Workspace, version: asyncpg.Record) -> asyncpg.Record:
    notice = await _notice(ws, version)
    if notice is None:
        raise NotFound("This version has no notice campaign.", field="campaign")
    return notice


async def _preview(ws: Workspace, notice: asyncpg.Record) -> preview.Preview | OptoutError:
    try:
        return await preview.render(ws.conn, ws.request.app[SETTINGS], notice, None)
    except OptoutError as exc:
        return exc


async def _version_view(
    ws: Workspace, version: asyncpg.Record, *, error: str | None = None, status: int = 200
) -> web.Response:
    now = _now()
    notice = await _notice(ws, version)
    shown = await _preview(ws, notice) if notice is not None else None
    checks: list[campaigns.CampaignRefused] = []
    if notice is not None and notice["status"] in ("draft", "scheduled"):
        checks = await campaigns.problems(ws.conn, ws.request.app[SETTINGS], notice)
    progress = await policy.notice_progress(ws.conn, ws.tenant_id, version["version"], now)
    content = dict(notice["content"] or {}) if notice is not None else {}
    hours_left = progress.time_left.total_seconds() / 3600
    return ws.page(
        "workspace/policy_version.html",
        status=status,
        version=version,
        text_html=_html(version["body_md"]),
        public_url=_public_url(ws),
        notice=notice,
        headline=str(content.get("headline", "")),
        changes="\n".join(str(c) for c in content.get("changes", [])),
        preview=shown if isinstance(shown, preview.Preview) else None,
        preview_error=shown.message if isinstance(shown, OptoutError) else None,
        checks=checks,
        progress=progress,
        days_left=int(hours_left // 24),
        hours_left=int(hours_left % 24),
        in_effect=version["effective_at"] <= now,
        effective=_local(ws, version["effective_at"]),
        published=_local(ws, version["published_at"]),
        error=error,
        done=NOTICES.get(ws.request.query.get("done", "")),
    )
