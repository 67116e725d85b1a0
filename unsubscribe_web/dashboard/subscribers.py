"""The workspace's subscriber pages (issue 17): find a person by exact address (the keyed hash)
or id, the list of people with masked addresses a page at a time (keyset), and a person's page
(subscriptions, the ledger with its evidence, deliveries, bounces, requests) with the staff
actions their role allows: unsubscribe from a topic or all marketing, suppress, open an access
or erasure request.

Handlers are thin: mailer.consent.people reads and acts (through the consent writer, each
ledger row naming the actor), mailer.rights.privacy opens requests; post/redirect/get.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from mailer.consent import people
from mailer.consent.ledger import event_view
from mailer.errors import InvalidInput, OptoutError
from mailer.rights import privacy
from unsubscribe_web.api.spec import path_id
from unsubscribe_web.api.subscribers import SCOPES
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field
from unsubscribe_web.keys import SETTINGS

BASE = "/dashboard/t/{tenant}/subscribers"
ONE = BASE + "/{subscriber_id}"
PAGE_SIZE = 50
ALL_MARKETING = "all-marketing"
# What staff may open for a person here; rectify and removals have their own paths.
STAFF_REQUESTS = ("access", "erase")
NOTICES = {
    "unsubscribed": "Unsubscribed. The ledger row names you.",
    "already": "Nothing to change: that was done already.",
    "suppressed": "Suppressed.",
    "requested": "Request opened: the person gets a mail with a link to verify it.",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, list_page, name="ws_subscribers")
    app.router.add_get(ONE, person_page, name="ws_subscriber")
    app.router.add_post(ONE + "/unsubscribe", unsubscribe, name="ws_subscriber_unsubscribe")
    app.router.add_post(ONE + "/suppress", suppress, name="ws_subscriber_suppress")
    app.router.add_post(ONE + "/request", open_request, name="ws_subscriber_request")


async def list_page(request: web.Request) -> web.Response:
    """GET: the search form, its one result (``?q=`` an exact address or an id), or the
    people in id order after ``?after=ID``."""
    async with opened(request, "list_subscribers") as ws:
        query = ws.request.query.get("q", "").strip()
        after = path_id(ws.request.query.get("after", "")) or 0
        error = None
        found: list[dict[str, Any]] = []
        if query:
            try:
                hit = await people.find(
                    ws.conn, ws.request.app[SETTINGS].hash_key, ws.tenant_id, query
                )
                found = [people.masked(hit)] if hit is not None else []
            except InvalidInput as exc:
                error = exc
        else:
            found = await people.page(ws.conn, ws.tenant_id, after_id=after, limit=PAGE_SIZE)
        more = not query and len(found) == PAGE_SIZE
        return ws.page(
            "workspace/subscribers.html",
            status=400 if error else 200,
            query=query,
            error=error,
            people=found,
            next_url=ws.url("ws_subscribers", {"after": str(found[-1]["id"])}) if more else None,
            first_url=ws.url("ws_subscribers") if after else None,
        )


async def person_page(request: web.Request) -> web.Response:
    """GET: one person's page."""
    async with opened(request, "get_subscriber") as ws:
        return await _person(ws, _subscriber_id(ws))


async def unsubscribe(request: web.Request) -> web.Response:
    """POST: unsubscribe from the topic named in the form, or from all marketing."""
    async with posted(request, "unsubscribe_subscriber") as (ws, form):
        subscriber_id = _subscriber_id(ws)
        topic = text_field(form, "topic")
        try:
            async with ws.conn.transaction():
                changed = await people.unsubscribe(
                    ws.conn,
                    ws.tenant_id,
                    subscriber_id,
                    None if topic == ALL_MARKETING else topic,
                    actor=ws.actor,
                    source="staff",
                )
                await ws.audit("unsubscribe_subscriber", ("subscriber", subscriber_id))
        except OptoutError as exc:
            return await _person(ws, subscriber_id, error=exc, status=400)
        done = "unsubscribed" if changed else "already"
        target = ws.url("ws_subscriber", {"done": done}, subscriber_id=subscriber_id)
    return see_other(target)


