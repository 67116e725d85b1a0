"""Data-subject rights: data requests with their deadlines, the single-use data links mailed to
a person, the subject-access export (JSON), and rectification of name and address.

Nothing is disclosed or deleted before the address is verified: a person's request starts
``awaiting_verification`` and is verified by a link mailed to that mailbox; the self-service
pages are reached only through such a link (DESIGN G5). Erasure itself is mailer.erasure.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.db_errors import domain_errors
from mailer.errors import Conflict, InvalidInput, NotFound, Suppressed
from mailer.i18n import N_
from mailer.outbox import enqueue_transactional
from mailer.rights import deadlines
from mailer.rights.json_values import jsonable
from mailer.tokens import InvalidToken, Keyring, LinkClaims, Purpose

log = logging.getLogger(__name__)

REQUEST_KINDS = ("access", "rectify", "erase", "partner_withdrawal", "client_removal")
# Withdrawing is the privacy-safe direction, and a client's removal is the controller's own
# instruction: neither waits for the person to verify their address.
OPEN_AT_ONCE = frozenset({"partner_withdrawal", "client_removal"})
LINK_PURPOSES = ("access", "erase", "rectify", "verify")
LINK_LIFETIME = dt.timedelta(seconds=Purpose.DATA_ACCESS.ttl or 3600)
DATA_LINK_TEMPLATE = "data_access"  # shared with the preference centre's data-link mail
ADDRESS_TEMPLATE = "confirm_address"
# The mailed link (DATA_ACCESS, object id = the action link) works once; using it opens a
# session (DATA_SESSION, same object id) that lasts until the link's hour is over.
DATA_LINK_PATH = "/d/"


class LinkUsed(InvalidToken):
    """This link was already used or has expired; ask for a new one from the preference page."""

    code = "link_used"


@dataclass(frozen=True, slots=True)
class DataSession:
    """An open self-service session: who, through which link, until when."""

    tenant_id: int
    subscriber_id: int
    link_id: int
    purpose: str
    token: str  # the session token for the page's links and forms
    expires_at: dt.datetime


# --- data requests -----------------------------------------------------------------------------


async def create_request(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant: asyncpg.Record,
    kind: str,
    email: str,
    now: dt.datetime,
    actor: str = "cli",
    verified: bool = False,
) -> asyncpg.Record:
    """Record a request about the person with address ``email``.

    A person's request waits for verification unless ``verified`` (it came through a mailed
    link); a client's removal request is the controller's instruction and is open at once.
    For an unknown address the request is recorded as rejected without the address, and the
    caller answers exactly as for a known one, so nothing reveals whether the person exists.
    """
    if kind not in REQUEST_KINDS:
        raise InvalidInput(f"A request is one of {', '.join(REQUEST_KINDS)}.", field="kind")
    address = parse_address(email)
    key = suppression_key(tenant_hash_key(hash_key, tenant["id"]), address)
    subscriber = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=tenant["id"], email_key=key
    )
    due = deadlines.due_at(kind, now, tenant["time_zone"], tenant["holidays"])
    open_now = verified or kind in OPEN_AT_ONCE
    known = subscriber is not None and subscriber["status"] == "active"
    q = queries().privacy
    async with conn.transaction():
        row: asyncpg.Record = await q.insert_request(
            conn,
            tenant_id=tenant["id"],
            subscriber_id=subscriber["id"] if known else None,
            kind=kind,
            requester=address.as_given if known else None,
            status=("open" if open_now else "awaiting_verification") if known else "rejected",
            received_at=now,
            due_at=due,
            verified_at=now if open_now and known else None,
            detail={} if known else {"reason": "no data held for the address given"},
        )
        await _audit(conn, actor, tenant["id"], "request.create", row["id"], {"kind": kind})
    log.info("data request tenant=%s id=%s kind=%s", tenant["id"], row["id"], kind)
    return row


async def get_request(conn: asyncpg.Connection, tenant_id: int, request_id: int) -> asyncpg.Record:
    row = await queries().privacy.get_request(conn, tenant_id=tenant_id, id=request_id)
    if row is None:
        raise NotFound(f"No request {request_id}.", field="request")
    return row


async def verify_request(
    conn: asyncpg.Connection, tenant_id: int, request_id: int, now: dt.datetime
) -> asyncpg.Record:
    row = await queries().privacy.verify_request(conn, tenant_id=tenant_id, id=request_id, now=now)
    return row if row is not None else await get_request(conn, tenant_id, request_id)


async def extend_request(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    request_id: int,
    reason: str,
    now: dt.datetime,
    months_total: int = deadlines.MAX_PERSON_MONTHS,
    actor: str = "cli",
) -> asyncpg.Record:
    """Extend a person's request once, before its first deadline, to at most three months."""
    q = queries().privacy
    async with conn.transaction():
        current = await q.lock_request(conn, tenant_id=tenant["id"], id=request_id)
        if current is None:
            raise NotFound(f"No request {request_id}.", field="request")
        if current["status"] in ("done", "rejected"):
            raise Conflict(f"Request {request_id} is {current['status']}.")
        new_due = deadlines.extended_due_at(
            kind=current["kind"],
            received_at=current["received_at"],
            due=current["due_at"],
            already_extended=current["extended_due_at"] is not None,
            reason=reason,
            now=now,
            time_zone=tenant["time_zone"],
            months_total=months_total,
        )
        row: asyncpg.Record = await q.extend_request(
            conn,
            tenant_id=tenant["id"],
            id=request_id,
            extended_due_at=new_due,
            extension_reason=reason.strip(),
        )
        await _audit(conn, actor, tenant["id"], "request.extend", request_id, {})
    return row


