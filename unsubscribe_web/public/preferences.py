"""``/p/{token}``: the preference centre. Every topic with its state, "unsubscribe from all
marketing", partner-sharing consent, the person's name; every consent change through
``mailer.consent`` with source ``preference_centre`` and its evidence.

The link never expires, so it never reveals or destroys data: asking for one's data mails a
single-use link, valid for an hour, to the subscriber's own address (DESIGN G5).
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from mailer import tenants
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import NotFound
from mailer.i18n import LANGUAGES, N_
from mailer.limits import Limit
from mailer.rights import privacy
from mailer.tokens import LinkClaims, Purpose
from unsubscribe_web.keys import CSRF, KEYRING, LIMITS, SETTINGS
from unsubscribe_web.pages import (
    LANGUAGE_PARAMETER,
    connection,
    evidence,
    form_action,
    render,
    use_language,
)

FORM = "preferences"
ACTIVE = ("pending", "confirmed")
MAX_NAME = 200
# Data links mailed to one subscriber: a few an hour, then the same answer and no more mail.
DATA_LINKS = Limit("data_link", count=3, window=3600)


def add_routes(app: web.Application) -> None:
    resource = app.router.add_resource("/p/{token}", name="preferences")
    resource.add_route("GET", show)
    resource.add_route("HEAD", show)
    resource.add_route("POST", change)


async def show(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    claims = request.app[KEYRING].verify(token, Purpose.PREFERENCES)
    async with connection(request) as conn:
        person, topics = await _load(conn, claims)
    use_language(request, person["language"])
    return render(
        request,
        "preferences.html",
        person=person,
        topics=topics,
        active=ACTIVE,
        csrf=request.app[CSRF].issue(token, FORM),
        action=form_action(request),
        notice=request.query.get("done", ""),
        contact=tenants.contact_of(person),
    )


async def change(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    claims = request.app[KEYRING].verify(token, Purpose.PREFERENCES)
    form = await request.post()
    if not request.app[CSRF].check(token, FORM, form.get("csrf")):
        raise web.HTTPForbidden(reason=N_("This form could not be verified; reload the page."))
    action = form.get("action")
    async with connection(request) as conn:
        _, topics = await _load(conn, claims)
        proof = evidence(request, detail={"form": "preference_centre"})
        if action == "save":
            done = await _save(conn, claims, topics, form, proof)
        elif action == "unsubscribe_all":
            await consent.unsubscribe_all_marketing(
                conn,
                tenant_id=claims.tenant_id,
                subscriber_id=claims.subscriber_id,
                source="preference_centre",
                evidence=proof,
            )
            done = "all"
        elif action == "data_link":
            done = await _mail_data_link(request, conn, claims)
        else:
            raise web.HTTPBadRequest(reason=N_("Unknown action."))
    # Post/redirect/get: a reload shows the stored state instead of posting again.
    location = (
        request.app.router["preferences"]
        .url_for(token=token)
        .with_query(done=done, **_kept_language(request))
    )
    raise web.HTTPSeeOther(location)


def _kept_language(request: web.Request) -> dict[str, str]:
    """``?lang=`` of the form's page, kept across post/redirect/get."""
    language = request.query.get(LANGUAGE_PARAMETER)
    return {LANGUAGE_PARAMETER: language} if language in LANGUAGES else {}


async def _load(
    conn: asyncpg.Connection, claims: LinkClaims
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    q = queries().web
    person = await q.preference_person(
        conn, tenant_id=claims.tenant_id, subscriber_id=claims.subscriber_id
    )
    if person is None or person["status"] != "active":
        raise NotFound(N_("There are no preferences for this link any more."))
    topics = await rows(
        q.preference_topics(conn, tenant_id=claims.tenant_id, subscriber_id=claims.subscriber_id)
    )
    return person, topics


async def _save(
    conn: asyncpg.Connection,
    claims: LinkClaims,
    topics: list[asyncpg.Record],
    form: Any,
    proof: consent.Evidence,
) -> str:
    """Apply what differs from the stored state: one ledger row per change, all or nothing."""
    ids: dict[str, Any] = {"tenant_id": claims.tenant_id, "subscriber_id": claims.subscriber_id}
    async with conn.transaction():
        for topic in topics:
            wanted = form.get(f"topic-{topic['id']}") == "on"
            if topic["state"] in ACTIVE and not wanted:
                await consent.unsubscribe(
                    conn, **ids, topic_id=topic["id"], source="preference_centre", evidence=proof
                )
            elif topic["state"] not in ACTIVE and wanted:
                await consent.resubscribe(
                    conn, **ids, topic_id=topic["id"], source="preference_centre", evidence=proof
                )
        await consent.set_partner_consent(
            conn,
            **ids,
            granted=form.get("partner") == "on",
            source="preference_centre",
            evidence=proof,
        )
        name = str(form.get("name", "")).strip()[:MAX_NAME] or None
        await queries().web.set_subscriber_name(conn, **ids, name=name)
    return "saved"


async def _mail_data_link(
    request: web.Request, conn: asyncpg.Connection, claims: LinkClaims
) -> str:
    """Mail a single-use, one-hour link to the person's own address; show nothing here."""
    if not await request.app[LIMITS].allow(conn, DATA_LINKS, str(claims.subscriber_id)):
        return "sent"  # already sent several: do not flood the mailbox, answer the same
    await privacy.send_data_link(
        conn,
        request.app[SETTINGS],
        tenant_id=claims.tenant_id,
        subscriber_id=claims.subscriber_id,
    )
    return "sent"