async def suppress(request: web.Request) -> web.Response:
    """POST: suppress the person's address for marketing or for all mail."""
    async with posted(request, "suppress_subscriber") as (ws, form):
        subscriber_id = _subscriber_id(ws)
        scope = text_field(form, "scope")
        try:
            if scope not in SCOPES:
                raise InvalidInput("Choose what to stop: marketing, or all mail.", field="scope")
            async with ws.conn.transaction():
                changed = await people.suppress(
                    ws.conn,
                    ws.tenant_id,
                    subscriber_id,
                    "all" if scope == "all" else "marketing",
                    actor=ws.actor,
                    source="staff",
                )
                await ws.audit("suppress_subscriber", ("subscriber", subscriber_id))
        except OptoutError as exc:
            return await _person(ws, subscriber_id, error=exc, status=400)
        done = "suppressed" if changed else "already"
        target = ws.url("ws_subscriber", {"done": done}, subscriber_id=subscriber_id)
    return see_other(target)


async def open_request(request: web.Request) -> web.Response:
    """POST: open an access or erasure request for the person, through mailer.rights (which
    audits it and mails the person the link that verifies it, as the API does)."""
    async with posted(request, "create_request") as (ws, form):
        subscriber_id = _subscriber_id(ws)
        kind = text_field(form, "kind")
        try:
            row = await people.get(ws.conn, ws.tenant_id, subscriber_id)
            if kind not in STAFF_REQUESTS:
                raise InvalidInput("Choose an access or an erasure request.", field="kind")
            if row["email"] is None:
                raise InvalidInput("This person was erased: there is nothing left to ask for.")
            settings = ws.request.app[SETTINGS]
            async with ws.conn.transaction():
                created = await privacy.create_request(
                    ws.conn,
                    hash_key=settings.hash_key,
                    tenant=ws.tenant,
                    kind=kind,
                    email=row["email"],
                    now=dt.datetime.now(dt.UTC),
                    actor=ws.actor,
                )
                await privacy.send_verification(
                    ws.conn, settings, tenant_id=ws.tenant_id, request_id=created["id"]
                )
        except OptoutError as exc:
            return await _person(ws, subscriber_id, error=exc, status=400)
        target = ws.url("ws_subscriber", {"done": "requested"}, subscriber_id=subscriber_id)
    return see_other(target)


# --- helpers ------------------------------------------------------------------------------------


def _subscriber_id(ws: Workspace) -> int:
    """The id in the URL; one that cannot name a row reads like another tenant's: 404."""
    subscriber_id = path_id(ws.request.match_info["subscriber_id"])
    if subscriber_id is None:
        raise people.NO_PERSON
    return subscriber_id


async def _person(
    ws: Workspace, subscriber_id: int, *, error: OptoutError | None = None, status: int = 200
) -> web.Response:
    found = await people.person(ws.conn, ws.tenant_id, subscriber_id)
    # Evidence (IP, browser, the form's text) is personal data: shown with the API's right to
    # the consent proof, and that read is audited as the API audits it. A refused action's
    # page leaves it out: a refusal writes nothing, not even an audit line.
    evidence = ws.may("consent_history") and error is None
    if evidence:
        await ws.audit("consent_history", ("subscriber", subscriber_id))
    ledger = [event_view(e) for e in found.ledger]
    marketing = [s for s in found.subscriptions if s["kind"] == "marketing"]
    return ws.page(
        "workspace/subscriber.html",
        status=status,
        person=found,
        ledger=ledger,
        show_evidence=evidence,
        can_leave_all=any(s["state"] != "unsubscribed" for s in marketing)
        or found.suppression is None,
        all_marketing=ALL_MARKETING,
        request_kinds=STAFF_REQUESTS,
        scopes=SCOPES,
        error=error,
        notice=NOTICES.get(ws.request.query.get("done", "")),
    )
