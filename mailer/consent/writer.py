"""The only code that changes consent: subscribe, confirm, unsubscribe, preferences, suppress.

Every change writes its consent_events row (and evidence) in the same transaction as the state
it changes, and is idempotent: repeating it changes nothing and writes no second row. Every
withdrawal, suppression and suppression lift is also recorded for the journal outside the
database (mailer/journal.py), written once the transaction commits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from mailer import journal
from mailer.addresses import Address, parse_address, suppression_key, tenant_hash_key
from mailer.db import (
    journal_append,
    journal_committed,
    journal_durable,
    queries,
    record_heads,
    record_journal,
    rows,
)
from mailer.errors import (
    AgeAttestationRequired,
    Conflict,
    Suppressed,
    UnknownSubscriber,
    UnknownTopic,
)

Scope = Literal["marketing", "all"]

# Sources that are the person's own action; everything else (staff, imports, the API) is not,
# and may never undo an opt-out or a suppression.
SELF_SOURCES = frozenset({"web_form", "double_opt_in", "preference_centre", "undo"})


@dataclass(frozen=True, slots=True)
class Evidence:
    """What proves a consent change; erasable, unlike the ledger row that points at it."""

    ip: str | None = None
    user_agent: str | None = None
    form_text: str | None = None
    message_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # The language form_text was shown in: the evidence is the exact text the person read.
    form_language: str | None = None


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    subscriber_id: int
    state: str  # the subscription's state afterwards: pending or confirmed
    changed: bool  # False when it was already pending or confirmed
    needs_confirmation: bool  # a confirmation mail should go out


async def subscribe(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant_id: int,
    topic_id: int,
    email: str,
    age_attested: bool,
    source: str,
    name: str | None = None,
    evidence: Evidence | None = None,
    confirmed: bool = False,
    lawful_basis: str | None = None,
) -> SubscribeResult:
    """Sign someone up to a topic; pending until confirmed unless ``confirmed`` (imports with
    evidence of existing consent). Refuses suppressed or opted-out addresses for anything but
    the person's own request."""
    address = parse_address(email)
    if not age_attested:
        raise AgeAttestationRequired(field="age_attested")
    q = queries().consent
    key = suppression_key(tenant_hash_key(hash_key, tenant_id), address)
    async with conn.transaction():
        topic = await _topic(conn, tenant_id, topic_id)
        suppression = await q.get_suppression(conn, tenant_id=tenant_id, address_key=key)
        own_request = source in SELF_SOURCES
        if suppression is not None and (
            suppression["scope"] == "all" or topic["kind"] == "marketing"
        ):
            # Scope all stops every mail, so not even a confirmation can go out.
            if suppression["scope"] == "all" or not own_request:
                raise Suppressed(field="email")
            confirmed = False  # a marketing suppression is lifted only by a confirmed opt-in
        row = await q.upsert_subscriber(
            conn, tenant_id=tenant_id, email=address.as_given, email_key=key, name=name
        )
        subscriber_id = row["id"]
        state = "confirmed" if confirmed else "pending"
        inserted = await q.insert_subscription(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=topic_id,
            state=state,
        )
        if inserted is None:
            current = await q.lock_subscription(
                conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
            )
            if current["state"] != "unsubscribed":
                return SubscribeResult(
                    subscriber_id, current["state"], False, current["state"] == "pending"
                )
            if not own_request:
                raise Suppressed("This person unsubscribed; only they can sign up again.")
            await q.set_pending(
                conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
            )
            state = "pending"
        await q.record_age_attestation(conn, tenant_id=tenant_id, id=subscriber_id)
        await _write_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=topic_id,
            action="subscribe",
            effect="grant" if state == "confirmed" else "pending",
            source=source,
            evidence=evidence,
            lawful_basis=lawful_basis,
        )
        return SubscribeResult(subscriber_id, state, True, state == "pending")


