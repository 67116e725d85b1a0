"""The workspace's request queue (issue 18): every data request with its due date, overdue
first; one request's page with its action (which does the work and closes it with a receipt),
attaching a partner withdrawal to a subscriber, rejecting with a reason, extending once; a
request recorded by staff, and a client's removal list uploaded as CSV.

Handlers are thin: the shell checks session, CSRF, tenant and the API endpoint's right;
mailer.rights.queue does the work and writes the audit line; post/redirect/get.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web

from mailer.db import queries
from mailer.errors import InvalidInput, NotFound, OptoutError
from mailer.rights import deadlines, privacy, queue
from unsubscribe_web import uploads
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/requests"
ONE = BASE + "/{request_id}"
KIND_NAMES = {
    "access": "Access (a copy of the data)",
    "rectify": "Rectification",
    "erase": "Erasure",
    "partner_withdrawal": "Partner-sharing withdrawal",
    "client_removal": "Client removal",
}
NOTICES = {
    "recorded": "Request recorded. A person's request waits until they confirm it from the "
    "link mailed to the address on file.",
    "uploaded": "The client's removal list is recorded as a request.",
    "done": "Done: the request is closed with its receipt.",
    "attached": "Attached to the subscriber.",
    "rejected": "Rejected: the reason is recorded.",
    "extended": "Extended: the new due date is set.",
}
NO_REQUEST = NotFound("No such data request.", field="request")


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, queue_page, name="ws_requests")
    app.router.add_post(BASE, record, name="ws_request_create")
    app.router.add_post(BASE + "/client-removal", upload, name="ws_request_upload")
    app.router.add_get(ONE, request_page, name="ws_request")
    app.router.add_post(ONE + "/act", act, name="ws_request_act")
    app.router.add_post(ONE + "/attach", attach, name="ws_request_attach")
    app.router.add_post(ONE + "/reject", reject, name="ws_request_reject")
    app.router.add_post(ONE + "/extend", extend, name="ws_request_extend")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _status(exc: OptoutError) -> int:
    if isinstance(exc, NotFound):
        return 404
    return 400 if isinstance(exc, InvalidInput) else 409


# --- the queue ----------------------------------------------------------------------------------


async def queue_page(request: web.Request) -> web.Response:
    """GET: what is still to do, overdue first, then the latest closed with their receipts."""
    async with opened(request, "list_requests") as ws:
        return await _queue(ws)


async def _queue(
    ws: Workspace,
    *,
    error: OptoutError | None = None,
    form: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    zone = ZoneInfo(ws.tenant["time_zone"])
    now = _now()
    still = [_row(r, zone, now) for r in await queue.open_requests(ws.conn, ws.tenant_id)]
    closed = [_row(r, zone, now) for r in await queue.closed_requests(ws.conn, ws.tenant_id)]
    return ws.page(
        "workspace/requests.html",
        status=status,
        open_requests=still,
        closed_requests=closed,
        overdue=sum(1 for r in still if r["overdue"]),
        kinds=KIND_NAMES,
        notice=NOTICES.get(ws.request.query.get("done", "")),
        error=error,
        form=form,
        values=values or {},
    )


def _row(row: asyncpg.Record, zone: ZoneInfo, now: dt.datetime) -> dict[str, Any]:
    due = row["extended_due_at"] or row["due_at"]
    still = row["status"] in ("awaiting_verification", "open")
    return dict(row) | {
        "kind_name": KIND_NAMES.get(row["kind"], row["kind"]),
        "status_name": row["status"].replace("_", " "),
        "received": row["received_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "due_day": deadlines.last_day(due, zone).isoformat(),
        "overdue": still and deadlines.is_overdue(row["due_at"], row["extended_due_at"], now),
    }


async def record(request: web.Request) -> web.Response:
    """POST: a request staff received (by phone, letter, mail): a person's waits for them to
    confirm from the link mailed to the address on file; the answer never says whether the
    address is known."""
    async with posted(request, "create_request") as (ws, form):
        values = {"kind": text_field(form, "kind"), "email": text_field(form, "email")}
        try:
            async with ws.conn.transaction():
                row = await privacy.create_request(
                    ws.conn,
                    hash_key=ws.request.app[SETTINGS].hash_key,
                    tenant=ws.tenant,
                    kind=values["kind"],
                    email=values["email"],
                    now=_now(),
                    actor=ws.principal.actor,
                )
                await privacy.send_verification(
                    ws.conn, ws.request.app[SETTINGS], tenant_id=ws.tenant_id, request_id=row["id"]
                )
        except OptoutError as exc:
            return await _queue(ws, error=exc, form="record", values=values, status=_status(exc))
        target = ws.url("ws_requests", {"done": "recorded"})
    return see_other(target)


async def upload(request: web.Request) -> web.Response:
    """POST: a client's removal list (CSV with an ``email`` column), from compliance."""
    async with posted(request, "upload_client_removal", max_size=uploads.MAX_UPLOAD_BYTES) as (
        ws,
        form,
    ):
        field = form.get("file")
        try:
            if field is None or isinstance(field, str) or not hasattr(field, "file"):
                raise InvalidInput("Choose the CSV file of the client's list.", field="file")
            path = _spooled(ws, field.file)
            try:
                received = await queue.receive_client_list(
                    ws.conn,
                    ws.request.app[SETTINGS],
                    tenant=ws.tenant,
                    path=path,
                    by=ws.principal.actor,
                    source="workspace",
                    now=_now(),
                    token_id=ws.principal.token_id,
                )
            finally:
                uploads.discard(path)
        except OptoutError as exc:
            return await _queue(ws, error=exc, form="upload", status=_status(exc))
        target = ws.url("ws_request", {"done": "uploaded"}, request_id=received.request["id"])
    return see_other(target)


