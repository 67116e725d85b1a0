"""The workspace's webhooks pages (issue 22): the tenant's event endpoints, each with its types,
address flag, own timeout and concurrency, and health; add one (its secret shown once, on the
answer to the form, never again), change it, rotate the secret (the old one signs for 24 h
more), send a test event, deactivate or remove it, its delivery log (no bodies), and
redelivery of one event or everything since a time.

Thin over mailer.event_endpoints and mailer.event_delivery; rights and audit names are the
admin API's; an endpoint of another tenant reads like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy

from mailer import event_delivery, event_endpoints
from mailer.config import Settings
from mailer.errors import InvalidInput, NotFound, OptoutError
from mailer.events import EVENT_TYPES
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/webhooks"
ONE = BASE + "/{endpoint_id:\\d{1,18}}"
NOTICES = {
    "changed": "Saved.",
    "tested": "Test event sent: its attempt is at the top of the delivery log.",
    "redelivered": "Queued again; the delivery log shows the attempts as they are made.",
    "removed": "Endpoint removed.",
}
# The secret's answer page must not be kept by the browser or any cache.
NO_STORE = {"Cache-Control": "no-store"}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, endpoints_page, name="ws_webhooks")
    app.router.add_post(BASE, create, name="ws_webhook_create")
    app.router.add_get(ONE, endpoint_page, name="ws_webhook")
    app.router.add_post(ONE, update, name="ws_webhook_update")
    app.router.add_post(ONE + "/rotate", rotate, name="ws_webhook_rotate")
    app.router.add_post(ONE + "/test", send_test, name="ws_webhook_test")
    app.router.add_post(ONE + "/redeliver", redeliver, name="ws_webhook_redeliver")
    app.router.add_post(ONE + "/remove", remove, name="ws_webhook_remove")


async def endpoints_page(request: web.Request) -> web.Response:
    async with opened(request, "list_event_endpoints") as ws:
        return await _list_page(ws, notice=NOTICES.get(ws.request.query.get("done", "")))


async def create(request: web.Request) -> web.Response:
    """POST: a new endpoint; the answer shows its secret, this once (no redirect, no cache)."""
    async with posted(request, "create_event_endpoint") as (ws, form):
        fields = _fields(form)
        try:
            async with ws.conn.transaction():
                created = await event_endpoints.create(
                    ws.conn,
                    _settings(ws),
                    tenant_id=ws.tenant_id,
                    url=fields["url"],
                    event_types=fields["event_types"],
                    include_address=fields["include_address"],
                    timeout_seconds=fields["timeout_seconds"],
                    concurrency=fields["concurrency"],
                )
                await ws.audit("create_event_endpoint", ("event_endpoint", created.endpoint["id"]))
        except OptoutError as exc:
            return await _list_page(ws, error=exc.message, form=fields, status=400)
        return _secret_page(ws, created, rotated=False)


async def endpoint_page(request: web.Request) -> web.Response:
    async with opened(request, "event_endpoint_deliveries") as ws:
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        return await _endpoint_page(
            ws, endpoint_id, notice=NOTICES.get(ws.request.query.get("done", ""))
        )


async def update(request: web.Request) -> web.Response:
    """POST: types, address flag, timeout, concurrency and activity, as a whole."""
    async with posted(request, "update_event_endpoint") as (ws, form):
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        await event_endpoints.get(ws.conn, ws.tenant_id, endpoint_id)
        fields = _fields(form, with_url=False)
        changes: dict[str, Any] = {k: v for k, v in fields.items() if k != "url"}
        changes["active"] = form.get("active") == "1"
        try:
            async with ws.conn.transaction():
                await event_endpoints.update(
                    ws.conn,
                    _settings(ws),
                    tenant_id=ws.tenant_id,
                    endpoint_id=endpoint_id,
                    changes=changes,
                )
                await ws.audit("update_event_endpoint", ("event_endpoint", endpoint_id))
        except OptoutError as exc:
            return await _endpoint_page(ws, endpoint_id, error=exc.message, status=400)
        where = ws.url("ws_webhook", {"done": "changed"}, endpoint_id=endpoint_id)
    return see_other(where)


async def rotate(request: web.Request) -> web.Response:
    """POST: a new secret, shown this once; the old one keeps signing for 24 hours."""
    async with posted(request, "rotate_event_endpoint_secret") as (ws, _form):
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        async with ws.conn.transaction():
            rotated = await event_endpoints.rotate(
                ws.conn, _settings(ws), tenant_id=ws.tenant_id, endpoint_id=endpoint_id
            )
            await ws.audit("rotate_event_endpoint_secret", ("event_endpoint", endpoint_id))
        return _secret_page(ws, rotated, rotated=True)


async def send_test(request: web.Request) -> web.Response:
    async with posted(request, "test_event_endpoint") as (ws, _form):
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        async with ws.conn.transaction():
            await event_delivery.send_test(
                ws.conn, _settings(ws), tenant_id=ws.tenant_id, endpoint_id=endpoint_id
            )
            await ws.audit("test_event_endpoint", ("event_endpoint", endpoint_id))
        where = ws.url("ws_webhook", {"done": "tested"}, endpoint_id=endpoint_id)
    return see_other(where)


async def redeliver(request: web.Request) -> web.Response:
    """POST: one event (its evt_N or N), or every event since a time in the tenant's zone."""
    async with posted(request, "redeliver_events") as (ws, form):
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        await event_endpoints.get(ws.conn, ws.tenant_id, endpoint_id)
        try:
            event_id, since = _redelivery(ws, form)
            async with ws.conn.transaction():
                await event_endpoints.redeliver(
                    ws.conn,
                    tenant_id=ws.tenant_id,
                    endpoint_id=endpoint_id,
                    event_id=event_id,
                    since=since,
                )
                await ws.audit("redeliver_events", ("event_endpoint", endpoint_id))
        except (InvalidInput, NotFound) as exc:
            return await _endpoint_page(ws, endpoint_id, error=exc.message, status=400)
        where = ws.url("ws_webhook", {"done": "redelivered"}, endpoint_id=endpoint_id)
    return see_other(where)