async def confirm(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    evidence: Evidence | None = None,
) -> bool:
    """The person's own confirmation (double opt-in). Returns False when already confirmed.

    The only path that lifts a marketing suppression: the person asked again and confirmed."""
    q = queries().consent
    async with conn.transaction():
        subscriber = await _subscriber(conn, tenant_id, subscriber_id)
        topic = await _topic(conn, tenant_id, topic_id)
        current = await q.lock_subscription(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        if current is None:
            raise UnknownSubscriber("There is no sign-up to confirm.")
        if current["state"] == "confirmed":
            return False
        if current["state"] == "unsubscribed":
            raise Conflict("This sign-up was cancelled; please sign up again.")
        key = subscriber["email_key"]
        suppression = await q.get_suppression(conn, tenant_id=tenant_id, address_key=key)
        if suppression is not None and suppression["scope"] == "all":
            raise Suppressed()
        await q.confirm_subscription(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        evidence_id = await _write_evidence(conn, tenant_id, evidence)
        if topic["kind"] == "marketing":
            await _lift_marketing_suppression(
                conn, tenant_id, subscriber_id, topic_id, key, "double_opt_in", evidence_id
            )
        await q.insert_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=topic_id,
            action="confirm",
            effect="grant",
            source="double_opt_in",
            policy_version_id=await q.current_policy_version(conn, tenant_id=tenant_id),
            evidence_id=evidence_id,
            campaign_id=None,
            lawful_basis=None,
            actor=None,
        )
        return True


async def unsubscribe(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    source: str,
    evidence: Evidence | None = None,
    campaign_id: int | None = None,
    actor: str | None = None,
) -> bool:
    """Leave one topic. Returns False when already unsubscribed (no second ledger row).
    ``actor``: the staff member behind a staff or API change, named in the ledger row."""
    q = queries().consent
    async with conn.transaction():
        changed = await q.unsubscribe_topic(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        if changed is None:
            await _topic(conn, tenant_id, topic_id)  # unknown topic is an error, not a no-op
            return False
        await _write_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=topic_id,
            action="unsubscribe",
            effect="withdraw",
            source=source,
            evidence=evidence,
            campaign_id=campaign_id,
            actor=actor,
        )
        await journal_event(
            conn, tenant_id, subscriber_id, "withdraw_topic", topic_id=topic_id, source=source
        )
        return True


async def unsubscribe_all_marketing(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    source: str,
    evidence: Evidence | None = None,
    campaign_id: int | None = None,
    actor: str | None = None,
) -> bool:
    """Stop all marketing: every marketing topic unsubscribed plus a `marketing` suppression
    that keeps future imports and staff from signing the address up again."""
    q = queries().consent
    async with conn.transaction():
        subscriber = await _subscriber(conn, tenant_id, subscriber_id)
        left = await rows(
            q.unsubscribe_marketing_topics(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
        )
        added = await q.upsert_suppression(
            conn,
            tenant_id=tenant_id,
            address_key=subscriber["email_key"],
            scope="marketing",
            reason="unsubscribe",
            source=source,
        )
        if not left and added is None:
            return False
        await _write_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=None,
            action="unsubscribe_all",
            effect="withdraw",
            source=source,
            evidence=evidence,
            campaign_id=campaign_id,
            actor=actor,
        )
        await journal_event(
            conn, tenant_id, subscriber_id, "withdraw_marketing", scope="marketing", source=source
        )
        return True


async def suppress(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    address_key: bytes,
    scope: Scope,
    reason: str,
    source: str,
    subscriber_id: int | None = None,
    evidence: Evidence | None = None,
    campaign_id: int | None = None,
    actor: str | None = None,
) -> bool:
    """Suppress an address (bounce, complaint, erasure, import of another sender's list).

    Returns False when an equal or wider suppression already existed."""
    q = queries().consent
    async with conn.transaction():
        added = await q.upsert_suppression(
            conn,
            tenant_id=tenant_id,
            address_key=address_key,
            scope=scope,
            reason=reason,
            source=source,
        )
        if added is None:
            return False
        await journal_event(
            conn,
            tenant_id,
            subscriber_id,
            "suppress",
            keys=(address_key,),
            scope=added["scope"],
            reason=reason,
            source=source,
        )
        if subscriber_id is not None:
            await _write_event(
                conn,
                tenant_id=tenant_id,
                subscriber_id=subscriber_id,
                topic_id=None,
                action="suppress",
                effect="withdraw",
                source=source,
                evidence=evidence,
                campaign_id=campaign_id,
                actor=actor,
            )
        return True


async def set_partner_consent(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    granted: bool,
    source: str,
    evidence: Evidence | None = None,
) -> bool:
    """Grant or withdraw consent to sharing with partners; False when nothing changed."""
    q = queries().consent
    async with conn.transaction():
        await _subscriber(conn, tenant_id, subscriber_id)
        changed = await q.set_partner_consent(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, consent=granted
        )
        if changed is None:
            return False
        await _write_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=None,
            action="partner_grant" if granted else "partner_withdraw",
            effect="grant" if granted else "withdraw",
            source=source,
            evidence=evidence,
        )
        if not granted:
            await journal_event(conn, tenant_id, subscriber_id, "withdraw_partner", source=source)
        return True


