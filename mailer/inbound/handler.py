"""The inbound SMTP handler (aiosmtpd): mailto unsubscribes, VERP bounces, ARF complaints,
partner-consent withdrawals and postmaster mail.

``handle_RCPT`` decides at RCPT time whether an address is one of ours (550 otherwise, never
relay); ``handle_DATA`` records and applies the message in one transaction and answers 250
only after it commits, 451 4.3.0 when Postgres cannot be reached (the sender retries; a
retried message is recognised and applied once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import asyncpg

from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.consent.writer import Evidence
from mailer.db import UNAVAILABLE_ERRORS, queries, rows
from mailer.domains import aligned
from mailer.errors import DatabaseUnavailable, OptoutError
from mailer.inbound.arf import parse_complaint
from mailer.inbound.authentication import UNCHECKED, Authentication, DnsClient, authenticate
from mailer.inbound.bounce_parse import BounceReport, header_value, load_message, parse_bounce
from mailer.inbound.claims import take_claim
from mailer.inbound.complaints import apply_complaint
from mailer.inbound.matching import (
    BOUNCE_PREFIX,
    UNSUBSCRIBE_PREFIX,
    address_key_for,
    delivery_address_key,
    locate_signed,
    read_local_code,
    remember_addresses,
    split_address,
)
from mailer.sending.bounce_policy import DEFAULT_POLICY, record_bounce
from mailer.tokens import CodeClaims, CodeKind

__all__ = ["COMPLAINT_LOCALS", "InboundHandler", "Target", "TenantDirectory"]

log = logging.getLogger(__name__)

# Where feedback loops are registered to send ARF reports (README: inbound mail).
COMPLAINT_LOCALS = frozenset({"complaints", "fbl"})
POSTMASTER = "postmaster"

REPLY_OK = "250 2.0.0 OK: recorded"
REPLY_RCPT_OK = "250 2.1.5 OK"
REPLY_UNAVAILABLE = "451 4.3.0 Temporary failure: please try again later"
REPLY_NO_SUCH_USER = "550 5.1.1 No such user here"
REPLY_BAD_ADDRESS = "550 5.1.3 Bad recipient address syntax"
REPLY_RELAY_DENIED = "550 5.7.1 Relaying denied: not a domain of this server"
REPLY_TOO_MANY = "452 4.5.3 Too many recipients"
REPLY_OPT_OUT_FAILED = "451 4.3.0 Your request could not be recorded: please try again later"

# Addresses whose mail carries a person's opt-out: a failure to apply one answers 451 and keeps
# nothing, so the sender retries; other mail that fails is kept for an operator with 250.
OPT_OUT_KINDS = frozenset({"unsubscribe", "complaint", "partner_withdrawal"})

# Errors that mean "Postgres cannot be reached right now": the sender should retry.
DEFER_ERRORS: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    DatabaseUnavailable,
    TimeoutError,
)

# Test sends carry codes for subscriber 0, which no subscriber has (ids start at 1).
TEST_SEND_SUBSCRIBER = 0

# How long a RCPT may wait for a tenant-table refresh, and how old the cached table may get.
DIRECTORY_MAX_AGE = 60.0
DIRECTORY_REFRESH_TIMEOUT = 5.0
# A DATA that cannot commit within this time is answered 451 (the sender retries).
DATA_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """What one accepted recipient address is for."""

    kind: str  # unsubscribe | bounce | complaint | partner_withdrawal | postmaster
    tenant_ids: tuple[int, ...]  # the tenants the address can be about
    claims: CodeClaims | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What recording one message for one recipient did; stored in inbound_events."""

    kind: str
    outcome: str
    tenant_id: int | None = None
    delivery_id: int | None = None
    subscriber_id: int | None = None
    parsed: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Context:
    event_id: int
    mail_from: str | None
    raw: bytes
    message_id: str | None
    header_from: str | None
    auto_submitted: bool
    received_at: dt.datetime
    auth: Authentication = UNCHECKED
    client_ip: str | None = None


