"""The request queue: each data request closed as done only by its action, which does the work
and leaves a receipt; otherwise rejected with a reason mailed to the requester (GDPR Art.
12(4)), or extended once with a reason mailed (Art. 12(3)).

The actions: access mails the single-use data link (or hands the copy to staff, for the CLI
and the API); rectification applies the correction (an address change waits for the new
mailbox, as in self-service); erasure erases; partner withdrawal withdraws the attached
person's partner consent (a ledger row whose evidence names the request); a client's removal
erases every live person its list names. Receipts hold ids and counts, never personal data.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from mailer import audit
from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.consent.imports import scan
from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidInput, NotFound
from mailer.i18n import N_
from mailer.outbox import enqueue_transactional
from mailer.rights import deadlines, erasure, privacy
from mailer.rights.removal_lists import read_removal_list

log = logging.getLogger(__name__)

REJECTED_TEMPLATE = "request_rejected"
EXTENDED_TEMPLATE = "request_extended"
MAX_REASON = 2000
CLOSED_SHOWN = 50
REMOVAL_BATCH = 500
MAX_BAD_LINES = 100  # reported by line number only: a bad row may hold an address
ACCESS_BY = ("link", "copy")


@dataclass(frozen=True, slots=True)
class Correction:
    """What a rectification changes: the name, the address, or both (None: unchanged)."""

    name: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: the closed request and its receipt; the erasure receipt and the
    partner exports to tell (Art. 19) for an erasure, the data for an access copy."""

    request: asyncpg.Record
    already_done: bool
    receipt: dict[str, Any]
    erasure_receipt: asyncpg.Record | None = None
    partner_exports: tuple[asyncpg.Record, ...] = ()
    access: dict[str, Any] | None = None


@dataclass(slots=True)
class _Work:
    receipt: dict[str, Any]
    erasure_receipt: asyncpg.Record | None = None
    partner_exports: tuple[asyncpg.Record, ...] = ()
    access: dict[str, Any] | None = None


# --- the queue ---------------------------------------------------------------------------------