async def _topic(conn: asyncpg.Connection, tenant_id: int, topic_id: int) -> asyncpg.Record:
    topic = await queries().tenants.get_topic(conn, tenant_id=tenant_id, id=topic_id)
    if topic is None:
        raise UnknownTopic(field="topic")
    return topic


async def _subscriber(
    conn: asyncpg.Connection, tenant_id: int, subscriber_id: int
) -> asyncpg.Record:
    subscriber = await queries().consent.get_subscriber(conn, tenant_id=tenant_id, id=subscriber_id)
    if subscriber is None or subscriber["status"] != "active":
        raise UnknownSubscriber()
    return subscriber


async def _lift_marketing_suppression(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    address_key: bytes,
    source: str,
    evidence_id: int | None,
) -> None:
    """Only the person's own confirmed opt-in comes here: lift a marketing suppression (if
    any) and record that with its own ledger row."""
    q = queries().consent
    if await q.lift_marketing_suppression(conn, tenant_id=tenant_id, address_key=address_key):
        await q.insert_event(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            topic_id=topic_id,
            action="lift_suppression",
            effect="grant",
            source=source,
            policy_version_id=None,
            evidence_id=evidence_id,
            campaign_id=None,
            lawful_basis=None,
            actor=None,
        )
        await journal_event(
            conn,
            tenant_id,
            subscriber_id,
            "lift_suppression",
            keys=(address_key,),
            topic_id=topic_id,
            scope="marketing",
            source=source,
        )


async def journal_event(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int | None,
    event: str,
    *,
    keys: Sequence[bytes] | None = None,
    topic_id: int | None = None,
    scope: str | None = None,
    reason: str | None = None,
    source: str | None = None,
) -> None:
    """Record ``event`` for the journal of the current transaction. ``keys`` None: the keyed
    hashes of every address the person had; a suppression or a lift names its own key."""
    if journal.current() is None:
        return
    if keys is None:
        assert subscriber_id is not None
        found = await rows(
            queries().journal.address_keys(conn, tenant_id=tenant_id, subscriber_id=subscriber_id)
        )
        keys = [bytes(r["address_key"]) for r in found]
    record_journal(
        conn,
        journal.JournalEvent(
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            event=event,
            keys=tuple(bytes(k) for k in keys),
            topic_id=topic_id,
            scope=scope,
            reason=reason,
            source=source,
        ),
    )


async def _write_evidence(
    conn: asyncpg.Connection, tenant_id: int, evidence: Evidence | None
) -> int | None:
    if evidence is None:
        return None
    evidence_id: int = await queries().consent.insert_evidence(
        conn,
        tenant_id=tenant_id,
        ip=evidence.ip,
        user_agent=evidence.user_agent,
        form_text=evidence.form_text,
        form_language=evidence.form_language,
        message_id=evidence.message_id,
        detail=evidence.detail,
    )
    return evidence_id