class TenantDirectory:
    """Our domains and partner addresses, cached from the tenants table."""

    def __init__(self, tenants: Sequence[Any] = (), *, loaded_at: float | None = None) -> None:
        self.loaded_at = loaded_at
        self.domain_of: dict[int, str] = {}
        self.by_domain: dict[str, tuple[int, ...]] = {}
        self.by_partner: dict[str, tuple[int, ...]] = {}
        for row in tenants:
            tenant_id = int(row["id"])
            domain = str(row["sender_domain"]).lower()
            self.domain_of[tenant_id] = domain
            self.by_domain[domain] = (*self.by_domain.get(domain, ()), tenant_id)
            if row["partner_address"]:
                partner = str(row["partner_address"]).strip().lower()
                self.by_partner[partner] = (*self.by_partner.get(partner, ()), tenant_id)

    def classify(self, address: str, keyring: Any) -> Target | str:
        """The target of a RCPT address, or the SMTP reply refusing it."""
        local, domain = split_address(address)
        if not local or not domain:
            return REPLY_BAD_ADDRESS
        partner = self.by_partner.get(f"{local.lower()}@{domain}")
        if partner:
            return Target("partner_withdrawal", partner)
        tenants = self.by_domain.get(domain)
        if not tenants:
            return REPLY_RELAY_DENIED
        head = local.lower()
        if head == POSTMASTER:
            return Target("postmaster", tenants)
        if head in COMPLAINT_LOCALS:
            return Target("complaint", tenants)
        for prefix, kind, name in (
            (UNSUBSCRIBE_PREFIX, CodeKind.UNSUBSCRIBE, "unsubscribe"),
            (BOUNCE_PREFIX, CodeKind.BOUNCE, "bounce"),
        ):
            claims = read_local_code(keyring, local, prefix, kind)
            # The code must be for a tenant that sends from this very domain.
            if claims is not None and claims.ids[0] in tenants:
                return Target(name, (claims.ids[0],), claims)
        return REPLY_NO_SUCH_USER


Processor = Callable[[asyncpg.Connection, Target, _Context], Awaitable[Result]]