async def complete_request(
    conn: asyncpg.Connection,
    tenant_id: int,
    request_id: int,
    *,
    by: str,
    now: dt.datetime,
    receipt: dict[str, Any],
) -> asyncpg.Record:
    """Mark a verified request done with the receipt of what its action did; refuses one
    still waiting for verification. Only an action calls this (mailer.rights.queue, the
    self-service pages): a request is never closed as done without its work."""
    q = queries().privacy
    row = await q.complete_request(
        conn, tenant_id=tenant_id, id=request_id, now=now, completed_by=by, receipt=receipt
    )
    if row is None:
        current = await get_request(conn, tenant_id, request_id)
        if current["status"] == "done":
            return current
        raise Conflict(
            f"Request {request_id} is {current['status'].replace('_', ' ')}: "
            "nothing is done before the address is verified."
        )
    return row


async def list_requests(
    conn: asyncpg.Connection, *, tenant_id: int | None, overdue_at: dt.datetime | None = None
) -> list[asyncpg.Record]:
    return await rows(
        queries().privacy.list_requests(conn, tenant_id=tenant_id, overdue_at=overdue_at)
    )


# --- single-use data links ---------------------------------------------------------------------


async def create_data_link(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    tenant_id: int,
    subscriber_id: int,
    purpose: str,
    now: dt.datetime | None = None,
) -> str:
    """A new single-use link token for ``purpose``, valid for one hour."""
    if purpose not in LINK_PURPOSES:
        raise InvalidInput(f"A data link is for one of {', '.join(LINK_PURPOSES)}.")
    moment = now or dt.datetime.now(dt.UTC)
    with domain_errors():
        link_id: int = await queries().privacy.insert_link(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            purpose=purpose,
            expires_at=moment + LINK_LIFETIME,
        )
    claims = LinkClaims.issue(
        Purpose.DATA_ACCESS, tenant_id, subscriber_id, link_id, now=moment.timestamp()
    )
    return keyring.sign(claims)


async def send_data_link(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    subscriber_id: int,
    purpose: str = "access",
    now: dt.datetime | None = None,
) -> None:
    """Mail the person a single-use, one-hour link to their data (what the preference centre's
    "email me a link to my data" does). The link goes to the address on file only."""
    subscriber = await queries().consent.get_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
    if subscriber is None or subscriber["status"] != "active":
        raise NotFound(N_("No such subscriber."), field="subscriber")
    async with conn.transaction():
        token = await create_data_link(
            conn,
            settings.keyring(),
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            purpose=purpose,
            now=now,
        )
        await enqueue_transactional(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            recipient=subscriber["email"],
            template=DATA_LINK_TEMPLATE,
            payload={
                "access_url": data_url(settings, token),
                "subject": N_("Your link to your data"),
                # The person's language; the worker falls back to the tenant's default.
                "language": subscriber["language"],
            },
        )
    log.info("data link sent tenant=%s subscriber=%s", tenant_id, subscriber_id)


def data_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}{DATA_LINK_PATH}{token}"


async def peek_link(
    conn: asyncpg.Connection, keyring: Keyring, token: str, now: dt.datetime
) -> asyncpg.Record:
    """The unused, unexpired action link behind a mailed token, without using it (for GET)."""
    claims = keyring.verify(token, Purpose.DATA_ACCESS, now=now.timestamp())
    link = await queries().privacy.get_link(conn, tenant_id=claims.tenant_id, id=claims.object_id)
    if (
        link is None
        or link["subscriber_id"] != claims.subscriber_id
        or link["used_at"] is not None
        or link["expires_at"] <= now
    ):
        raise LinkUsed()
    return link


