"""Self-service privacy pages, reached only through the single-use, one-hour link mailed to
the person (``/d/{token}``, sent by the preference centre or mailer.privacy.send_data_link).

GET never changes anything (link scanners prefetch): the mailed link shows a button whose POST
uses the link and opens a session (``/data/{token}``) until the hour is over. There the person
downloads their data (JSON), corrects their name or address (a new address is confirmed from
that mailbox), or deletes everything (confirmed by POST).
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import asyncpg
from aiohttp import web

from mailer import tenants
from mailer.db import queries
from mailer.rights import erasure, privacy
from unsubscribe_web.keys import KEYRING, SETTINGS
from unsubscribe_web.pages import connection, render, use_language
from unsubscribe_web.public.policy_pages import CLOCK

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/d/{token}", start, name="data_link")
    app.router.add_post("/d/{token}", use_link)
    app.router.add_get("/data/{token}", overview, name="data_session")
    app.router.add_post("/data/{token}/download", download, name="data_download")
    app.router.add_post("/data/{token}/name", correct_name, name="data_name")
    app.router.add_post("/data/{token}/address", change_address, name="data_address")
    app.router.add_get("/data/{token}/delete", confirm_delete, name="data_delete")
    app.router.add_post("/data/{token}/delete", delete)


def _now(app: web.Application) -> dt.datetime:
    clock = app.get(CLOCK)
    return clock() if clock is not None else dt.datetime.now(dt.UTC)


def _url(request: web.Request, name: str, **query: str) -> str:
    url = request.app.router[name].url_for(token=request.match_info["token"])
    return str(url.with_query(query) if query else url)


async def _reader_language(
    request: web.Request, conn: asyncpg.Connection, tenant_id: int, subscriber_id: int
) -> None:
    stored = await queries().web.reader_language(
        conn, tenant_id=tenant_id, subscriber_id=subscriber_id
    )
    use_language(request, stored)


async def start(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        link = await privacy.peek_link(
            conn, request.app[KEYRING], request.match_info["token"], _now(request.app)
        )
        await _reader_language(request, conn, link["tenant_id"], link["subscriber_id"])
    return render(request, "data_start.html", purpose=link["purpose"], action=request.path)


async def use_link(request: web.Request) -> web.StreamResponse:
    now = _now(request.app)
    async with connection(request) as conn:
        opened = await privacy.open_session(
            conn, request.app[KEYRING], request.match_info["token"], now
        )
        await _reader_language(request, conn, opened.tenant_id, opened.subscriber_id)
        if opened.purpose == "rectify":
            address = await privacy.confirm_address_change(conn, request.app[SETTINGS], opened, now)
            return render(request, "data_done.html", what="address", address=address)
        if opened.purpose == "verify":
            await privacy.verify_by_link(conn, opened, now)
            return render(request, "data_done.html", what="verified", address="")
    location = request.app.router["data_session"].url_for(token=opened.token)
    raise web.HTTPSeeOther(location)


async def overview(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        session = await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], _now(request.app)
        )
        person = await queries().privacy.subscriber_profile(
            conn, tenant_id=session.tenant_id, id=session.subscriber_id
        )
        await _reader_language(request, conn, session.tenant_id, session.subscriber_id)
        tenant = await queries().tenants.get_tenant(conn, id=session.tenant_id)
    return render(
        request,
        "data_overview.html",
        person=person,
        contact=tenants.contact_of(tenant),
        done=request.query.get("done", ""),
        download_url=_url(request, "data_download"),
        name_url=_url(request, "data_name"),
        address_url=_url(request, "data_address"),
        delete_url=_url(request, "data_delete"),
    )


async def download(request: web.Request) -> web.Response:
    now = _now(request.app)
    async with connection(request) as conn:
        session = await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], now
        )
        async with conn.transaction():
            row = await privacy.record_verified_request(
                conn,
                tenant_id=session.tenant_id,
                subscriber_id=session.subscriber_id,
                kind="access",
                now=now,
            )
            await privacy.complete_request(
                conn,
                session.tenant_id,
                row["id"],
                by="subscriber",
                now=now,
                receipt={"action": "access_copy_downloaded"},
            )
        data = await privacy.access_export(conn, session.tenant_id, session.subscriber_id)
    return web.Response(
        text=json.dumps(data, indent=2, ensure_ascii=False),
        content_type="application/json",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
    )


async def correct_name(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with connection(request) as conn:
        session = await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], _now(request.app)
        )
        await privacy.correct_name(
            conn, session.tenant_id, session.subscriber_id, str(form.get("name", ""))
        )
    raise web.HTTPSeeOther(_url(request, "data_session", done="name"))


async def change_address(request: web.Request) -> web.Response:
    form = await request.post()
    now = _now(request.app)
    async with connection(request) as conn:
        session = await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], now
        )
        tenant = await queries().tenants.get_tenant(conn, id=session.tenant_id)
        await privacy.request_address_change(
            conn,
            request.app[SETTINGS],
            tenant=tenant,
            subscriber_id=session.subscriber_id,
            new_email=str(form.get("email", "")),
            now=now,
        )
    return render(request, "data_done.html", what="address_sent", address="")


async def confirm_delete(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], _now(request.app)
        )
    return render(
        request, "data_delete.html", action=request.path, back=_url(request, "data_session")
    )


async def delete(request: web.Request) -> web.Response:
    now = _now(request.app)
    async with connection(request) as conn:
        session = await privacy.session(
            conn, request.app[KEYRING], request.match_info["token"], now
        )
        async with conn.transaction():
            row = await privacy.record_verified_request(
                conn,
                tenant_id=session.tenant_id,
                subscriber_id=session.subscriber_id,
                kind="erase",
                now=now,
            )
            erased = await erasure.erase_subscriber(
                conn,
                tenant_id=session.tenant_id,
                subscriber_id=session.subscriber_id,
                by="subscriber",
                now=now,
                data_request_id=row["id"],
            )
            await privacy.complete_request(
                conn,
                session.tenant_id,
                row["id"],
                by="subscriber",
                now=now,
                receipt={"action": "erased", "erasure_receipt_id": erased.receipt["id"]},
            )
    log.info("self-service erasure tenant=%s", session.tenant_id)
    return render(request, "data_done.html", what="deleted", address="")