class InboundHandler:
    """The aiosmtpd handler. ``pool`` may be replaced (tests point it elsewhere and back)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, *, timeout: float = DATA_TIMEOUT):
        self.settings = settings
        self.pool = pool
        self.keyring = settings.keyring()
        self.timeout = timeout
        self.directory = TenantDirectory()
        self.dns = DnsClient(settings.inbound.dns_resolver)
        self._refreshing: asyncio.Lock | None = None
        self._processors: dict[str, Processor] = {
            "unsubscribe": self._unsubscribe,
            "bounce": self._bounce,
            "complaint": self._complaint,
            "partner_withdrawal": self._partner_withdrawal,
            "postmaster": self._postmaster,
        }

    # --- the tenant table ---

    async def refresh(self) -> bool:
        """Reload our domains and partner addresses; False (keeping the old ones) on failure."""
        self._refreshing = self._refreshing or asyncio.Lock()
        async with self._refreshing:
            try:
                async with asyncio.timeout(DIRECTORY_REFRESH_TIMEOUT), self.pool.acquire() as conn:
                    tenants = await rows(queries().inbound.list_inbound_tenants(conn))
            except (*UNAVAILABLE_ERRORS, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning("inbound tenant refresh failed: %s", type(exc).__name__)
                return False
            self.directory = TenantDirectory(tenants, loaded_at=time.monotonic())
            return True

    async def _current_directory(self) -> TenantDirectory | None:
        loaded = self.directory.loaded_at
        if loaded is None or time.monotonic() - loaded > DIRECTORY_MAX_AGE:
            await self.refresh()
        return self.directory if self.directory.loaded_at is not None else None

    # --- aiosmtpd hooks ---

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.settings.inbound.max_recipients:
            return REPLY_TOO_MANY
        directory = await self._current_directory()
        if directory is None:
            return REPLY_UNAVAILABLE  # never loaded: we cannot tell our addresses yet
        target = directory.classify(address, self.keyring)
        if isinstance(target, str):
            log.info("inbound rcpt refused reply=%s", target[:9])
            return target
        envelope.rcpt_tos.append(address)
        return REPLY_RCPT_OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        peer = getattr(session, "peer", None)
        return await self.receive(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            bytes(raw),
            client_ip=str(peer[0]) if isinstance(peer, tuple) and peer else None,
            helo=getattr(session, "host_name", None),
        )

    # --- recording ---

    async def receive(
        self,
        mail_from: str | None,
        rcpt_tos: Sequence[str],
        raw: bytes,
        *,
        received_at: dt.datetime | None = None,
        client_ip: str | None = None,
        helo: str | None = None,
    ) -> str:
        """Record and apply one message for each recipient; the SMTP reply to give.

        Never raises: anything unexpected keeps the message as ``unmatched`` for an operator
        (250), or, when even that cannot be committed, asks the sender to retry (451).
        """
        when = received_at or dt.datetime.now(dt.UTC)
        # DNS before the transaction: a slow resolver never holds a connection or a lock.
        auth = UNCHECKED
        if self._carries_opt_out(rcpt_tos):
            auth = await authenticate(
                raw, mail_from=mail_from, client_ip=client_ip, helo=helo, dns=self.dns
            )
        try:
            async with asyncio.timeout(self.timeout):
                await self._record_all(mail_from, rcpt_tos, raw, when, auth, client_ip)
            return REPLY_OK
        except DEFER_ERRORS as exc:
            log.warning("inbound deferred (database unavailable): %s", type(exc).__name__)
            return REPLY_UNAVAILABLE
        except Exception as exc:
            if self._carries_opt_out(rcpt_tos):
                # A person's choice must not be acknowledged unapplied: nothing was kept (the
                # transaction rolled back), so the sender's retry is what applies it (G2).
                log.error(
                    "inbound opt-out could not be applied; answering 451 so the sender retries: %s",
                    type(exc).__name__,
                    exc_info=exc,
                )
                return REPLY_OPT_OUT_FAILED
            log.exception("inbound message could not be applied; keeping it as unmatched")
            return await self._keep_unapplied(mail_from, rcpt_tos, raw, when, exc)

    def _carries_opt_out(self, rcpt_tos: Sequence[str]) -> bool:
        """Whether any recipient is an address that takes an opt-out (not bounces, postmaster)."""
        for rcpt in rcpt_tos:
            target = self.directory.classify(rcpt, self.keyring)
            if not isinstance(target, str) and target.kind in OPT_OUT_KINDS:
                return True
        return False

    async def reapply(self, event_id: int, *, unparsed: bool = False) -> Result | None:
        """Run one kept message (outcome ``error``, or with ``unparsed`` a bounce no parser
        understood) again in place; None when it is not one.

        The event keeps its id and raw message; its kind, outcome and links are rewritten, and
        ``parsed.reapplied`` says it was run again (``optout inbound reapply``). Once applied,
        its outcome is no longer one these runs pick up, so nothing is applied twice.
        """
        lock = (
            queries().inbound.lock_unparsed_bounce
            if unparsed
            else queries().inbound.lock_kept_event
        )
        async with self.pool.acquire() as conn, conn.transaction():
            event = await lock(conn, id=event_id)
            if event is None or event["raw"] is None:
                return None
            target = self.directory.classify(event["envelope_rcpt"] or "", self.keyring)
            if isinstance(target, str):
                return None
            raw = bytes(event["raw"])
            context = _Context(
                event_id, event["envelope_from"], raw, *_message_facts(raw),
                received_at=event["received_at"],
            )  # fmt: skip
            result = await self._processors[target.kind](conn, target, context)
            parsed = {**result.parsed, "reapplied": True}
            await queries().inbound.finish_event(
                conn, id=event_id, tenant_id=result.tenant_id, kind=result.kind,
                delivery_id=result.delivery_id, subscriber_id=result.subscriber_id,
                parsed=clean_json(parsed), outcome=result.outcome,
            )  # fmt: skip
            log.info(
                "inbound reapplied event=%s kind=%s outcome=%s",
                event_id, result.kind, result.outcome,
            )  # fmt: skip
            return result

    async def _record_all(
        self,
        mail_from: str | None,
        rcpt_tos: Sequence[str],
        raw: bytes,
        when: dt.datetime,
        auth: Authentication = UNCHECKED,
        client_ip: str | None = None,
    ) -> None:
        headers = _message_facts(raw)
        async with self.pool.acquire() as conn, conn.transaction():
            for rcpt in rcpt_tos:
                target = self.directory.classify(rcpt, self.keyring)
                if isinstance(target, str):  # the tenant table changed since RCPT
                    target = Target("unmatched", ())
                event_id = await self._insert_event(
                    conn, target.kind, mail_from, rcpt, raw, when, target.tenant_ids
                )
                if event_id is None:
                    log.info("inbound duplicate skipped kind=%s", target.kind)
                    continue
                await remember_addresses(
                    conn, event_id, self.settings.hash_key, target.tenant_ids,
                    (None if is_null_sender(mail_from) else mail_from, headers[1]),
                )  # fmt: skip
                context = _Context(
                    event_id, mail_from, raw, *headers, received_at=when, auth=auth,
                    client_ip=client_ip,
                )  # fmt: skip
                processor = self._processors.get(target.kind)
                if processor is None:
                    result = Result("unmatched", "unmatched")
                else:
                    result = await processor(conn, target, context)
                parsed = result.parsed
                if target.kind in OPT_OUT_KINDS:
                    parsed = {**parsed, "auth": auth.as_json()}
                await queries().inbound.finish_event(
                    conn,
                    id=event_id,
                    tenant_id=result.tenant_id,
                    kind=result.kind,
                    delivery_id=result.delivery_id,
                    subscriber_id=result.subscriber_id,
                    parsed=clean_json(parsed),
                    outcome=result.outcome,
                )
                log.info(
                    "inbound recorded event=%s kind=%s outcome=%s tenant=%s delivery=%s",
                    event_id, result.kind, result.outcome, result.tenant_id, result.delivery_id,
                )  # fmt: skip

    async def _insert_event(
        self,
        conn: asyncpg.Connection,
        kind: str,
        mail_from: str | None,
        rcpt: str,
        raw: bytes,
        when: dt.datetime,
        tenant_ids: Sequence[int],
    ) -> int | None:
        retention = dt.timedelta(days=self.settings.inbound.raw_retention_days)
        event_id: int | None = await queries().inbound.insert_event(
            conn,
            tenant_id=tenant_ids[0] if len(tenant_ids) == 1 else None,
            kind=kind,
            envelope_from=clean_text(mail_from),
            envelope_rcpt=clean_text(rcpt),
            raw=raw,
            raw_expires_at=when + retention,
            dedupe_key=dedupe_key(rcpt, raw),
            received_at=when,
        )
        return event_id

    async def _keep_unapplied(
        self,
        mail_from: str | None,
        rcpt_tos: Sequence[str],
        raw: bytes,
        when: dt.datetime,
        error: Exception,
    ) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.acquire() as conn, conn.transaction():
                    for rcpt in rcpt_tos:
                        event_id = await self._insert_event(
                            conn, "unmatched", mail_from, rcpt, raw, when, ()
                        )
                        if event_id is not None:
                            await queries().inbound.finish_event(
                                conn, id=event_id, tenant_id=None, kind="unmatched",
                                delivery_id=None, subscriber_id=None,
                                parsed={"error": type(error).__name__}, outcome="error",
                            )  # fmt: skip
            return REPLY_OK
        except Exception:
            log.exception("inbound message could not even be kept; asking the sender to retry")
            return REPLY_UNAVAILABLE

    # --- one processor per kind of address ---

    async def _unsubscribe(self, conn: asyncpg.Connection, target: Target, ctx: _Context) -> Result:
        assert target.claims is not None
        tenant_id, subscriber_id, topic_id = target.claims.ids
        parsed: dict[str, Any] = {"topic_id": topic_id}
        if subscriber_id == TEST_SEND_SUBSCRIBER:
            # A reply to a test send (its codes name subscriber 0): staff, not a subscriber.
            return Result("unsubscribe", "test_send_reply", tenant_id, None, None, parsed)
        # Whatever the subject and body say (STANDARDS 50): the address alone decides.
        try:
            changed = await consent.unsubscribe(
                conn,
                tenant_id=tenant_id,
                subscriber_id=subscriber_id,
                topic_id=topic_id,
                source="mailto",
                evidence=Evidence(
                    message_id=clean_text(ctx.message_id),
                    detail={
                        "channel": "mailto",
                        "inbound_event_id": ctx.event_id,
                        "auth": ctx.auth.as_json(),
                    },
                ),
            )
        except OptoutError as exc:
            parsed["error"] = exc.code
            return Result("unsubscribe", "ignored", tenant_id, None, None, parsed)
        parsed["changed"] = changed
        outcome = "unsubscribed" if changed else "already_unsubscribed"
        return Result("unsubscribe", outcome, tenant_id, None, subscriber_id, parsed)

    async def _bounce(self, conn: asyncpg.Connection, target: Target, ctx: _Context) -> Result:
        assert target.claims is not None
        tenant_id, delivery_id = target.claims.ids
        report = parse_bounce(ctx.raw)
        parsed = bounce_summary(report)
        delivery = await queries().inbound.get_delivery(conn, tenant_id=tenant_id, id=delivery_id)
        if delivery is None:
            parsed["delivery_id"] = delivery_id
            return Result("bounce", "unknown_delivery", tenant_id, None, None, parsed)
        subscriber_id = delivery["subscriber_id"]
        if not report.recognised or not report.recipients:
            return Result("bounce", "unparsed", tenant_id, delivery_id, subscriber_id, parsed)
        recipient = _pick_recipient(report, delivery["address"])
        parsed["applied"] = {
            "recipient": recipient.recipient,
            "action": recipient.action,
            "status": recipient.status,
            "permanent": recipient.permanent,
            "final": recipient.final,
            "derived": recipient.derived,
            "phrase": recipient.phrase,
        }
        if recipient.action not in ("failed", "delayed"):
            return Result("bounce", "not_a_failure", tenant_id, delivery_id, subscriber_id, parsed)
        address_key = delivery_address_key(self.settings.hash_key, delivery) or address_key_for(
            self.settings.hash_key, tenant_id, recipient.recipient
        )
        if address_key is None:
            return Result("bounce", "unmatched", tenant_id, delivery_id, subscriber_id, parsed)
        decision = await record_bounce(
            conn,
            tenant_id=tenant_id,
            address_key=address_key,
            delivery_id=delivery_id,
            status=recipient.status,
            permanent=recipient.permanent,
            final=recipient.final,
            source="dsn",
            subscriber_id=subscriber_id,
            now=ctx.received_at,
            derived=recipient.derived,
            policy=dataclasses.replace(
                DEFAULT_POLICY, derived_unknown_after=self.settings.inbound.derived_unknown_after
            ),
        )
        parsed["decision"] = plain(decision)
        outcome = bounce_outcome(recipient.permanent, recipient.final)
        return Result("bounce", outcome, tenant_id, delivery_id, subscriber_id, parsed)

    async def _complaint(self, conn: asyncpg.Connection, target: Target, ctx: _Context) -> Result:
        report = parse_complaint(ctx.raw)
        parsed: dict[str, Any] = {
            "recognised": report.recognised,
            "valid": report.valid,
            "problems": list(report.problems),
            "feedback_type": report.feedback_type,
            "user_agent": report.user_agent,
            "original_message_id": report.original_message_id,
            "original_mail_from": report.original_mail_from,
            "source_ip": report.source_ip,
            "arrival_date": report.arrival_date,
        }
        only = target.tenant_ids[0] if len(target.tenant_ids) == 1 else None
        # Malformed reports are held for an operator, never acted on (STANDARDS 49).
        if not report.recognised:
            return Result("complaint", "unparsed", only, parsed=parsed)
        if not report.valid:
            return Result("complaint", "held", only, parsed=parsed)
        # Anyone can mail a report: only an identifier carrying our MAC names a delivery, so a
        # guessed Message-ID or a bare address suppresses no one (DESIGN G7).
        match = await locate_signed(
            conn,
            self.keyring,
            tenant_ids=target.tenant_ids,
            message_id=report.original_message_id,
            verp_addresses=(report.original_mail_from, report.original_return_path),
            list_unsubscribe=report.original_list_unsubscribe,
            recipient=report.original_rcpt_to,
        )
        if isinstance(match, str):
            parsed["unmatched_reason"] = match
            return Result("complaint", "unmatched", only, parsed=parsed)
        parsed["matched_by"] = match.via
        outcome, details = await apply_complaint(
            conn,
            hash_key=self.settings.hash_key,
            settings=self.settings.inbound,
            match=match,
            feedback_type=report.feedback_type,
            evidence_message_id=clean_text(ctx.message_id),
            channel="arf",
            event_id=ctx.event_id,
            auth=ctx.auth.as_json(),
            counts=self._counts_toward_rate(ctx.auth),
        )
        parsed.update(details)
        return Result(
            "complaint", outcome, match.tenant_id, match.delivery_id, match.subscriber_id, parsed
        )

    def _counts_toward_rate(self, auth: Authentication) -> bool:
        """With OPTOUT_FBL_DOMAINS set, a complaint counts toward the pause rate only when a
        DKIM signature aligned with its From is of one of those feedback-loop domains."""
        fbl = self.settings.inbound.fbl_domains
        if not fbl:
            return True
        return any(
            aligned(domain, auth.from_domain) and any(aligned(domain, f) for f in fbl)
            for domain in auth.dkim_domains
        )

    async def _partner_withdrawal(
        self, conn: asyncpg.Connection, target: Target, ctx: _Context
    ) -> Result:
        sender = ctx.header_from or (None if is_null_sender(ctx.mail_from) else ctx.mail_from)
        parsed: dict[str, Any] = {"sender": clean_text(sender)}
        only = target.tenant_ids[0] if len(target.tenant_ids) == 1 else None
        # Bounces and auto-replies to the address are not a person asking for anything.
        if is_null_sender(ctx.mail_from) or ctx.auto_submitted or not sender:
            return Result("partner_withdrawal", "ignored_automatic", only, parsed=parsed)
        # Withdrawing is the privacy-safe direction: honoured even from a From nobody
        # authenticated, and the evidence says which it was.
        evidence = Evidence(
            message_id=clean_text(ctx.message_id),
            detail={
                "channel": "partner_address",
                "inbound_event_id": ctx.event_id,
                "auth": ctx.auth.as_json(),
                "from_authenticated": ctx.auth.from_verified,
            },
        )
        for tenant_id in target.tenant_ids:
            key = address_key_for(self.settings.hash_key, tenant_id, sender)
            if key is None:
                break
            subscriber = await queries().consent.get_subscriber_by_key(
                conn, tenant_id=tenant_id, email_key=key
            )
            if subscriber is None or subscriber["status"] != "active":
                continue
            changed = await consent.set_partner_consent(
                conn,
                tenant_id=tenant_id,
                subscriber_id=subscriber["id"],
                granted=False,
                source="partner_address",
                evidence=evidence,
            )
            parsed["changed"] = changed
            outcome = "withdrawn" if changed else "already_withdrawn"
            return Result("partner_withdrawal", outcome, tenant_id, None, subscriber["id"], parsed)
        # Nobody matches: a claim, not yet a request with a deadline (mailer.inbound.claims).
        # (A partner address shared by several tenants makes one claim in each.)
        outcomes = []
        for tenant_id in target.tenant_ids:
            outcome, details = await take_claim(
                conn,
                self.settings,
                tenant_id=tenant_id,
                sender=sender,
                auth=ctx.auth,
                sending_host=ctx.client_ip,
                now=ctx.received_at,
            )
            outcomes.append(outcome)
            parsed.setdefault("claims", []).append({"tenant_id": tenant_id, **details})
        return Result("partner_withdrawal", outcomes[0], only, parsed=parsed)

    async def _postmaster(self, conn: asyncpg.Connection, target: Target, ctx: _Context) -> Result:
        only = target.tenant_ids[0] if len(target.tenant_ids) == 1 else None
        parsed = {"message_id": ctx.message_id, "from": ctx.header_from}
        return Result("postmaster", "kept", only, parsed=parsed)


# --- helpers ---


def _message_facts(raw: bytes) -> tuple[str | None, str | None, bool]:
    """(Message-ID, From address, auto-submitted) of a message; Nones for garbage."""
    try:
        msg = load_message(raw)
        message_id = header_value(msg, "message-id")
        from_value = header_value(msg, "from")
        auto = (header_value(msg, "auto-submitted") or "no").lower() != "no"
    except Exception:  # a message too broken to parse still gets recorded
        return None, None, False
    header_from = None
    if from_value:
        header_from = parseaddr(from_value)[1] or None
    return (message_id[:998] if message_id else None), header_from, auto


def is_null_sender(mail_from: str | None) -> bool:
    """MAIL FROM:<>: a bounce or other automatic message (RFC 5321 4.5.5)."""
    return not mail_from or mail_from.strip() in ("<>", "")


def _pick_recipient(report: BounceReport, address: str | None) -> Any:
    """The report's recipient that is the delivery's address; else its first failure."""
    wanted = (address or "").strip().lower()
    for recipient in report.recipients:
        if recipient.recipient.strip().lower() == wanted:
            return recipient
    for recipient in report.recipients:
        if recipient.action == "failed":
            return recipient
    return report.recipients[0]


def bounce_outcome(permanent: bool, final: bool) -> str:
    """permanent (hard bounce), soft (final, temporary cause) or transient (a delay)."""
    if permanent:
        return "permanent"
    return "soft" if final else "transient"


def bounce_summary(report: BounceReport) -> dict[str, Any]:
    return {
        "recognised": report.recognised,
        "format": report.kind,
        "reason": report.reason,
        "reporting_mta": report.reporting_mta,
        "original_message_id": report.original_message_id,
        "recipients": [
            {
                "recipient": r.recipient,
                "action": r.action,
                "status": r.status,
                "permanent": r.permanent,
                "final": r.final,
                "derived": r.derived,
                "phrase": r.phrase,
                "diagnostic": (r.diagnostic or "")[:1000] or None,
            }
            for r in report.recipients[:20]
        ],
    }


def dedupe_key(rcpt: str, raw: bytes) -> bytes:
    """The same message to the same address is the same event, whenever it is retried."""
    digest = hashlib.sha256()
    digest.update(rcpt.strip().lower().encode("utf-8", "surrogateescape"))
    digest.update(b"\x00")
    digest.update(raw)
    return digest.digest()


def clean_text(value: object) -> str | None:
    """Text Postgres accepts: no NUL, no lone surrogates (odd mail carries both)."""
    if value is None:
        return None
    text = str(value)
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text


def clean_json(value: Any) -> Any:
    """A JSON value whose strings Postgres's jsonb accepts."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {str(clean_text(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(value)


def plain(value: Any) -> Any:
    """A policy decision (dataclass, mapping or value) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return clean_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return clean_json(value)
    return clean_text(value)