async def remove(request: web.Request) -> web.Response:
    async with posted(request, "delete_event_endpoint") as (ws, _form):
        endpoint_id = int(ws.request.match_info["endpoint_id"])
        async with ws.conn.transaction():
            await event_endpoints.remove(ws.conn, ws.tenant_id, endpoint_id)
            await ws.audit("delete_event_endpoint", ("event_endpoint", endpoint_id))
        where = ws.url("ws_webhooks", {"done": "removed"})
    return see_other(where)


def _settings(ws: Workspace) -> Settings:
    return ws.request.app[SETTINGS]


def _fields(form: MultiDictProxy[Any], *, with_url: bool = True) -> dict[str, Any]:
    """The endpoint form: URL, ticked types (none: every type), address flag, and the limits
    (empty: the installation's setting)."""
    return {
        "url": text_field(form, "url") if with_url else "",
        "event_types": [t for t in form.getall("event_types", []) if isinstance(t, str)],
        "include_address": form.get("include_address") == "1",
        "timeout_seconds": text_field(form, "timeout_seconds") or None,
        "concurrency": text_field(form, "concurrency") or None,
    }


def _redelivery(ws: Workspace, form: MultiDictProxy[Any]) -> tuple[int | None, dt.datetime | None]:
    event = text_field(form, "event_id").removeprefix("evt_")
    since = text_field(form, "since")
    if bool(event) == bool(since):
        raise InvalidInput("Give either an event id or a time to redeliver from.")
    if event:
        if not event.isdigit() or len(event) > 18:
            raise InvalidInput("An event id is evt_ and a number, e.g. evt_1234.")
        return int(event), None
    try:
        when = dt.datetime.fromisoformat(since)
    except ValueError:
        raise InvalidInput("The time is not valid; use the date and time fields.") from None
    return None, when.replace(tzinfo=ZoneInfo(ws.tenant["time_zone"]))


def _local(ws: Workspace, moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    return f"{moment.astimezone(ZoneInfo(ws.tenant['time_zone'])):%Y-%m-%d %H:%M:%S}"


def _shown(ws: Workspace, row: Any) -> dict[str, Any]:
    """An endpoint as staff read it: health in words, limits in force, times in the
    tenant's zone."""
    view = event_endpoints.view(row)
    timeout, concurrency = event_endpoints.effective_limits(row, _settings(ws))
    if not view["active"]:
        health = "Inactive"
    elif view["failing"]:
        health = f"Failing since {_local(ws, view['failing_since'])}"
    elif view["failing_since"] is not None:
        health = f"Errors since {_local(ws, view['failing_since'])}"
    else:
        health = "Active"
    return view | {
        "health": health,
        "failing_state": view["failing"] and view["active"],
        "types_text": ", ".join(view["event_types"]) or "All types",
        "timeout_text": f"{timeout:g} s" + ("" if row["timeout_seconds"] else " (installation)"),
        "concurrency_text": f"{concurrency}" + ("" if row["concurrency"] else " (installation)"),
        "old_until": _local(ws, view["old_secret_until"])
        if view["old_secret_until"] and view["old_secret_until"] > dt.datetime.now(dt.UTC)
        else "",
        "created": _local(ws, view["created_at"]),
    }


def _blank_form() -> dict[str, Any]:
    return {
        "url": "",
        "event_types": [],
        "include_address": False,
        "timeout_seconds": None,
        "concurrency": None,
    }


async def _list_page(
    ws: Workspace,
    *,
    notice: str | None = None,
    error: str | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    found = await event_endpoints.list_endpoints(ws.conn, ws.tenant_id)
    return ws.page(
        "workspace/webhooks.html",
        status=status,
        endpoints=[_shown(ws, r) for r in found],
        form=form or _blank_form(),
        types=EVENT_TYPES,
        limits=_limit_hints(ws),
        notice=notice,
        error=error,
    )


async def _endpoint_page(
    ws: Workspace,
    endpoint_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    row = await event_endpoints.get(ws.conn, ws.tenant_id, endpoint_id)
    log = await event_endpoints.attempt_log(ws.conn, ws.tenant_id, endpoint_id)
    attempts = [
        {
            "at": _local(ws, a["at"]),
            "event": f"evt_{a['event_id']}" if a["event_id"] is not None else "test",
            "status": a["status"] if a["status"] is not None else "none",
            "latency": a["latency_ms"],
            "error": a["error"] or "",
        }
        for a in log
    ]
    return ws.page(
        "workspace/webhook.html",
        status=status,
        endpoint=_shown(ws, row),
        row=row,
        attempts=attempts,
        types=EVENT_TYPES,
        limits=_limit_hints(ws),
        notice=notice,
        error=error,
    )


def _limit_hints(ws: Workspace) -> dict[str, Any]:
    events = _settings(ws).events
    return {
        "timeout": event_endpoints.TIMEOUT_RANGE,
        "concurrency": event_endpoints.CONCURRENCY_RANGE,
        "timeout_default": f"{events.timeout_seconds:g}",
        "concurrency_default": events.concurrency,
    }


def _secret_page(ws: Workspace, created: event_endpoints.Created, *, rotated: bool) -> web.Response:
    response = ws.page(
        "workspace/webhook_secret.html",
        status=200,
        endpoint=_shown(ws, created.endpoint),
        secret=created.secret,
        rotated=rotated,
    )
    response.headers.update(NO_STORE)
    return response
