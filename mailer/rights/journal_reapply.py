"""After a restore from a backup: re-apply what the consent journal (mailer/journal.py) says
happened since, so nobody who opted out, was suppressed or was erased comes back.

What the backup already holds is known exactly: every journalled transaction inserted its
token into journal_transactions in the same transaction as its events, and each line names its
token. Lines whose token the restored database holds are in the backup; the others are
re-applied, transaction by transaction, all files merged by the database's transaction time.
Re-applying a transaction inserts its token in the same transaction, so a second run finds
nothing to do.

Damage is reported, never silently skipped: a line whose chained hash does not match (and
everything after it in that file) is not applied; a file shorter than the head the database
recorded, a file rewritten with a fresh chain, a recorded file missing from the folders given.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from mailer import audit, journal
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import OptoutError
from mailer.rights import erasure

log = logging.getLogger(__name__)

ACTOR = "journal"
TOKEN_PAGE = 10_000  # tokens looked up per query


@dataclass(slots=True)
class ReapplyReport:
    files: int = 0
    lines: int = 0  # intact lines read
    pending: int = 0  # lines whose transaction the restored database did not hold
    changed: Counter[str] = field(default_factory=Counter)  # per event: what was re-applied
    problems: list[str] = field(default_factory=list)

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


async def reapply(conn: asyncpg.Connection, directories: Sequence[Path]) -> ReapplyReport:
    """Check every journal file of ``directories`` and re-apply, in time order, every intact
    line the database does not hold; returns the counts and the problems found."""
    report = ReapplyReport()
    checks = [journal.read_file(path) for path in journal.journal_files(directories)]
    report.files = len(checks)
    heads = {r["file"]: r for r in await rows(queries().journal.list_heads(conn))}
    for check in checks:
        report.lines += len(check.entries)
        head = heads.get(check.name)
        if head is not None:
            problem = journal.compare_with_head(check, head["last_seq"], bytes(head["head_hash"]))
            if problem is not None:
                check.problems.append(problem)
                if check.last_seq >= head["last_seq"]:
                    # A chain that holds but is not the one the database saw: the whole
                    # file was rewritten, so no line of it can be trusted.
                    check.entries.clear()
        report.problems.extend(check.problems)
    known = {c.name for c in checks}
    for name, head in heads.items():
        if name not in known:
            report.problems.append(
                f"{name}: the database recorded {head['last_seq']} line(s) of this file, but it "
                "is in none of the folders given"
            )
    entries = journal.merged(checks)
    held: set[str] = set()
    tokens = sorted({e.txn for e in entries})
    for at in range(0, len(tokens), TOKEN_PAGE):
        page = [uuid.UUID(t) for t in tokens[at : at + TOKEN_PAGE]]
        found = await rows(queries().journal.committed_transactions(conn, tokens=page))
        held |= {r["token"].hex for r in found}
    tenants: dict[int, bool] = {}
    for txn, group in itertools.groupby(entries, key=lambda e: e.txn):
        if txn in held:
            continue  # the restored database committed with this transaction
        held.add(txn)
        lines = list(group)
        for entry in lines:
            if entry.tenant_id not in tenants:
                found = await queries().tenants.get_tenant(conn, id=entry.tenant_id)
                tenants[entry.tenant_id] = found is not None
        strangers = [e for e in lines if not tenants[e.tenant_id]]
        if strangers:
            # Another installation's journal, or a tenant this backup predates: say so.
            report.problems.append(
                f"{lines[0].file}: seq {strangers[0].seq}-{strangers[-1].seq} name tenant "
                f"{strangers[0].tenant_id}, which this database does not hold; not applied"
            )
        # A one-click batch journals many tenants' opt-outs in one transaction: those of the
        # tenants held are applied all the same (idempotent, so a later run changes nothing).
        ours = [e for e in lines if tenants[e.tenant_id]]
        if not ours:
            continue
        report.pending += len(ours)
        async with conn.transaction():
            for entry in ours:
                if await _apply(conn, entry):
                    report.changed[entry.event] += 1
            if not strangers:  # else reported again by every run, until resolved
                await queries().journal.mark_transaction(conn, token=uuid.UUID(txn))
    if report.pending or report.problems:
        # One audit row per run that found something: who re-applied what, in counts.
        await audit.record(
            conn,
            actor=ACTOR,
            action="journal.reapply",
            detail={
                "files": report.files,
                "lines": report.lines,
                "pending": report.pending,
                "changed": dict(report.changed),
                "problems": len(report.problems),
            },
        )
    log.info(
        "journal reapplied files=%s lines=%s pending=%s changed=%s problems=%s",
        report.files,
        report.lines,
        report.pending,
        dict(report.changed),
        len(report.problems),
    )
    return report


async def _apply(conn: asyncpg.Connection, entry: journal.Entry) -> bool:
    """Make the database say what ``entry`` says; True when something changed."""
    evidence = consent.Evidence(
        detail={
            "reapplied_from_journal": f"{entry.file}#{entry.seq}",
            "journalled_at": entry.time.isoformat(),
        }
    )
    source = entry.source or "erasure"
    subscriber = None
    if entry.subscriber_id is not None:
        subscriber = await queries().consent.get_subscriber(
            conn, tenant_id=entry.tenant_id, id=entry.subscriber_id
        )
    active = subscriber is not None and subscriber["status"] == "active"
    try:
        if entry.event == "erase":
            if not active:
                return False  # erased already, or never in this backup: nothing to erase
            assert entry.subscriber_id is not None
            result = await erasure.erase_subscriber(
                conn, tenant_id=entry.tenant_id, subscriber_id=entry.subscriber_id, by=ACTOR
            )
            return not result.already_erased
        if entry.event == "suppress":
            scope: consent.Scope = "all" if entry.scope == "all" else "marketing"
            who = entry.subscriber_id if active else None
            return await _suppress(conn, entry, scope, entry.reason or "manual", who, evidence)
        if entry.event == "withdraw_marketing" and not active:
            # Not in this backup (signed up after it): the addresses still stay out of
            # marketing, as the person asked.
            return await _suppress(conn, entry, "marketing", "unsubscribe", None, evidence)
        if not active:
            return False  # the person is not in this backup, or was erased in it
        assert entry.subscriber_id is not None
        if entry.event == "withdraw_topic":
            assert entry.topic_id is not None
            return await consent.unsubscribe(
                conn,
                tenant_id=entry.tenant_id,
                subscriber_id=entry.subscriber_id,
                topic_id=entry.topic_id,
                source=source,
                evidence=evidence,
            )
        if entry.event == "withdraw_marketing":
            return await consent.unsubscribe_all_marketing(
                conn,
                tenant_id=entry.tenant_id,
                subscriber_id=entry.subscriber_id,
                source=source,
                evidence=evidence,
            )
        if entry.event == "withdraw_partner":
            return await consent.set_partner_consent(
                conn,
                tenant_id=entry.tenant_id,
                subscriber_id=entry.subscriber_id,
                granted=False,
                source=source,
                evidence=evidence,
            )
        if entry.event == "lift_suppression":
            assert entry.topic_id is not None and entry.keys
            return await consent.reapply_lift(
                conn,
                tenant_id=entry.tenant_id,
                subscriber_id=entry.subscriber_id,
                topic_id=entry.topic_id,
                address_key=entry.keys[0],
                source=source,
                evidence=evidence,
            )
    except OptoutError as exc:
        # A topic deleted since, say: the line is read and counted, and the reason logged.
        log.warning(
            "journal line not applied file=%s seq=%s event=%s: %s",
            entry.file,
            entry.seq,
            entry.event,
            exc.message,
        )
        return False
    raise AssertionError(f"unknown journal event {entry.event}")


async def _suppress(
    conn: asyncpg.Connection,
    entry: journal.Entry,
    scope: consent.Scope,
    reason: str,
    subscriber_id: int | None,
    evidence: consent.Evidence,
) -> bool:
    changed = False
    for key in entry.keys:
        changed |= await consent.suppress(
            conn,
            tenant_id=entry.tenant_id,
            address_key=key,
            scope=scope,
            reason=reason,
            source=entry.source or "erasure",
            subscriber_id=subscriber_id,
            evidence=evidence if subscriber_id is not None else None,
        )
    return changed