async def _write_event(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int | None,
    action: str,
    effect: str,
    source: str,
    evidence: Evidence | None,
    campaign_id: int | None = None,
    lawful_basis: str | None = None,
    actor: str | None = None,
) -> None:
    q = queries().consent
    await q.insert_event(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        topic_id=topic_id,
        action=action,
        effect=effect,
        source=source,
        policy_version_id=await q.current_policy_version(conn, tenant_id=tenant_id),
        evidence_id=await _write_evidence(conn, tenant_id, evidence),
        campaign_id=campaign_id,
        lawful_basis=lawful_basis,
        actor=actor,
    )


async def resubscribe(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    source: Literal["undo", "preference_centre"],
    evidence: Evidence | None = None,
) -> bool:
    """The person's own return to a topic, from a link mailed to their address (the undo
    button after an unsubscribe, a ticked box in the preference centre). Confirmed at once:
    holding the link proves the mailbox, as a double opt-in click does. Returns False when
    already pending or confirmed (no ledger row). Like ``confirm``, it lifts a marketing
    suppression for a marketing topic; a scope `all` suppression refuses it."""
    q = queries().consent
    async with conn.transaction():
        subscriber = await _subscriber(conn, tenant_id, subscriber_id)
        topic = await _topic(conn, tenant_id, topic_id)
        key = subscriber["email_key"]
        suppression = await q.get_suppression(conn, tenant_id=tenant_id, address_key=key)
        if suppression is not None and suppression["scope"] == "all":
            raise Suppressed()
        changed = await q.resubscribe_topic(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        if changed is None:
            return False
        evidence_id = await _write_evidence(conn, tenant_id, evidence)
        if topic["kind"] == "marketing":
            await _lift_marketing_suppression(
                conn, tenant_id, subscriber_id, topic_id, key, source, evidence_id
            )
        await _write_return(conn, tenant_id, subscriber_id, topic_id, changed, source, evidence_id)
        return True


async def _write_return(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    changed: asyncpg.Record,
    source: str,
    evidence_id: int | None,
) -> None:
    """The ledger row of a person's own return to a topic (``changed``: from the upsert)."""
    q = queries().consent
    await q.insert_event(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        topic_id=topic_id,
        action="subscribe" if changed["created"] else "resubscribe",
        effect="grant",
        source=source,
        policy_version_id=await q.current_policy_version(conn, tenant_id=tenant_id),
        evidence_id=evidence_id,
        campaign_id=None,
        lawful_basis=None,
        actor=None,
    )


async def reapply_lift(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    address_key: bytes,
    source: str,
    evidence: Evidence | None = None,
) -> bool:
    """A journalled lift brought back after a restore (`optout journal reapply`): the
    person's own confirmed opt-in to ``topic_id`` lifted the marketing suppression of
    ``address_key``; both are made true again. A scope `all` suppression refuses it, as it
    refused the original. Returns False when both already hold."""
    q = queries().consent
    async with conn.transaction():
        await _subscriber(conn, tenant_id, subscriber_id)
        await _topic(conn, tenant_id, topic_id)
        suppression = await q.get_suppression(conn, tenant_id=tenant_id, address_key=address_key)
        if suppression is not None and suppression["scope"] == "all":
            return False
        evidence_id = await _write_evidence(conn, tenant_id, evidence)
        changed = await q.reconfirm_topic(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        if changed is not None:
            await _write_return(
                conn, tenant_id, subscriber_id, topic_id, changed, source, evidence_id
            )
        lifted = suppression is not None
        if lifted:
            await _lift_marketing_suppression(
                conn, tenant_id, subscriber_id, topic_id, address_key, source, evidence_id
            )
        return lifted or changed is not None


# --- set-based sign-up for imports -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One person of an import batch: its line in the file, its checked address, its name."""

    line: int
    address: Address
    name: str | None = None
    language: str | None = None  # a shipped language code, from the import's language column
    external_id: str | None = None  # the tenant's own id for the person (issue 22)


@dataclass(slots=True)
class BatchOutcome:
    subscribed: list[tuple[BatchRow, int]] = field(default_factory=list)  # (row, subscriber id)
    # (row, why): suppressed, unsubscribed, already_subscribed, duplicate
    skipped: list[tuple[BatchRow, str]] = field(default_factory=list)


async def subscribe_batch(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant_id: int,
    topic_id: int,
    batch: Sequence[BatchRow],
    age_attested: bool,
    source: str,
    lawful_basis: str,
    confirmed: bool = False,
    form_text: str | None = None,
    detail: dict[str, Any] | None = None,
) -> BatchOutcome:
    """``subscribe`` for many people of one topic at once, for sources that are not the
    person's own action (imports): a handful of set-based statements per batch instead of
    several per person, with the same rules. A suppression (scope all, or any for a marketing
    topic) or an earlier unsubscribe skips the person; an existing pending or confirmed
    subscription is left as it is with no ledger row; every new subscription gets its ledger
    row, with the lawful basis and an evidence row naming its line, in the same transaction."""
    if source in SELF_SOURCES:
        raise ValueError("subscribe_batch is for imports and staff, not the person's own sign-up")
    if not age_attested:
        raise AgeAttestationRequired(field="age_attested")
    outcome = BatchOutcome()
    if not batch:
        return outcome
    q = queries().consent
    qb = queries().consent_batch
    tenant_key = tenant_hash_key(hash_key, tenant_id)
    async with conn.transaction():
        topic = await _topic(conn, tenant_id, topic_id)
        by_key: dict[bytes, BatchRow] = {}
        for row in batch:
            key = suppression_key(tenant_key, row.address)
            if key in by_key:
                outcome.skipped.append((row, "duplicate"))
            else:
                by_key[key] = row
        scopes = {
            r["address_key"]: r["scope"]
            for r in await rows(qb.suppressions_for(conn, tenant_id=tenant_id, keys=list(by_key)))
        }
        candidates: dict[bytes, BatchRow] = {}
        for key, row in by_key.items():
            scope = scopes.get(key)
            if scope == "all" or (scope is not None and topic["kind"] == "marketing"):
                outcome.skipped.append((row, "suppressed"))
            else:
                candidates[key] = row
        if not candidates:
            return outcome
        keys = list(candidates)
        people = await rows(
            qb.upsert_subscribers(
                conn,
                tenant_id=tenant_id,
                emails=[candidates[k].address.as_given for k in keys],
                keys=keys,
                names=[candidates[k].name for k in keys],
            )
        )
        ids = {bytes(r["email_key"]): r["id"] for r in people}
        spoken = sorted((ids[k], row.language) for k, row in candidates.items() if row.language)
        if spoken:
            await qb.set_languages(
                conn,
                tenant_id=tenant_id,
                ids=[i for i, _ in spoken],
                languages=[lang for _, lang in spoken],
            )
        await _set_external_ids(conn, tenant_id, ids, candidates)
        created = {r["id"] for r in people if r["created"]}
        state = "confirmed" if confirmed else "pending"
        new = {
            r["subscriber_id"]
            for r in await rows(
                qb.insert_subscriptions(
                    conn,
                    tenant_id=tenant_id,
                    topic_id=topic_id,
                    subscriber_ids=sorted(ids.values()),
                    state=state,
                )
            )
        }
        old = [i for i in ids.values() if i not in new]
        states = {
            r["subscriber_id"]: r["state"]
            for r in await rows(
                qb.existing_states(conn, tenant_id=tenant_id, topic_id=topic_id, subscriber_ids=old)
            )
        }
        for key, row in candidates.items():
            subscriber_id = ids[key]
            if subscriber_id in new:
                outcome.subscribed.append((row, subscriber_id))
            elif states.get(subscriber_id) == "unsubscribed":
                outcome.skipped.append((row, "unsubscribed"))
            else:
                outcome.skipped.append((row, "already_subscribed"))
        if not outcome.subscribed:
            return outcome
        new_ids = [subscriber_id for _, subscriber_id in outcome.subscribed]
        known = [i for i in new_ids if i not in created]  # new people attested on insert
        if known:
            await qb.record_age_attestations(conn, tenant_id=tenant_id, ids=known)
        await qb.insert_events_with_evidence(
            conn,
            tenant_id=tenant_id,
            topic_id=topic_id,
            subscriber_ids=new_ids,
            details=[
                json.dumps({**(detail or {}), "line": row.line}) for row, _ in outcome.subscribed
            ],
            form_text=form_text,
            effect="grant" if confirmed else "pending",
            source=source,
            policy_version_id=await q.current_policy_version(conn, tenant_id=tenant_id),
            lawful_basis=lawful_basis,
        )
    return outcome


async def _set_external_ids(
    conn: asyncpg.Connection,
    tenant_id: int,
    ids: dict[bytes, int],
    candidates: dict[bytes, BatchRow],
) -> None:
    """The import's external_id column, before the ledger rows so their events carry it; the
    first row naming an id wins within the batch."""
    chosen: dict[str, int] = {}
    for key, row in candidates.items():
        if row.external_id is not None:
            chosen.setdefault(row.external_id, ids[key])
    if chosen:
        await queries().events.set_external_ids(
            conn,
            tenant_id=tenant_id,
            ids=list(chosen.values()),
            external_ids=list(chosen),
        )


async def unsubscribe_from_link(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    source: str,
    evidence: Evidence,
) -> asyncpg.Record:
    """``unsubscribe`` for the one-click and landing-page POST, in a single statement (the hot
    path: one round trip, no explicit transaction; with a journal, the same statement records
    the journal's token, and the line is fsynced before this returns). Same effect and
    idempotence: the ledger and evidence rows are written only when the subscription changed.
    Returns ``changed`` with the sender, topic name and address for the confirmation page;
    UnknownTopic when the topic is not the tenant's."""
    token = uuid.uuid4() if journal.current() is not None else None
    row = await _unsubscribe_from_link(
        conn, tenant_id, subscriber_id, topic_id, source, evidence, token
    )
    if token is not None and row is not None and row["journal_time"] is not None:
        # Committed by the statement itself: journalled now, before the answer goes out.
        await journal_committed(
            conn,
            [_withdraw_topic_line(tenant_id, subscriber_id, topic_id, source, row)],
            row["journal_time"],
            token,
        )
    if row is None:
        raise UnknownTopic(field="topic")
    return row


async def unsubscribe_from_link_pooled(
    acquire: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    *,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    source: str,
    evidence: Evidence,
) -> asyncpg.Record:
    """``unsubscribe_from_link`` on a connection from ``acquire`` (a pool's) that goes back
    before the journal's fsync is awaited: the same statement, and the same line written and
    fsynced before this returns, but the connection is held for the statement's round trip
    only. Held through the fsync, a pool of N connections capped the opt-outs in flight at N,
    each waiting on the disk with a connection Postgres could have used meanwhile."""
    token = uuid.uuid4() if journal.current() is not None else None
    ticket = None
    async with acquire() as conn:
        row = await _unsubscribe_from_link(
            conn, tenant_id, subscriber_id, topic_id, source, evidence, token
        )
        if token is not None and row is not None and row["journal_time"] is not None:
            # Queued at once (no await since the commit): the file keeps the commit order.
            line = _withdraw_topic_line(tenant_id, subscriber_id, topic_id, source, row)
            ticket = journal_append([line], row["journal_time"], token)
    if ticket is not None:
        await journal_durable(ticket, acquire)  # on disk before the answer goes out
    if row is None:
        raise UnknownTopic(field="topic")
    return row


@dataclass(frozen=True, slots=True)
class LinkOptOut:
    """One one-click (or landing-page button) opt-out of a micro-batch."""

    tenant_id: int
    subscriber_id: int
    topic_id: int
    source: str
    evidence: Evidence


async def unsubscribe_from_links_pooled(
    acquire: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    asks: Sequence[LinkOptOut],
) -> list[asyncpg.Record | None]:
    """``unsubscribe_from_link_pooled`` for many opt-outs at once: ONE statement (one commit),
    ONE journal transaction holding a line per changed subscription, fsynced and its head
    recorded before this returns. Returns one answer per ask, in order: the same row as the
    single statement's, or None when the ask's topic is not its tenant's. The same
    subscription asked twice changes once (the first ask); the others answer ``changed``
    False. Raises what the statement raises, and then nothing was committed."""
    answers, heads = await unsubscribe_from_links_synced(acquire, asks)
    await record_heads(heads, acquire)
    return answers


async def unsubscribe_from_links_synced(
    acquire: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]],
    asks: Sequence[LinkOptOut],
) -> tuple[list[asyncpg.Record | None], list[journal.Head]]:
    """``unsubscribe_from_links_pooled`` up to the journal's fsync: returns the answers,
    committed and on disk, and the journal heads for the caller to record (``record_heads``)
    once it has answered: the head is a record that may lag, the answer need not wait on it."""
    token = uuid.uuid4() if journal.current() is not None else None
    ticket = None
    async with acquire() as conn:
        # Straight to asyncpg, as the single statement; parameters in positional order.
        found = await conn.fetch(
            queries().consent.unsubscribe_from_links.sql,
            [a.tenant_id for a in asks],
            [a.subscriber_id for a in asks],
            [a.topic_id for a in asks],
            [a.evidence.ip for a in asks],
            [a.evidence.user_agent for a in asks],
            [a.evidence.detail for a in asks],
            [a.source for a in asks],
            token,
        )
        answers: list[asyncpg.Record | None] = [None] * len(asks)
        for row in found:
            answers[row["ord"] - 1] = row
        if token is not None and found and found[0]["journal_time"] is not None:
            lines = [
                _withdraw_topic_line(a.tenant_id, a.subscriber_id, a.topic_id, a.source, row)
                for a, row in zip(asks, answers, strict=True)
                if row is not None and row["changed"]
            ]
            # Queued at once (no await since the commit): the file keeps the commit order.
            ticket = journal_append(lines, found[0]["journal_time"], token)
    heads: list[journal.Head] = []
    if ticket is not None:
        heads = await journal.durable_ticket(ticket)  # on disk before any answer goes out
    return answers, heads