def _spooled(ws: Workspace, source: Any) -> Path:
    """The uploaded part (aiohttp keeps it in a spooled temporary file) as a file of the
    upload folder, copied in chunks."""
    folder = uploads.upload_folder(ws.request.app[SETTINGS])
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".csv", delete=False) as out:
        source.seek(0)
        shutil.copyfileobj(source, out, uploads.UPLOAD_CHUNK)
        return Path(out.name)


# --- one request ------------------------------------------------------------------------------


async def request_page(request: web.Request) -> web.Response:
    async with opened(request, "get_request") as ws:
        return await _one(ws, await _request(ws))


async def _request(ws: Workspace) -> asyncpg.Record:
    request_id = path_id(ws.request.match_info["request_id"])
    if request_id is None:
        raise NO_REQUEST
    return await privacy.get_request(ws.conn, ws.tenant_id, request_id)


async def _one(
    ws: Workspace,
    row: asyncpg.Record,
    *,
    error: OptoutError | None = None,
    form: str = "",
    values: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    zone = ZoneInfo(ws.tenant["time_zone"])
    view = _row(row, zone, _now())
    person = None
    if row["subscriber_id"] is not None:
        person = await _person(ws.conn, ws.tenant_id, row["subscriber_id"])
    return ws.page(
        "workspace/request.html",
        status=status,
        r=view,
        person=person,
        receipt=_receipt_lines(row["receipt"]),
        can_extend=(
            row["kind"] in deadlines.PERSON_KINDS
            and row["extended_due_at"] is None
            and view["status"] in ("awaiting_verification", "open")
            and not view["overdue"]
        ),
        notice=NOTICES.get(ws.request.query.get("done", "")),
        error=error,
        form=form,
        values=values or {},
    )


async def _person(
    conn: asyncpg.Connection, tenant_id: int, subscriber_id: int
) -> asyncpg.Record | None:
    profile: asyncpg.Record | None = await queries().privacy.subscriber_profile(
        conn, tenant_id=tenant_id, id=subscriber_id
    )
    return profile


def _receipt_lines(receipt: Any) -> list[tuple[str, str]]:
    """The receipt as label/value lines (ids and counts only), in words."""
    if not receipt:
        return []
    return [(_words(key), _words(value)) for key, value in receipt.items()]


def _words(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value).replace("_", " ")


def _step(api_name: str, done: str, form_name: str, run: Any) -> Any:
    """A POST on one request: the right of API endpoint ``api_name``; refused, the request's
    page with the reason and the values typed; done, back to the page (post/redirect/get)."""

    async def handler(request: web.Request) -> web.Response:
        async with posted(request, api_name) as (ws, form):
            row = await _request(ws)
            values = {
                k: text_field(form, k, multiline=k == "reason")
                for k in ("name", "email", "reason", "subscriber_id")
            }
            try:
                await run(ws, row, values)
            except OptoutError as exc:
                current = await privacy.get_request(ws.conn, ws.tenant_id, row["id"])
                return await _one(
                    ws, current, error=exc, form=form_name, values=values, status=_status(exc)
                )
            target = ws.url("ws_request", {"done": done}, request_id=row["id"])
        return see_other(target)

    return handler


async def _act(ws: Workspace, row: asyncpg.Record, values: dict[str, str]) -> None:
    await queue.act(
        ws.conn,
        ws.request.app[SETTINGS],
        tenant=ws.tenant,
        request_id=row["id"],
        by=ws.principal.actor,
        now=_now(),
        token_id=ws.principal.token_id,
        correction=queue.Correction(values["name"] or None, values["email"] or None),
        access_by="link",
    )


async def _attach(ws: Workspace, row: asyncpg.Record, values: dict[str, str]) -> None:
    by_id = values["subscriber_id"]
    subscriber_id = path_id(by_id) if by_id else None
    if by_id and subscriber_id is None:
        raise InvalidInput("A subscriber id is a number.", field="subscriber_id")
    await queue.attach(
        ws.conn,
        ws.request.app[SETTINGS],
        tenant=ws.tenant,
        request_id=row["id"],
        email=values["email"] or None,
        subscriber_id=subscriber_id,
        by=ws.principal.actor,
        token_id=ws.principal.token_id,
    )


async def _reject(ws: Workspace, row: asyncpg.Record, values: dict[str, str]) -> None:
    await queue.reject(
        ws.conn,
        tenant=ws.tenant,
        request_id=row["id"],
        reason=values["reason"],
        by=ws.principal.actor,
        now=_now(),
        token_id=ws.principal.token_id,
    )


async def _extend(ws: Workspace, row: asyncpg.Record, values: dict[str, str]) -> None:
    await queue.extend(
        ws.conn,
        tenant=ws.tenant,
        request_id=row["id"],
        reason=values["reason"],
        now=_now(),
        by=ws.principal.actor,
    )


act = _step("complete_request", "done", "act", _act)
attach = _step("attach_request", "attached", "attach", _attach)
reject = _step("reject_request", "rejected", "reject", _reject)
extend = _step("extend_request", "extended", "extend", _extend)
