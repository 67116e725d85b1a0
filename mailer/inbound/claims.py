"""Partner-sharing withdrawals mailed from an address that matches no subscriber: claims, so
junk opens no work with a legal deadline (DESIGN G7).

One claim per sender address and tenant; new claims rate-limited per tenant and per sending
host. A claim whose From passed SPF or DKIM for its domain gets one confirmation mail (at
most once a week) and becomes a data request, due in a month, only when the mailbox confirms;
a claim that passed neither sends nothing (no backscatter to forged addresses) and is listed
for staff without a deadline.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from mailer import outbox
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.errors import InvalidInput, NotFound
from mailer.inbound.authentication import Authentication
from mailer.inbound.matching import address_key_for
from mailer.tokens import LinkClaims, Purpose

__all__ = ["CONFIRM_TEMPLATE", "confirm_claim", "list_claims", "take_claim"]

CONFIRM_TEMPLATE = "confirm_claim"
CONFIRM_EVERY = dt.timedelta(days=7)
RATE_WINDOW = dt.timedelta(hours=1)
CONFIRM_PATH = "/claims/"


class UnknownClaim(NotFound):
    """This confirmation link names no claim waiting for confirmation."""

    code = "unknown_claim"


async def take_claim(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    sender: str,
    auth: Authentication,
    sending_host: str | None,
    now: dt.datetime,
) -> tuple[str, dict[str, Any]]:
    """Record one claim inside the caller's transaction; (outcome, details)."""
    key = address_key_for(settings.hash_key, tenant_id, sender)
    if key is None:
        return "unmatched", {"reason": "the From is not an address"}
    q = queries().claims
    await q.lock_tenant_claims(conn, tenant_id=tenant_id)
    claim = await q.get_claim(conn, tenant_id=tenant_id, requester_key=key)
    if claim is None:
        limits = settings.inbound
        recent = await q.recent_claims(
            conn, tenant_id=tenant_id, sending_host=sending_host or "", since=now - RATE_WINDOW
        )
        if recent["tenant_claims"] >= limits.claims_per_tenant_per_hour:
            return "rate_limited", {"limit": "tenant"}
        if sending_host and recent["host_claims"] >= limits.claims_per_host_per_hour:
            return "rate_limited", {"limit": "sending_host"}
        claim = await q.insert_claim(
            conn,
            tenant_id=tenant_id,
            requester=sender,
            requester_key=key,
            sending_host=sending_host,
            authenticated=auth.from_verified,
            auth=auth.as_json(),
            status="awaiting_confirmation" if auth.from_verified else "listed",
            at=now,
        )
        outcome = "claim_opened"
    else:
        claim = await q.repeat_claim(
            conn, id=claim["id"], authenticated=auth.from_verified, auth=auth.as_json(), at=now
        )
        outcome = "claim_repeated"
    details: dict[str, Any] = {"claim_id": claim["id"], "claim_status": claim["status"]}
    sent_at = claim["confirmation_sent_at"]
    if claim["status"] == "awaiting_confirmation" and (
        sent_at is None or now - sent_at >= CONFIRM_EVERY
    ):
        details["confirmation_delivery_id"] = await _send_confirmation(
            conn, settings, tenant_id, claim["id"], sender
        )
        await q.mark_confirmation_sent(conn, id=claim["id"], at=now)
    return outcome, details


async def _send_confirmation(
    conn: asyncpg.Connection, settings: Settings, tenant_id: int, claim_id: int, sender: str
) -> int:
    token = settings.keyring().sign(LinkClaims.issue(Purpose.CLAIM, tenant_id, 0, claim_id))
    return await outbox.enqueue_transactional(
        conn,
        tenant_id=tenant_id,
        recipient=sender,
        template=CONFIRM_TEMPLATE,
        payload={
            "subject": "Please confirm: stop sharing your address with partners",
            "what": "your address not to be shared with partners any more",
            "confirm_url": f"{settings.base_url}{CONFIRM_PATH}{token}",
        },
    )


async def confirm_claim(
    conn: asyncpg.Connection, claims: LinkClaims, *, now: dt.datetime
) -> dict[str, Any]:
    """The mailbox confirmed: the claim becomes a data request due from now; idempotent."""
    if claims.purpose is not Purpose.CLAIM:
        raise InvalidInput("This link is not a confirmation link.")
    q = queries().claims
    async with conn.transaction():
        claim = await q.get_claim_by_id(conn, tenant_id=claims.tenant_id, id=claims.object_id)
        if claim is None:
            raise UnknownClaim()
        if claim["status"] == "confirmed":
            return dict(claim)
        if claim["status"] != "awaiting_confirmation":
            raise UnknownClaim()
        request_id = await queries().inbound.insert_partner_request(
            conn,
            tenant_id=claims.tenant_id,
            requester=claim["requester"],
            received_at=now,
            detail={"partner_claim_id": claim["id"], "confirmed_by": "mailbox"},
        )
        confirmed = await q.confirm_claim(
            conn, tenant_id=claims.tenant_id, id=claim["id"], data_request_id=request_id
        )
        return dict(confirmed)


async def list_claims(conn: asyncpg.Connection, tenant_id: int) -> list[dict[str, Any]]:
    """A tenant's claims for staff, those without a deadline included."""
    return [
        dict(row) for row in await rows(queries().claims.list_claims(conn, tenant_id=tenant_id))
    ]