async def open_session(
    conn: asyncpg.Connection, keyring: Keyring, token: str, now: dt.datetime
) -> DataSession:
    """Use the mailed link (once): it proves control of the mailbox and opens a session that
    lasts until the link's hour is over."""
    claims = keyring.verify(token, Purpose.DATA_ACCESS, now=now.timestamp())
    link = await queries().privacy.consume_link(
        conn, tenant_id=claims.tenant_id, id=claims.object_id, now=now
    )
    if link is None or link["subscriber_id"] != claims.subscriber_id:
        raise LinkUsed()
    expires_at = int(link["expires_at"].timestamp())
    session_token = keyring.sign(
        LinkClaims(
            Purpose.DATA_SESSION, claims.tenant_id, claims.subscriber_id, link["id"], expires_at
        )
    )
    return DataSession(
        claims.tenant_id,
        claims.subscriber_id,
        link["id"],
        link["purpose"],
        session_token,
        link["expires_at"],
    )


async def session(
    conn: asyncpg.Connection, keyring: Keyring, token: str, now: dt.datetime
) -> DataSession:
    """The open session of a session token; ends with the hour or with the person's erasure."""
    claims = keyring.verify(token, Purpose.DATA_SESSION, now=now.timestamp())
    link = await queries().privacy.get_link(conn, tenant_id=claims.tenant_id, id=claims.object_id)
    if (
        link is None
        or link["subscriber_id"] != claims.subscriber_id
        or link["used_at"] is None
        or link["expires_at"] <= now
    ):
        raise LinkUsed()
    subscriber = await queries().consent.get_subscriber(
        conn, tenant_id=claims.tenant_id, id=claims.subscriber_id
    )
    if subscriber is None or subscriber["status"] != "active":
        raise LinkUsed()
    return DataSession(
        claims.tenant_id,
        claims.subscriber_id,
        link["id"],
        link["purpose"],
        token,
        link["expires_at"],
    )


# --- access (Art. 15, 20) ----------------------------------------------------------------------