async def open_requests(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    """Requests still to do, the earliest deadline (so every overdue one) first."""
    return await rows(queries().request_queue.open_requests(conn, tenant_id=tenant_id))


async def closed_requests(
    conn: asyncpg.Connection, tenant_id: int, limit: int = CLOSED_SHOWN
) -> list[asyncpg.Record]:
    return await rows(queries().request_queue.closed_requests(conn, tenant_id=tenant_id, lim=limit))


# --- the action --------------------------------------------------------------------------------


async def act(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant: asyncpg.Record,
    request_id: int,
    by: str,
    now: dt.datetime,
    token_id: int | None = None,
    correction: Correction | None = None,
    access_by: str = "link",
) -> Outcome:
    """Do the request's work and close it with its receipt, in one transaction.

    Refused (Conflict, nothing changed) before verification, after a rejection, and for a
    partner withdrawal not yet attached to a subscriber; a request already done is returned
    as it is. ``access_by``: mail the person the single-use link, or give staff the copy.
    """
    if access_by not in ACCESS_BY:
        raise InvalidInput(f"An access copy goes by one of {', '.join(ACCESS_BY)}.")
    tenant_id = tenant["id"]
    async with conn.transaction():
        request = await queries().privacy.lock_request(conn, tenant_id=tenant_id, id=request_id)
        if request is None:
            raise NotFound(f"No request {request_id}.", field="request")
        if request["status"] == "done":
            return Outcome(request, True, dict(request["receipt"] or {}))
        if request["status"] == "rejected":
            raise Conflict(f"Request {request_id} was rejected; it cannot be done now.")
        if request["status"] != "open":
            raise Conflict(
                f"Request {request_id} is awaiting verification: "
                "nothing is done before the address is verified."
            )
        work = await _do(conn, settings, tenant, request, by, now, correction, access_by)
        done = await privacy.complete_request(
            conn, tenant_id, request_id, by=by, now=now, receipt=work.receipt
        )
        await audit.record(
            conn,
            actor=by,
            token_id=token_id,
            tenant_id=tenant_id,
            action="request.complete",
            target_type="data_request",
            target_id=request_id,
            detail={"kind": request["kind"]},
        )
    log.info("data request done tenant=%s id=%s kind=%s", tenant_id, request_id, request["kind"])
    return Outcome(
        done, False, work.receipt, work.erasure_receipt, work.partner_exports, work.access
    )


async def _do(
    conn: asyncpg.Connection,
    settings: Settings,
    tenant: asyncpg.Record,
    request: asyncpg.Record,
    by: str,
    now: dt.datetime,
    correction: Correction | None,
    access_by: str,
) -> _Work:
    kind = request["kind"]
    if kind == "client_removal":
        return await _remove_client_list(conn, tenant["id"], request, by, now)
    subscriber_id = await _live_subscriber(conn, tenant["id"], request)
    if kind == "access":
        if access_by == "copy":
            data = await privacy.access_export(conn, tenant["id"], subscriber_id)
            return _Work({"action": "access_copy_given", "to": by}, access=data)
        await privacy.send_data_link(
            conn,
            settings,
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            purpose="access",
            now=now,
        )
        return _Work({"action": "data_link_mailed", "link_valid_minutes": 60})
    if kind == "erase":
        return await _erase(conn, tenant["id"], subscriber_id, request["id"], by, now)
    if kind == "rectify":
        return await _rectify(conn, settings, tenant, subscriber_id, correction, now)
    if kind == "partner_withdrawal":
        changed = await consent.set_partner_consent(
            conn,
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            granted=False,
            source="partner_address" if "partner_claim_id" in request["detail"] else "staff",
            evidence=consent.Evidence(
                detail={"data_request_id": request["id"], "carried_out_by": by}
            ),
        )
        action = "partner_consent_withdrawn" if changed else "partner_consent_already_withdrawn"
        return _Work({"action": action, "subscriber_id": subscriber_id})
    raise InvalidInput(f"Unknown request kind {kind!r}.", field="kind")


async def _live_subscriber(
    conn: asyncpg.Connection, tenant_id: int, request: asyncpg.Record
) -> int:
    subscriber_id = request["subscriber_id"]
    if subscriber_id is None:
        if request["kind"] == "partner_withdrawal":
            raise Conflict(
                "Attach this request to a subscriber first (by their exact address or id).",
                field="subscriber",
            )
        raise Conflict("This request names no subscriber.", field="subscriber")
    found = await queries().consent.get_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
    if found is None or (found["status"] != "active" and request["kind"] != "erase"):
        raise Conflict("The subscriber of this request no longer exists.", field="subscriber")
    return int(subscriber_id)


async def _erase(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    request_id: int,
    by: str,
    now: dt.datetime,
) -> _Work:
    result = await erasure.erase_subscriber(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        by=by,
        now=now,
        data_request_id=request_id,
    )
    exports = tuple(result.partner_exports)
    receipt = {
        "action": "erased",
        "erasure_receipt_id": result.receipt["id"],
        # GDPR Art. 19: the partner exports whose recipients must be told.
        "partner_export_ids": [e["id"] for e in exports],
    }
    return _Work(receipt, result.receipt, exports)


async def _rectify(
    conn: asyncpg.Connection,
    settings: Settings,
    tenant: asyncpg.Record,
    subscriber_id: int,
    correction: Correction | None,
    now: dt.datetime,
) -> _Work:
    name = (correction.name or "").strip() if correction else ""
    email = (correction.email or "").strip() if correction else ""
    if not name and not email:
        raise InvalidInput(
            "Give the correction: the new name, the new address, or both.", field="name"
        )
    receipt: dict[str, Any] = {"action": "rectified", "name_corrected": bool(name)}
    async with conn.transaction():
        if name:
            await privacy.correct_name(conn, tenant["id"], subscriber_id, name)
        if email:
            # As in self-service: the new mailbox confirms before the address changes.
            receipt["address_change_request_id"] = await privacy.request_address_change(
                conn,
                settings,
                tenant=tenant,
                subscriber_id=subscriber_id,
                new_email=email,
                now=now,
            )
    return _Work(receipt)


async def _remove_client_list(
    conn: asyncpg.Connection, tenant_id: int, request: asyncpg.Record, by: str, now: dt.datetime
) -> _Work:
    """Erase every live person the list names; count the addresses held only as a
    suppression and those not found. A single-address request names its person directly."""
    counts = {"erased": 0, "suppressed": 0, "not_found": 0}
    exports: set[int] = set()
    if request["subscriber_id"] is not None:
        done = await _erase(conn, tenant_id, request["subscriber_id"], request["id"], by, now)
        counts["erased"] += 1
        exports |= set(done.receipt["partner_export_ids"])
    q = queries().request_queue
    after = b""
    while True:  # bounded: each page moves past its last key
        batch = await rows(
            q.removal_batch(
                conn,
                tenant_id=tenant_id,
                data_request_id=request["id"],
                after_key=after,
                lim=REMOVAL_BATCH,
            )
        )
        for entry in batch:
            if entry["subscriber_id"] is not None:
                done = await _erase(conn, tenant_id, entry["subscriber_id"], request["id"], by, now)
                counts["erased"] += 1
                exports |= set(done.receipt["partner_export_ids"])
            elif entry["suppressed"]:
                counts["suppressed"] += 1
            else:
                counts["not_found"] += 1
        if len(batch) < REMOVAL_BATCH:
            break
        after = batch[-1]["address_key"]
    receipt = {"action": "client_removal", **counts, "partner_export_ids": sorted(exports)}
    return _Work(receipt)


# --- attaching, rejecting, extending -----------------------------------------------------------


async def attach(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant: asyncpg.Record,
    request_id: int,
    email: str | None = None,
    subscriber_id: int | None = None,
    by: str,
    token_id: int | None = None,
) -> asyncpg.Record:
    """Attach a partner withdrawal that mail matched to nobody to the subscriber staff found:
    by the exact address (through its keyed hash, never a search) or by id."""
    if (email is None) == (subscriber_id is None):
        raise InvalidInput("Give the subscriber's exact address or their id.", field="email")
    tenant_id = tenant["id"]
    if email is not None:
        key = suppression_key(tenant_hash_key(settings.hash_key, tenant_id), parse_address(email))
        found = await queries().consent.get_subscriber_by_key(
            conn, tenant_id=tenant_id, email_key=key
        )
    else:
        found = await queries().consent.get_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
    if found is None or found["status"] != "active":
        raise NotFound("No subscriber has that address or id here.", field="email")
    async with conn.transaction():
        row = await queries().request_queue.attach_subscriber(
            conn, tenant_id=tenant_id, id=request_id, subscriber_id=found["id"]
        )
        if row is None:
            current = await privacy.get_request(conn, tenant_id, request_id)
            raise Conflict(
                f"Request {request_id} cannot be attached: only an open partner withdrawal "
                f"without a subscriber can (it is a {current['status']} "
                f"{current['kind'].replace('_', ' ')})."
            )
        await _audit(conn, by, token_id, tenant_id, "request.attach", request_id)
    return row


async def reject(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    request_id: int,
    reason: str,
    by: str,
    now: dt.datetime,
    token_id: int | None = None,
) -> tuple[asyncpg.Record, bool]:
    """Close a request without acting on it, for ``reason``, which is mailed to the
    requester with their right to complain to a supervisory authority (GDPR Art. 12(4)).
    Returns the request and whether a mail went out (a client's removal is answered through
    the API and the workspace instead)."""
    text = _reason(reason)
    tenant_id = tenant["id"]
    async with conn.transaction():
        row = await queries().request_queue.reject_request(
            conn, tenant_id=tenant_id, id=request_id, reason=text, now=now, by=by
        )
        if row is None:
            current = await privacy.get_request(conn, tenant_id, request_id)
            raise Conflict(f"Request {request_id} is {current['status']}: it cannot be rejected.")
        mailed = await _tell(
            conn,
            tenant,
            row,
            REJECTED_TEMPLATE,
            N_("Your request about your data"),
            {"reason": text},
        )
        await _audit(conn, by, token_id, tenant_id, "request.reject", request_id)
    log.info("data request rejected tenant=%s id=%s mailed=%s", tenant_id, request_id, mailed)
    return row, mailed


async def extend(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    request_id: int,
    reason: str,
    now: dt.datetime,
    by: str,
    months_total: int = deadlines.MAX_PERSON_MONTHS,
) -> tuple[asyncpg.Record, bool]:
    """Extend a person's request once, before its deadline, and mail them the reason and the
    new date (Art. 12(3): the person is told within the first month)."""
    text = _reason(reason)
    async with conn.transaction():
        row = await privacy.extend_request(
            conn,
            tenant=tenant,
            request_id=request_id,
            reason=text,
            now=now,
            months_total=months_total,
            actor=by,
        )
        due = deadlines.last_day(row["extended_due_at"], tenant["time_zone"])
        mailed = await _tell(
            conn,
            tenant,
            row,
            EXTENDED_TEMPLATE,
            N_("More time for your request about your data"),
            {"reason": text, "due": due.isoformat()},
        )
    return row, mailed


def _reason(reason: str) -> str:
    text = reason.replace("\r\n", "\n").strip()
    if not text:
        raise InvalidInput("Give the reason: the person is told it.", field="reason")
    if len(text) > MAX_REASON:
        raise InvalidInput(f"A reason is at most {MAX_REASON} characters.", field="reason")
    return text


async def _tell(
    conn: asyncpg.Connection,
    tenant: asyncpg.Record,
    request: asyncpg.Record,
    template: str,
    subject: str,
    values: dict[str, str],
) -> bool:
    """Mail the requester: the subscriber's address on file, else the address the request
    came from (a confirmed partner-address mailbox); False when there is neither."""
    tenant_id = tenant["id"]
    recipient, subscriber_id, language = request["requester"], None, None
    if request["subscriber_id"] is not None:
        person = await queries().consent.get_subscriber(
            conn, tenant_id=tenant_id, id=request["subscriber_id"]
        )
        if person is not None and person["status"] == "active":
            recipient, subscriber_id, language = person["email"], person["id"], person["language"]
    if not recipient:
        return False
    received = deadlines.local_date(request["received_at"], tenant["time_zone"])
    await enqueue_transactional(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        recipient=recipient,
        template=template,
        payload={
            "subject": subject,
            "received": received.isoformat(),
            "language": language,
            **values,
        },
    )
    return True


async def _audit(
    conn: asyncpg.Connection,
    by: str,
    token_id: int | None,
    tenant_id: int,
    action: str,
    request_id: int,
) -> None:
    await audit.record(
        conn,
        actor=by,
        token_id=token_id,
        tenant_id=tenant_id,
        action=action,
        target_type="data_request",
        target_id=request_id,
    )


# --- a client's removal list -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientList:
    request: asyncpg.Record
    addresses: int
    bad: int
    bad_lines: tuple[int, ...]


async def receive_client_list(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant: asyncpg.Record,
    path: Path,
    by: str,
    source: str,
    now: dt.datetime,
    token_id: int | None = None,
) -> ClientList:
    """A client's removal request carrying a CSV of addresses (a header with an ``email``
    column): read line by line from the spooled upload, each address kept only as its keyed
    hash. One transaction: a file without one valid address records nothing. Due in 30
    business days of the tenant's calendar."""
    scan(path)  # encoding and line length, before anything is written
    tenant_id = tenant["id"]
    tenant_key = tenant_hash_key(settings.hash_key, tenant_id)
    q = queries().request_queue
    added = bad = 0
    bad_lines: list[int] = []
    async with conn.transaction():
        request = await queries().privacy.insert_request(
            conn,
            tenant_id=tenant_id,
            subscriber_id=None,
            kind="client_removal",
            requester=None,
            status="open",
            received_at=now,
            due_at=deadlines.due_at("client_removal", now, tenant["time_zone"], tenant["holidays"]),
            verified_at=now,
            detail={"channel": source},
        )
        keys: list[bytes] = []
        lines: list[int] = []
        with path.open(newline="", encoding="utf-8-sig") as file:
            for line, key in read_removal_list(file, tenant_key):
                if key is None:
                    bad += 1
                    if len(bad_lines) < MAX_BAD_LINES:
                        bad_lines.append(line)
                    continue
                keys.append(key)
                lines.append(line)
                if len(keys) >= REMOVAL_BATCH:
                    added += await q.add_removal_addresses(
                        conn, data_request_id=request["id"], keys=keys, lines=lines
                    )
                    keys, lines = [], []
        added += await q.add_removal_addresses(
            conn, data_request_id=request["id"], keys=keys, lines=lines
        )
        if added == 0:
            raise InvalidInput("The file names no valid address.", field="file")
        detail = {"channel": source, "addresses": added, "bad": bad, "bad_lines": bad_lines}
        request = await queries().request_queue.set_detail(
            conn, tenant_id=tenant_id, id=request["id"], detail=detail
        )
        await audit.record(
            conn,
            actor=by,
            token_id=token_id,
            tenant_id=tenant_id,
            action="request.create",
            target_type="data_request",
            target_id=request["id"],
            detail={"kind": "client_removal", "addresses": added, "bad": bad},
        )
    log.info(
        "client removal list tenant=%s request=%s addresses=%s", tenant_id, request["id"], added
    )
    return ClientList(request, added, bad, tuple(bad_lines))
