"""``/s/{tenant}/{topic}``: the sign-up form (double opt-in), and ``/c/{token}``: the page of
the confirmation link, whose button POSTs (a GET never confirms: STANDARDS 19).

The answer to a sign-up is the same whether the address was new, pending, confirmed or
suppressed, so the form cannot be used to learn who is on a list. Rate-limited per client IP
(429) and per address (silently: the answer stays the same, no more mail goes out); the
counts live in Postgres (mailer.limits), so the limits hold across every web process.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiohttp import web

from mailer import tenants, wording
from mailer.addresses import parse_address
from mailer.consent import writer as consent
from mailer.db import queries
from mailer.errors import InvalidAddress, NotFound, Suppressed
from mailer.i18n import N_
from mailer.limits import Limit
from mailer.outbox import enqueue_transactional
from mailer.tokens import LinkClaims, Purpose
from unsubscribe_web.keys import KEYRING, LIMITS, SETTINGS
from unsubscribe_web.pages import (
    absolute,
    connection,
    environment,
    evidence,
    form_action,
    page_language,
    render,
    use_language,
)
from unsubscribe_web.security import client_ip

log = logging.getLogger(__name__)

AGE_FIELD = "age"
AGE_VALUE = "yes"
# The separate, unticked partner-sharing box (GDPR Recital 32: never pre-ticked).
PARTNER_FIELD = "partners"
# Sign-ups per client IP, and per address (confirmation mails to one mailbox).
SIGNUP_PER_IP = Limit("signup_ip", count=20, window=600)
SIGNUP_PER_ADDRESS = Limit("signup_address", count=3, window=3600)


def add_routes(app: web.Application) -> None:
    resource = app.router.add_resource("/s/{tenant}/{topic}", name="subscribe")
    resource.add_route("GET", form)
    resource.add_route("HEAD", form)
    resource.add_route("POST", sign_up)
    resource = app.router.add_resource("/c/{token}", name="confirm")
    resource.add_route("GET", confirm_page)
    resource.add_route("HEAD", confirm_page)  # neither ever confirms (STANDARDS 19)
    resource.add_route("POST", confirm)


async def form(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        context = await _signup_context(conn, request)
        intro = await _intro(request, conn, context)
    return _form_page(request, context, values={}, error=None, intro=intro)


async def sign_up(request: web.Request) -> web.Response:
    async with connection(request) as conn:
        allowed = await request.app[LIMITS].allow(conn, SIGNUP_PER_IP, client_ip(request) or "")
    if not allowed:
        raise web.HTTPTooManyRequests(headers={"Retry-After": str(SIGNUP_PER_IP.retry_after)})
    data = await request.post()
    email = str(data.get("email", "")).strip()
    name = str(data.get("name", "")).strip()[:200] or None
    values = {"email": email, "name": name or "", "partners": data.get(PARTNER_FIELD) == "yes"}
    async with connection(request) as conn:
        context = await _signup_context(conn, request)
        if data.get(AGE_FIELD) != AGE_VALUE:
            intro = await _intro(request, conn, context)
            return _form_page(request, context, values=values, error="age", status=400, intro=intro)
        try:
            address = parse_address(email)
        except InvalidAddress:
            intro = await _intro(request, conn, context)
            return _form_page(
                request, context, values=values, error="email", status=400, intro=intro
            )
        mailbox = f"{context['tenant_id']}:{address.normalised}"
        if await request.app[LIMITS].allow(conn, SIGNUP_PER_ADDRESS, mailbox):
            await _subscribe(
                request, conn, context, address.as_given, name, bool(values["partners"])
            )
        else:
            log.info("sign-up over the per-address limit: tenant=%s", context["tenant_id"])
    return render(request, "subscribe_sent.html", topic=context["topic_name"])


async def _subscribe(
    request: web.Request,
    conn: asyncpg.Connection,
    context: asyncpg.Record,
    email: str,
    name: str | None,
    partners: bool = False,
) -> None:
    """Sign up and queue the confirmation in one transaction; a refusal changes nothing and
    is not shown (the answer must not reveal the address's state). A ticked partner box is
    recorded with its own text as evidence; partner exports list the person only once the
    mailbox has confirmed (mailer.rights.partners)."""
    consent_text = _consent_text(request, context)
    language = page_language(request)
    try:
        async with conn.transaction():
            result = await consent.subscribe(
                conn,
                hash_key=request.app[SETTINGS].hash_key,
                tenant_id=context["tenant_id"],
                topic_id=context["topic_id"],
                email=email,
                name=name,
                age_attested=True,
                source="web_form",
                evidence=evidence(
                    request,
                    form_text=consent_text,
                    form_language=language,
                    detail={
                        "form": request.path,
                        "policy_version": context["policy_version"],
                        "minimum_age": context["minimum_age"],
                    },
                ),
            )
            # The form's language becomes the person's: their confirmation, pages and mail.
            await queries().web.set_subscriber_language(
                conn,
                tenant_id=context["tenant_id"],
                subscriber_id=result.subscriber_id,
                language=language,
            )
            if result.needs_confirmation:
                # Only a sign-up the mailbox still has to confirm: a form must not switch on
                # sharing for someone already subscribed (they use their preference centre).
                if partners:
                    await _grant_partners(request, conn, context, result.subscriber_id)
                await _queue_confirmation(request, conn, context, email, result.subscriber_id)
    except Suppressed:
        log.info("sign-up of a suppressed address ignored: tenant=%s", context["tenant_id"])


async def _grant_partners(
    request: web.Request, conn: asyncpg.Connection, context: asyncpg.Record, subscriber_id: int
) -> None:
    await consent.set_partner_consent(
        conn,
        tenant_id=context["tenant_id"],
        subscriber_id=subscriber_id,
        granted=True,
        source="web_form",
        evidence=evidence(
            request,
            form_text=_partner_text(request, context),
            form_language=page_language(request),
            detail={"form": request.path, "policy_version": context["policy_version"]},
        ),
    )


async def _queue_confirmation(
    request: web.Request,
    conn: asyncpg.Connection,
    context: asyncpg.Record,
    email: str,
    subscriber_id: int,
) -> None:
    token = request.app[KEYRING].sign(
        LinkClaims.issue(Purpose.CONFIRM, context["tenant_id"], subscriber_id, context["topic_id"])
    )
    subject = environment(request).get_template("mail/confirm_subject.txt")
    await enqueue_transactional(
        conn,
        tenant_id=context["tenant_id"],
        recipient=email,
        template="confirm",
        payload={
            "subject": subject.render(topic=context["topic_name"]).strip(),
            "list_name": context["topic_name"],
            "confirm_url": absolute(request, "confirm", token=token),
            "language": page_language(request),
        },
        subscriber_id=subscriber_id,
    )


async def confirm_page(request: web.Request) -> web.Response:
    """The confirmation link's page: a button, nothing changed (scanners fetch links)."""
    claims = request.app[KEYRING].verify(request.match_info["token"], Purpose.CONFIRM)
    async with connection(request) as conn:
        context = await _confirm_context(conn, claims)
    use_language(request, context["language"])
    return render(request, "confirm.html", context=context, action=form_action(request))


async def confirm(request: web.Request) -> web.Response:
    claims = request.app[KEYRING].verify(request.match_info["token"], Purpose.CONFIRM)
    async with connection(request) as conn:
        context = await _confirm_context(conn, claims)
        await consent.confirm(
            conn,
            hash_key=request.app[SETTINGS].hash_key,
            tenant_id=claims.tenant_id,
            subscriber_id=claims.subscriber_id,
            topic_id=claims.object_id,
            evidence=evidence(request, detail={"channel": "confirm_link"}),
        )
    use_language(request, context["language"])
    preferences = request.app[KEYRING].sign(
        LinkClaims.issue(Purpose.PREFERENCES, claims.tenant_id, claims.subscriber_id)
    )
    return render(
        request,
        "confirmed.html",
        context=context,
        preferences=str(request.app.router["preferences"].url_for(token=preferences)),
    )


async def _signup_context(conn: asyncpg.Connection, request: web.Request) -> asyncpg.Record:
    context = await queries().web.signup_context(
        conn, tenant_slug=request.match_info["tenant"], topic_slug=request.match_info["topic"]
    )
    if context is None:
        raise NotFound(N_("There is no such list."))
    # No person yet: ?lang=, the browser's languages, then the tenant's default.
    use_language(request, page_language(request, context["default_language"]))
    return context


async def _confirm_context(conn: asyncpg.Connection, claims: LinkClaims) -> asyncpg.Record:
    context = await queries().web.confirm_context(
        conn,
        tenant_id=claims.tenant_id,
        subscriber_id=claims.subscriber_id,
        topic_id=claims.object_id,
    )
    if context is None:
        raise NotFound(N_("There is no sign-up to confirm."))
    return context


async def _intro(
    request: web.Request, conn: asyncpg.Connection, context: asyncpg.Record
) -> str | None:
    """The tenant's own introduction to its sign-up form in the page's language, if any."""
    texts = await wording.by_language(conn, context["tenant_id"])
    return texts.get(page_language(request), {}).get("signup_intro")


def _consent_text(request: web.Request, context: asyncpg.Record) -> str:
    """The consent statement shown next to the box; the same text is kept as evidence."""
    template = environment(request).get_template("consent_text.txt")
    return template.render(context=context).strip()


def _partner_text(request: web.Request, context: asyncpg.Record) -> str:
    """The partner-sharing statement next to its own box; kept as that grant's evidence."""
    template = environment(request).get_template("partner_consent_text.txt")
    return template.render(context=context).strip()


def _form_page(
    request: web.Request,
    context: asyncpg.Record,
    *,
    values: dict[str, Any],
    error: str | None,
    status: int = 200,
    intro: str | None = None,
) -> web.Response:
    return render(
        request,
        "subscribe.html",
        status=status,
        context=context,
        consent_text=_consent_text(request, context),
        partner_text=_partner_text(request, context),
        values=values,
        error=error,
        intro=intro,
        action=form_action(request),
        contact=tenants.contact_of(context),
    )
