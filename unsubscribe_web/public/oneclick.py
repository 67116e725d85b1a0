"""``/u/{token}``: the RFC 8058 one-click endpoint and the landing page of the footer link, and
``/undo/{token}``: re-subscribing within 30 days of leaving.

GET and HEAD only read (link scanners fetch every URL in a message: STANDARDS 15-17). Any POST
with a valid token unsubscribes at once, whatever its body; no cookie, CSRF token or redirect
is involved (STANDARDS 8-13). When Postgres cannot be reached the opt-out goes to the spool and
the answer is 202 (DESIGN G2); when the spool cannot take it either (a full disk), 503 with
Retry-After: nothing claims a success that is neither committed nor on disk.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import logging
import time

import asyncpg
from aiohttp import web

from mailer import tenants
from mailer.addresses import mask
from mailer.consent import writer as consent
from mailer.db import queries
from mailer.errors import DatabaseUnavailable
from mailer.i18n import N_
from mailer.tokens import LinkClaims, Purpose
from unsubscribe_web.keys import KEYRING, METRICS, ONE_CLICK_BATCHER, ONE_CLICK_PAGES, SPOOL
from unsubscribe_web.pages import (
    connection,
    environment,
    evidence,
    form_action,
    keep_language,
    render,
    use_language,
)
from unsubscribe_web.spool import SpooledOptOut, SpoolWriteFailed

log = logging.getLogger(__name__)

# The body RFC 8058 prescribes; anything else is logged (never its content) and still honoured.
ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
# The landing page's own button adds this field, so the ledger tells the two channels apart.
PAGE_FIELD = "via"
PAGE_VALUE = "page"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
ONE_CLICK_BODY = f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}".encode()
PAGE_MARKER = f"{PAGE_FIELD}={PAGE_VALUE}".encode()
ONE_CLICK_PAGE_CACHE = 4096  # rendered answers kept (one per sender, topic and language)
# Postgres away and the spool's disk full: the sender (or the person) must try again.
NOT_TAKEN = N_("Your unsubscribe could not be recorded just now. Please try again in a minute.")


def add_routes(app: web.Application) -> None:
    # One resource for both methods, so url_for and the metrics label name them together.
    resource = app.router.add_resource("/u/{token}", name="unsubscribe")
    resource.add_route("GET", landing)
    resource.add_route("HEAD", landing)  # scanners send HEAD too (STANDARDS 16): read only
    resource.add_route("POST", unsubscribe)
    app.router.add_post("/undo/{token}", undo, name="undo")


async def landing(request: web.Request) -> web.Response:
    """The page behind the footer link: who, which topic, one button. Reads only."""
    token = request.match_info["token"]
    claims = request.app[KEYRING].verify(token, Purpose.ONE_CLICK)
    try:
        async with connection(request) as conn:
            context = await _context(conn, claims)
    except DatabaseUnavailable:
        # The button still works (the POST is spooled), so show it without the names.
        context = None
    if context:
        use_language(request, str(context["language"]))
    return render(
        request,
        "landing.html",
        context=context,
        contact=context["contact"] if context else None,
        action=form_action(request),
        preferences=_preferences_path(request, claims),
    )


async def unsubscribe(request: web.Request) -> web.Response:
    """RFC 8058 one-click, and the landing page's button: unsubscribe from the token's topic."""
    token = request.match_info["token"]
    claims = request.app[KEYRING].verify(token, Purpose.ONE_CLICK)
    source = await _source(request)
    try:
        # Written with the other one-clicks in flight in one statement and one journal fsync
        # (mailer.consent.link_batch); answered once committed and fsynced.
        row = await request.app[ONE_CLICK_BATCHER].unsubscribe(
            tenant_id=claims.tenant_id,
            subscriber_id=claims.subscriber_id,
            topic_id=claims.object_id,
            source=source,
            evidence=evidence(request, detail={"channel": source}),
        )
    except DatabaseUnavailable:
        entry = SpooledOptOut(
            claims.tenant_id, claims.subscriber_id, claims.object_id, source, time.time()
        )
        try:
            await request.app[SPOOL].append(entry)
        except SpoolWriteFailed as exc:
            raise DatabaseUnavailable(NOT_TAKEN) from exc
        request.app[METRICS].unsubscribed(source)
        return render(request, "unsubscribed_spooled.html", status=202)
    if row["changed"]:
        request.app[METRICS].unsubscribed(source)
    language = use_language(request, row["language"])
    if source == "one_click":
        # A mail provider's server sent this (RFC 8058); nobody reads the page, so no undo or
        # preference links are signed for it. People come through the landing page's button.
        return _short_page(request, row["sender_name"], row["topic_name"], language)
    # No address on this page: the landing page before it showed the masked one.
    context = {"sender": row["sender_name"], "topic": row["topic_name"], "masked": None}
    undo = request.app[KEYRING].sign(
        LinkClaims.issue(Purpose.UNDO, claims.tenant_id, claims.subscriber_id, claims.object_id)
    )
    return render(
        request,
        "unsubscribed.html",
        context=context,
        undo=keep_language(request, request.app.router["undo"].url_for(token=undo)),
        preferences=_preferences_path(request, claims),
    )


async def undo(request: web.Request) -> web.Response:
    """Back to the topic, as the person's own action (source ``undo``), within 30 days."""
    claims = request.app[KEYRING].verify(request.match_info["token"], Purpose.UNDO)
    async with connection(request) as conn:
        await consent.resubscribe(
            conn,
            tenant_id=claims.tenant_id,
            subscriber_id=claims.subscriber_id,
            topic_id=claims.object_id,
            source="undo",
            evidence=evidence(request, detail={"channel": "undo"}),
        )
        context = await _context(conn, claims)
    if context:
        use_language(request, str(context["language"]))
    return render(
        request,
        "resubscribed.html",
        context=context,
        contact=context["contact"] if context else None,
        preferences=_preferences_path(request, claims),
    )