async def access_export(
    conn: asyncpg.Connection, tenant_id: int, subscriber_id: int
) -> dict[str, Any]:
    """Everything held about one person, as JSON-ready data: profile, subscriptions, consent
    history with its evidence, deliveries, bounces and data requests."""
    q = queries().privacy
    profile = await q.subscriber_profile(conn, tenant_id=tenant_id, id=subscriber_id)
    if profile is None:
        raise NotFound(N_("No such subscriber."), field="subscriber")
    subscriber = await queries().consent.get_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
    bounces: list[asyncpg.Record] = []
    if subscriber["email_key"] is not None:
        bounces = await rows(
            q.bounces_of(conn, tenant_id=tenant_id, address_key=subscriber["email_key"])
        )
    subscriptions = await rows(
        queries().consent.list_subscriptions(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
    )
    data: dict[str, Any] = jsonable(
        {
            "format": "optout-subject-access/1",
            "profile": dict(profile),
            "subscriptions": [dict(r) for r in subscriptions],
            "consent_history": [
                dict(r)
                for r in await rows(
                    q.consent_history(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
                )
            ],
            "deliveries": [
                dict(r)
                for r in await rows(
                    q.deliveries_of(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
                )
            ],
            "bounces": [dict(r) for r in bounces],
            "requests": [
                dict(r)
                for r in await rows(
                    q.requests_of(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
                )
            ],
        }
    )
    return data


# --- rectification (Art. 16) -------------------------------------------------------------------


MAX_NAME = 200


async def correct_name(
    conn: asyncpg.Connection, tenant_id: int, subscriber_id: int, name: str
) -> None:
    cleaned = " ".join(name.split())
    if len(cleaned) > MAX_NAME or any(ord(c) < 32 for c in name if c not in "\t"):
        raise InvalidInput(
            N_("A name is at most %(limit)s characters on one line."),
            field="name",
            params={"limit": MAX_NAME},
        )
    await queries().privacy.set_name(
        conn, tenant_id=tenant_id, id=subscriber_id, name=cleaned or None
    )


async def request_address_change(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant: asyncpg.Record,
    subscriber_id: int,
    new_email: str,
    now: dt.datetime,
) -> int:
    """Record the change and mail a confirmation link to the NEW mailbox; the address changes
    only when that link is used (a new address must prove it is the person's too). Returns
    the id of the request that waits for that confirmation."""
    address = parse_address(new_email)
    key = suppression_key(tenant_hash_key(settings.hash_key, tenant["id"]), address)
    sup = await queries().consent.get_suppression(conn, tenant_id=tenant["id"], address_key=key)
    if sup is not None and sup["scope"] == "all":
        raise Suppressed(N_("That address cannot be used."), field="email")
    taken = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=tenant["id"], email_key=key
    )
    if taken is not None:
        raise Conflict(N_("That address is already in use here."), field="email")
    person = await queries().consent.get_subscriber(conn, tenant_id=tenant["id"], id=subscriber_id)
    q = queries().privacy
    async with conn.transaction():
        request = await q.insert_request(
            conn,
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            kind="rectify",
            requester=None,
            status="awaiting_verification",
            received_at=now,
            due_at=deadlines.due_at("rectify", now, tenant["time_zone"]),
            verified_at=None,
            detail={"new_email": address.as_given},
        )
        token = await create_data_link(
            conn,
            settings.keyring(),
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            purpose="rectify",
            now=now,
        )
        await enqueue_transactional(
            conn,
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            recipient=address.as_given,
            template=ADDRESS_TEMPLATE,
            payload={
                "confirm_url": data_url(settings, token),
                "subject": N_("Confirm your new address"),
                "language": person["language"] if person else None,
            },
        )
    log.info("address change requested tenant=%s request=%s", tenant["id"], request["id"])
    request_id: int = request["id"]
    return request_id


async def confirm_address_change(
    conn: asyncpg.Connection, settings: Settings, data_session: DataSession, now: dt.datetime
) -> str:
    """Apply the pending address change after its link was used; returns the new address."""
    q = queries().privacy
    tenant_id, subscriber_id = data_session.tenant_id, data_session.subscriber_id
    async with conn.transaction():
        request = await q.pending_rectification(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id
        )
        if request is None:
            raise Conflict(N_("There is no address change waiting for confirmation."))
        new_email = request["detail"]["new_email"]
        key = suppression_key(tenant_hash_key(settings.hash_key, tenant_id), new_email)
        with domain_errors():
            await q.set_address(
                conn, tenant_id=tenant_id, id=subscriber_id, email=new_email, email_key=key
            )
        await q.verify_request(conn, tenant_id=tenant_id, id=request["id"], now=now)
        await q.complete_request(
            conn,
            tenant_id=tenant_id,
            id=request["id"],
            now=now,
            completed_by="subscriber",
            receipt={"action": "address_changed", "confirmed_by": "new_mailbox"},
        )
    return str(new_email)


async def _audit(
    conn: asyncpg.Connection,
    actor: str,
    tenant_id: int,
    action: str,
    target_id: int,
    detail: dict[str, Any],
) -> None:
    await queries().privacy.record_audit(
        conn,
        actor=actor,
        tenant_id=tenant_id,
        action=action,
        target_type="data_request",
        target_id=target_id,
        detail=detail,
    )


async def record_verified_request(
    conn: asyncpg.Connection, *, tenant_id: int, subscriber_id: int, kind: str, now: dt.datetime
) -> asyncpg.Record:
    """A request made through a mailed link (verified by it), open until the caller completes
    it in the same transaction."""
    tenant = await queries().tenants.get_tenant(conn, id=tenant_id)
    row: asyncpg.Record = await queries().privacy.insert_request(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        kind=kind,
        requester=None,
        status="open",
        received_at=now,
        due_at=deadlines.due_at(kind, now, tenant["time_zone"], tenant["holidays"]),
        verified_at=now,
        detail={"channel": "self_service"},
    )
    return row


VERIFY_TEMPLATE = "verify_request"
_KIND_WORDS = {
    "access": "a copy of your data",
    "erase": "the deletion of your data",
    "rectify": "a correction of your data",
}


async def send_verification(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    request_id: int,
    now: dt.datetime | None = None,
) -> bool:
    """Mail the single-use link that verifies a person's request to the address on file.

    Returns False (and mails nothing) for a request that needs no verification or concerns
    nobody known; the caller answers the same either way."""
    request = await get_request(conn, tenant_id, request_id)
    if request["status"] != "awaiting_verification" or request["subscriber_id"] is None:
        return False
    subscriber = await queries().consent.get_subscriber(
        conn, tenant_id=tenant_id, id=request["subscriber_id"]
    )
    if subscriber is None or subscriber["status"] != "active":
        return False
    async with conn.transaction():
        token = await create_data_link(
            conn,
            settings.keyring(),
            tenant_id=tenant_id,
            subscriber_id=subscriber["id"],
            purpose="verify",
            now=now,
        )
        await enqueue_transactional(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber["id"],
            recipient=subscriber["email"],
            template=VERIFY_TEMPLATE,
            payload={
                "confirm_url": data_url(settings, token),
                "subject": N_("Please confirm your request"),
                "what": _KIND_WORDS.get(request["kind"], "a change to your data"),
                "language": subscriber["language"],
            },
        )
    return True


async def verify_by_link(
    conn: asyncpg.Connection, data_session: DataSession, now: dt.datetime
) -> list[asyncpg.Record]:
    """Verify the person's waiting requests once their verification link was used."""
    return await rows(
        queries().privacy.verify_requests_of(
            conn,
            tenant_id=data_session.tenant_id,
            subscriber_id=data_session.subscriber_id,
            now=now,
        )
    )