def _withdraw_topic_line(
    tenant_id: int, subscriber_id: int, topic_id: int, source: str, row: asyncpg.Record
) -> journal.JournalEvent:
    return journal.JournalEvent(
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        event="withdraw_topic",
        keys=tuple(bytes(k) for k in row["address_keys"] or ()),
        topic_id=topic_id,
        source=source,
    )


async def _unsubscribe_from_link(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    topic_id: int,
    source: str,
    evidence: Evidence,
    token: uuid.UUID | None,
) -> asyncpg.Record | None:
    # Straight to asyncpg: aiosql's wrapper costs a dir() of the connection per call, a tenth
    # of this request's CPU. The SQL declares its parameters in positional order.
    row: asyncpg.Record | None = await conn.fetchrow(
        queries().consent.unsubscribe_from_link.sql,
        tenant_id,
        subscriber_id,
        topic_id,
        evidence.ip,
        evidence.user_agent,
        evidence.detail,
        source,
        token,
    )
    return row


async def correct_import_basis(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    import_id: int,
    old_basis: str,
    new_basis: str,
    source: str,
) -> int:
    """Append one ``correct_basis`` row (effect ``none``: no state changes) per person the
    import subscribed, its evidence naming the old and new basis. Returns how many."""
    corrected = await rows(
        queries().consent.correct_import_basis(
            conn,
            tenant_id=tenant_id,
            import_id=import_id,
            new_basis=new_basis,
            source=source,
            form_text=(
                f"Lawful basis of import {import_id} corrected from {old_basis!r} to {new_basis!r}."
            ),
        )
    )
    return len(corrected)
