"""Erasure (GDPR Art. 17) of one person, of stale unconfirmed sign-ups, and of a whole tenant
at the end of its contract (Art. 28(3)(g)); and the tenant-wide export for the controller.

One transaction removes the person's name, address and every personal field it reaches, found
by subscriber id and by the keyed hash of every address the person had: subscribers, consent
evidence, queued and past deliveries (staff test sends included), raw and parsed inbound mail
and relay webhook bodies, import reports, request texts (a request keeps the requester as a
keyed hash). The erasure is also journalled outside the database (mailer/journal.py), so a
restore from an older backup can be erased again. What stays: a scope-`all` keyed-hash
suppression (so the address is never mailed again nor re-imported), the keyed hashes of the
person's addresses, the ledger's ids and anonymous counts, the access log (the policy says so),
and an erasure receipt with ids and counts only. The receipt lists the partner exports that included
the person, so staff can tell those recipients (Art. 19).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer import events
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import NotFound
from mailer.rights.json_values import jsonable

log = logging.getLogger(__name__)

BATCH = 500
DEFAULT_UNCONFIRMED_DAYS = 30


@dataclass(frozen=True, slots=True)
class ErasureResult:
    receipt: asyncpg.Record
    already_erased: bool  # True: nothing was left to erase; the first receipt is returned
    partner_exports: list[asyncpg.Record]


async def erase_subscriber(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    by: str,
    now: dt.datetime | None = None,
    data_request_id: int | None = None,
) -> ErasureResult:
    """Erase one person; idempotent (erasing an erased person changes nothing)."""
    moment = now or dt.datetime.now(dt.UTC)
    q = queries().privacy
    async with conn.transaction():
        subscriber = await q.lock_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
        if subscriber is None:
            raise NotFound("No such subscriber.", field="subscriber")
        exports = await rows(
            q.partner_exports_of(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
        )
        if subscriber["status"] == "erased":
            receipt = await q.receipt_of(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
            if receipt is None:  # erased by a tenant purge or an older path: write one now
                receipt = await _receipt(conn, subscriber_id, tenant_id, by, moment, {}, exports)
            return ErasureResult(receipt, True, exports)
        removed = await _erase(conn, tenant_id, [subscriber], by=by, now=moment, suppress=True)
        receipt = await _receipt(
            conn, subscriber_id, tenant_id, by, moment, removed, exports, data_request_id
        )
        await q.record_audit(
            conn,
            actor=by,
            tenant_id=tenant_id,
            action="subscriber.erase",
            target_type="subscriber",
            target_id=subscriber_id,
            detail={"receipt": receipt["id"]},
        )
    log.info(
        "erased tenant=%s subscriber=%s receipt=%s partner_exports=%s",
        tenant_id,
        subscriber_id,
        receipt["id"],
        [e["id"] for e in exports],
    )
    return ErasureResult(receipt, False, exports)


async def _receipt(
    conn: asyncpg.Connection,
    subscriber_id: int,
    tenant_id: int,
    by: str,
    now: dt.datetime,
    removed: dict[str, int],
    exports: list[asyncpg.Record],
    data_request_id: int | None = None,
) -> asyncpg.Record:
    receipt: asyncpg.Record = await queries().privacy.insert_receipt(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        data_request_id=data_request_id,
        erased_at=now,
        erased_by=by,
        removed=removed,
        partner_exports=[e["id"] for e in exports],
    )
    return receipt


async def _erase(
    conn: asyncpg.Connection,
    tenant_id: int,
    people: list[asyncpg.Record],
    *,
    by: str,
    now: dt.datetime,
    suppress: bool,
) -> dict[str, int]:
    """Erase ``people`` (subscriber rows with id, email, email_key) inside the caller's
    transaction; returns what was removed, as counts per table."""
    q = queries().privacy
    ids = [p["id"] for p in people]
    keys = [
        bytes(r["address_key"])
        for r in await rows(q.address_keys_of(conn, tenant_id=tenant_id, ids=ids))
    ]
    emails = [p["email"].lower() for p in people if p["email"]]
    requests = 0
    for person in people:
        if suppress:
            # Before the key is gone: the suppression is computed from the stored email_key,
            # so the address is never mailed again nor signed up by staff or an import.
            await consent.suppress(
                conn,
                tenant_id=tenant_id,
                address_key=bytes(person["email_key"]),
                scope="all",
                reason="erasure",
                source="erasure",
                subscriber_id=person["id"],
            )
        # Leaving every topic through the consent core keeps the ledger able to rebuild state.
        for sub in await rows(
            q.live_subscriptions(conn, tenant_id=tenant_id, subscriber_id=person["id"])
        ):
            await consent.unsubscribe(
                conn,
                tenant_id=tenant_id,
                subscriber_id=person["id"],
                topic_id=sub["topic_id"],
                source="erasure",
            )
        await q.scrub_import_errors(conn, tenant_id=tenant_id, email=person["email"])
        requests += await q.scrub_requests(
            conn,
            tenant_id=tenant_id,
            subscriber_id=person["id"],
            email=person["email"],
            email_key=person["email_key"],
        )
        await consent.journal_event(conn, tenant_id, person["id"], "erase", reason="erasure")
    # The erased event names the person by ids only; their external id goes right after it.
    await events.emit_for_subscribers(
        conn, tenant_id=tenant_id, type="subscriber.erased", subscriber_ids=ids
    )
    await queries().events.clear_external_ids(conn, tenant_id=tenant_id, ids=ids)
    removed = {
        "consent_evidence": await q.erase_evidence(conn, tenant_id=tenant_id, ids=ids, now=now),
        "deliveries_cancelled": await q.cancel_deliveries(
            conn, tenant_id=tenant_id, ids=ids, keys=keys
        ),
        "deliveries_scrubbed": await q.scrub_deliveries(
            conn, tenant_id=tenant_id, ids=ids, keys=keys
        ),
        "inbound_events": await q.scrub_inbound(
            conn, tenant_id=tenant_id, ids=ids, keys=keys, emails=emails
        ),
        "data_requests": requests,
        "partner_claims": await q.scrub_partner_claims(conn, tenant_id=tenant_id, ids=ids),
        "subscribers": await q.erase_subscribers(conn, tenant_id=tenant_id, ids=ids, now=now),
    }
    await q.close_links_of(conn, tenant_id=tenant_id, ids=ids, now=now)
    return removed


def unconfirmed_days(tenant: asyncpg.Record) -> int:
    """How long a sign-up may wait for confirmation: the tenant's
    ``limits.unconfirmed_purge_days``, else 30 days."""
    value = (tenant["limits"] or {}).get("unconfirmed_purge_days", DEFAULT_UNCONFIRMED_DAYS)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return DEFAULT_UNCONFIRMED_DAYS


async def purge_unconfirmed(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    now: dt.datetime,
    older_than: dt.timedelta = dt.timedelta(days=DEFAULT_UNCONFIRMED_DAYS),
    by: str = "purge",
) -> int:
    """Erase sign-ups never confirmed within ``older_than``. No suppression: they may sign up
    again; they just never said yes."""
    q = queries().privacy
    total = 0
    for _ in range(1_000_000 // BATCH):  # bounded: a million stale sign-ups per call
        async with conn.transaction():
            people = await rows(
                q.stale_unconfirmed(conn, tenant_id=tenant_id, before=now - older_than, lim=BATCH)
            )
            if not people:
                break
            removed = await _erase(conn, tenant_id, people, by=by, now=now, suppress=False)
            total += removed["subscribers"]
    if total:
        log.info("unconfirmed sign-ups purged tenant=%s count=%s", tenant_id, total)
    return total


async def purge_tenant(
    conn: asyncpg.Connection, *, tenant: asyncpg.Record, by: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Delete every personal datum of one tenant (end of contract), batch by batch, each
    batch one transaction; returns the receipt (counts only), also written to the audit log."""
    moment = now or dt.datetime.now(dt.UTC)
    q = queries().privacy
    tenant_id = tenant["id"]
    totals: dict[str, int] = {}
    after = 0
    for _ in range(100_000_000 // BATCH):  # bounded by the largest tenant we expect
        async with conn.transaction():
            people = await rows(
                q.active_subscriber_batch(conn, tenant_id=tenant_id, after_id=after, lim=BATCH)
            )
            if not people:
                break
            removed = await _erase(conn, tenant_id, people, by=by, now=moment, suppress=True)
            for name, count in removed.items():
                totals[name] = totals.get(name, 0) + count
            after = people[-1]["id"]
    async with conn.transaction():
        rest = dict(await q.purge_tenant_leftovers(conn, tenant_id=tenant_id, now=moment))
        receipt = {
            "tenant": tenant["slug"],
            "purged_at": moment.isoformat(),
            "purged_by": by,
            "removed": totals,
            "also_cleared": rest,
        }
        await q.record_audit(
            conn,
            actor=by,
            tenant_id=tenant_id,
            action="tenant.purge",
            target_type="tenant",
            target_id=tenant_id,
            detail=receipt,
        )
    log.info("tenant purged tenant=%s subscribers=%s", tenant_id, totals.get("subscribers", 0))
    return receipt


# Where the server keeps its keys is the operator's business, not the controller's.
SERVER_ONLY_FIELDS = frozenset({"dkim_key_path", "dkim_ed25519_key_path"})


async def export_tenant(
    conn: asyncpg.Connection, *, tenant: asyncpg.Record, by: str
) -> dict[str, Any]:
    """Everything of one tenant, for the controller (Art. 28(3)(g) "returns"); audited."""
    q = queries().privacy
    tenant_id = tenant["id"]
    topics = await rows(queries().tenants.list_topics(conn, tenant_id=tenant_id))
    data = {
        "format": "optout-tenant-export/1",
        "tenant": {k: v for k, v in dict(tenant).items() if k not in SERVER_ONLY_FIELDS},
        "topics": [dict(r) for r in topics],
        "subscribers": [
            dict(r) for r in await rows(q.tenant_subscribers(conn, tenant_id=tenant_id))
        ],
        "consent_events": [
            dict(r) for r in await rows(q.tenant_consent_events(conn, tenant_id=tenant_id))
        ],
        "suppressions": [
            dict(r) for r in await rows(q.tenant_suppression_counts(conn, tenant_id=tenant_id))
        ],
        "policy_versions": [
            dict(r) for r in await rows(queries().policy.list_versions(conn, tenant_id=tenant_id))
        ],
        "campaigns": [dict(r) for r in await rows(q.tenant_campaigns(conn, tenant_id=tenant_id))],
        "data_requests": [
            dict(r) for r in await rows(q.tenant_requests(conn, tenant_id=tenant_id))
        ],
        "erasure_receipts": [
            dict(r) for r in await rows(q.tenant_receipts(conn, tenant_id=tenant_id))
        ],
    }
    async with conn.transaction():
        export_id = await q.insert_export(
            conn,
            tenant_id=tenant_id,
            kind="tenant",
            created_by=by,
            row_count=len(data["subscribers"]),
            detail={},
        )
        await q.record_audit(
            conn,
            actor=by,
            tenant_id=tenant_id,
            action="tenant.export",
            target_type="export",
            target_id=export_id,
            detail={"subscribers": len(data["subscribers"])},
        )
    result: dict[str, Any] = jsonable(data)
    return result