async def _context(conn: asyncpg.Connection, claims: LinkClaims) -> dict[str, object]:
    row = await queries().web.landing_context(
        conn,
        tenant_id=claims.tenant_id,
        subscriber_id=claims.subscriber_id,
        topic_id=claims.object_id,
    )
    if row is None:
        return {}
    return {
        "sender": row["sender_name"],
        "topic": row["topic_name"],
        # Never the full address on a page a scanner or a forwarded mail may show.
        "masked": mask(row["email"]) if row["email"] else None,
        "state": row["state"],
        "language": row["language"],
        # The sender's name, postal address and contact details (STANDARDS 42).
        "contact": tenants.contact_of(row),
    }


async def _source(request: web.Request) -> str:
    """Read the body and name the channel. Every body, of any type and well-formed or not, is
    read whole within the app's size limit first (413 and no change past it); only then is
    it looked at, and what is logged about it is its type and size, never its content."""
    body = await request.read()  # raises 413 past client_max_size, before anything changes
    if request.content_type == FORM_TYPES[0]:
        # The common case (Gmail, our own button): look for our field without building a
        # form dict.
        fields = body.split(b"&")
        if PAGE_MARKER in fields:
            return "landing_page"
        if ONE_CLICK_BODY not in fields:
            log.info("one-click POST without the RFC 8058 field (%s)", request.content_type)
        return "one_click"
    if request.content_type == FORM_TYPES[1]:
        form = multipart_fields(request.headers.get("Content-Type", ""), body)
        if form is None:
            # A broken multipart body from some mail client: still an opt-out (RFC 8058 asks
            # only for a POST); its bytes may be anything, so none of them reach the log.
            log.info("one-click POST with an unreadable multipart body: bytes=%d", len(body))
            return "one_click"
        if form.get(PAGE_FIELD) == PAGE_VALUE:
            return "landing_page"
        if form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            log.info("one-click POST without the RFC 8058 field (%s)", request.content_type)
        return "one_click"
    if body:
        log.info(
            "one-click POST with an odd body: type=%s bytes=%d", request.content_type, len(body)
        )
    return "one_click"


def multipart_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The text fields of a multipart/form-data body already read whole; None if unreadable.

    Parsed from bytes in memory (the stdlib's MIME parser), so the size limit was applied
    before any parsing, whatever the body's shape.
    """
    if "boundary=" not in content_type.lower():
        return None
    try:
        message = email.message_from_bytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body,
            policy=email.policy.compat32,
        )
    except (UnicodeEncodeError, ValueError):
        return None
    if not message.is_multipart() or message.defects:
        return None
    fields: dict[str, str] = {}
    for part in message.get_payload():
        if not isinstance(part, email.message.Message):
            return None
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields.setdefault(name, payload.decode("utf-8", "replace"))
    return fields


def _short_page(request: web.Request, sender: str, topic: str, language: str) -> web.Response:
    """The one-click answer, rendered once per sender, topic and language: this is the hot
    path, and the page holds nothing personal."""
    pages = request.app[ONE_CLICK_PAGES]
    key = (sender, topic, language)
    text = pages.get(key)
    if text is None:
        if len(pages) >= ONE_CLICK_PAGE_CACHE:
            pages.clear()
        context = {"sender": sender, "topic": topic, "masked": None}
        template = environment(request, language).get_template("unsubscribed.html")
        text = pages[key] = template.render(
            context=context, undo=None, preferences=None, languages=[]
        )
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Language": language},
    )


def _preferences_path(request: web.Request, claims: LinkClaims) -> str:
    token = request.app[KEYRING].sign(
        LinkClaims.issue(Purpose.PREFERENCES, claims.tenant_id, claims.subscriber_id)
    )
    return keep_language(request, request.app.router["preferences"].url_for(token=token))
