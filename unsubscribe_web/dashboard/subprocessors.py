"""The workspace's register of the companies that help provide the service (STANDARDS 41), for
compliance: the tenant's register, edited as a whole (an emptied row is removed), with the
installation's shown beside it; a change marked material publishes a policy version embedding
the register, whose notice is then written and sent from the version's page.

Thin over mailer.rights.subprocessors; rights and audit names are the admin API's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from multidict import MultiDictProxy

from mailer.errors import Conflict, InvalidInput, OptoutError
from mailer.rights import policy, subprocessors
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/subprocessors"
BLANK_ROWS = 3
DONE = "Register saved."


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, register_page, name="ws_subprocessors")
    app.router.add_post(BASE, save, name="ws_subprocessors_save")


async def register_page(request: web.Request) -> web.Response:
    async with opened(request, "list_subprocessors") as ws:
        own = await subprocessors.register(ws.conn, ws.tenant_id)
        rows = [{k: r[k] for k in subprocessors.LIMITS} for r in own]
        done = DONE if ws.request.query.get("done") == "saved" else None
        return await _page(ws, rows, {}, done=done)


async def save(request: web.Request) -> web.Response:
    """POST: the whole register; with "material", the policy version embedding it."""
    async with posted(request, "save_subprocessors") as (ws, form):
        rows = _rows(form)
        change = {
            "material": form.get("material") == "1",
            "effective": text_field(form, "effective"),
            "summary": text_field(form, "summary", multiline=True),
            "force_reason": text_field(form, "force_reason"),
        }
        try:
            entries = subprocessors.check_entries(rows)
            async with ws.conn.transaction():
                await subprocessors.save(ws.conn, ws.tenant_id, entries, by=ws.principal.actor)
                version = None
                if change["material"]:
                    version = await _publish(ws, change)
                target = ("policy_version", version["id"]) if version is not None else None
                await ws.audit("save_subprocessors", target)
        except OptoutError as exc:
            status = 409 if isinstance(exc, Conflict) else 400
            return await _page(ws, rows, change, error=exc.message, status=status)
        if version is not None:
            where = ws.url("ws_policy_version", {"done": "published"}, version=version["version"])
        else:
            where = ws.url("ws_subprocessors", {"done": "saved"})
    return see_other(where)


async def _publish(ws: Workspace, change: dict[str, Any]) -> asyncpg.Record:
    if not change["effective"] or not change["summary"]:
        raise InvalidInput(
            "A material change needs the date it takes effect and what changes.",
            field="effective",
        )
    published = await subprocessors.publish_change(
        ws.conn,
        tenant=ws.tenant,
        effective_at=policy.parse_effective(change["effective"], ws.tenant["time_zone"]),
        summary=change["summary"],
        now=dt.datetime.now(dt.UTC),
        policy_url=f"{ws.request.app[SETTINGS].base_url.rstrip('/')}/policy/{ws.slug}",
        force_reason=change["force_reason"] or None,
        by=ws.principal.actor,
    )
    return published.version


def _rows(form: MultiDictProxy[Any]) -> list[dict[str, str]]:
    """The form's rows, in order (bounded: a register has at most MAX_ENTRIES companies)."""
    try:
        count = min(int(text_field(form, "rows") or 0), subprocessors.MAX_ENTRIES + BLANK_ROWS)
    except ValueError:
        raise InvalidInput("The form is damaged; reload the page.") from None
    return [{k: text_field(form, f"{k}_{i}") for k in subprocessors.LIMITS} for i in range(count)]


async def _page(
    ws: Workspace,
    rows: list[dict[str, str]],
    change: dict[str, Any],
    *,
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    shown = [r for r in rows if any(r.values())]
    shown += [dict.fromkeys(subprocessors.LIMITS, "") for _ in range(BLANK_ROWS)]
    earliest = policy.earliest_effective(ws.tenant, dt.datetime.now(dt.UTC))
    return ws.page(
        "workspace/subprocessors.html",
        status=status,
        rows=shown,
        change={"material": False, "effective": "", "summary": "", "force_reason": ""} | change,
        installation=await subprocessors.register(ws.conn, None),
        limits=subprocessors.LIMITS,
        done=done,
        error=error,
        earliest=f"{earliest.astimezone(ZoneInfo(ws.tenant['time_zone'])):%Y-%m-%d %H:%M %Z}",
    )
