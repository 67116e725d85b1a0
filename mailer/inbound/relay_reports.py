"""Bounce and complaint reports that relays send by HTTP (Amazon SES through SNS, SendGrid's
event webhook, Postmark's bounce webhook): parse each format into reports, then record and
apply them through the same bounce policy and complaint handling as mail to our server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

import asyncpg

from mailer import json_input
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.inbound.bounce_parse import status_class
from mailer.inbound.complaints import apply_complaint
from mailer.inbound.handler import clean_json, clean_text, plain
from mailer.inbound.matching import (
    Match,
    address_key_for,
    delivery_address_key,
    locate,
    remember_addresses,
)
from mailer.sending.bounce_policy import record_bounce

__all__ = ["PARSERS", "RelayReport", "UnreadableReport", "apply_reports", "parse_reports"]

log = logging.getLogger(__name__)

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
MAX_REPORTS = 1000


class UnreadableReport(ValueError):
    """The webhook body is not a report in this relay's format."""


@dataclass(frozen=True, slots=True)
class RelayReport:
    """One recipient's bounce or complaint (or another event, kept but not acted on)."""

    kind: str  # bounce | complaint | other
    recipient: str | None = None
    status: str | None = None
    permanent: bool = False
    message_id: str | None = None  # the Message-ID header we sent
    envelope_sender: str | None = None  # our VERP address, when the relay reports it
    sender: str | None = None  # the From address, which names the tenant
    feedback_type: str | None = None
    event: str = ""  # the relay's own name for the event
    item: dict[str, Any] = field(default_factory=dict)  # the relay's item, kept as evidence


# --- the formats ---


def parse_ses(body: Any) -> list[RelayReport]:
    """An SNS message (Notification / SubscriptionConfirmation) carrying an SES event."""
    if not isinstance(body, dict) or "Type" not in body:
        raise UnreadableReport("not an SNS message")
    if body["Type"] != "Notification":
        return [RelayReport("other", event=f"sns:{body['Type']}", item=_sns_summary(body))]
    try:
        message = json_input.loads(body.get("Message") or "")
    except (TypeError, ValueError):
        raise UnreadableReport("the SNS Message is not JSON") from None
    if not isinstance(message, dict):
        raise UnreadableReport("the SNS Message is not an SES notification")
    kind = str(message.get("notificationType") or message.get("eventType") or "")
    mail = _dict(message.get("mail"))
    common: dict[str, Any] = {
        "message_id": _message_id_from_ses(mail),
        "envelope_sender": _str(mail.get("source")),
        "sender": _first_address(_dict(mail.get("commonHeaders")).get("from")),
    }
    if kind == "Bounce":
        bounce = _dict(message.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        reports = []
        for person in _list(bounce.get("bouncedRecipients")):
            person = _dict(person)
            status = _status(person.get("status"), person.get("diagnosticCode"))
            reports.append(
                RelayReport(
                    "bounce",
                    recipient=_str(person.get("emailAddress")),
                    status=status,
                    permanent=hard and status_class(status) != 4,
                    event=f"ses:Bounce:{bounce.get('bounceType')}",
                    item={"bounce": _without(bounce, "bouncedRecipients"), "recipient": person},
                    **common,
                )
            )
        return reports
    if kind == "Complaint":
        complaint = _dict(message.get("complaint"))
        return [
            RelayReport(
                "complaint",
                recipient=_str(_dict(person).get("emailAddress")),
                feedback_type=_str(complaint.get("complaintFeedbackType")) or "abuse",
                event="ses:Complaint",
                item={"complaint": _without(complaint, "complainedRecipients")},
                **common,
            )
            for person in _list(complaint.get("complainedRecipients"))
        ]
    return [RelayReport("other", event=f"ses:{kind}", item={"mail": mail}, **common)]


def parse_sendgrid(body: Any) -> list[RelayReport]:
    """SendGrid's event webhook: a JSON array of events."""
    if not isinstance(body, list):
        raise UnreadableReport("not a SendGrid event array")
    reports = []
    for item in body:
        if not isinstance(item, dict):
            raise UnreadableReport("a SendGrid event is not an object")
        event = str(item.get("event") or "")
        common: dict[str, Any] = {
            "recipient": _str(item.get("email")),
            "message_id": _angle(_str(item.get("smtp-id"))),
            "event": f"sendgrid:{event}",
            "item": item,
        }
        if event == "bounce":
            status = _status(item.get("status"), item.get("reason"))
            # type "blocked" is SendGrid's soft bounce; only "bounce" is a hard one.
            hard = item.get("type", "bounce") == "bounce" and status_class(status) != 4
            reports.append(RelayReport("bounce", status=status, permanent=hard, **common))
        elif event == "deferred":
            status = _status(item.get("status"), item.get("response"))
            reports.append(RelayReport("bounce", status=status, permanent=False, **common))
        elif event == "spamreport":
            reports.append(RelayReport("complaint", feedback_type="abuse", **common))
        else:
            reports.append(RelayReport("other", **common))
    return reports


# Postmark bounce types that mean the address itself is bad, and those that are a block.
_POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress"})
_POSTMARK_BLOCK = frozenset({"Blocked", "DMARCPolicy"})
_POSTMARK_COMPLAINT = frozenset({"SpamComplaint"})


def parse_postmark(body: Any) -> list[RelayReport]:
    """Postmark's bounce (and spam complaint) webhook: one JSON object."""
    if not isinstance(body, dict) or not ("RecordType" in body or "Type" in body):
        raise UnreadableReport("not a Postmark bounce webhook")
    kind = str(body.get("Type") or "")
    metadata = _dict(body.get("Metadata"))
    common: dict[str, Any] = {
        "recipient": _str(body.get("Email")),
        "sender": _first_address(body.get("From")),
        "message_id": _angle(_str(metadata.get("message_id"))),
        "envelope_sender": _str(metadata.get("envelope_sender")),
        "event": f"postmark:{body.get('RecordType')}:{kind}",
        "item": _without(body, "Content"),
    }
    if body.get("RecordType") == "SpamComplaint" or kind in _POSTMARK_COMPLAINT:
        return [RelayReport("complaint", feedback_type="abuse", **common)]
    if body.get("RecordType", "Bounce") != "Bounce":
        return [RelayReport("other", **common)]
    status = _status(None, body.get("Details") or body.get("Description"))
    if kind in _POSTMARK_BLOCK:
        status = status or "5.7.1"
    permanent = (kind in _POSTMARK_HARD or kind in _POSTMARK_BLOCK) and status_class(status) != 4
    return [RelayReport("bounce", status=status, permanent=permanent, **common)]


PARSERS: dict[str, Callable[[Any], list[RelayReport]]] = {
    "ses": parse_ses,
    "sendgrid": parse_sendgrid,
    "postmark": parse_postmark,
}


def parse_reports(relay: str, raw: bytes) -> list[RelayReport]:
    """The reports in one webhook body; raises UnreadableReport for anything else."""
    try:
        body = json_input.loads(raw)
    except json_input.TooDeep as exc:
        raise UnreadableReport(str(exc)) from None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UnreadableReport("the body is not JSON") from None
    reports = PARSERS[relay](body)
    if len(reports) > MAX_REPORTS:
        raise UnreadableReport(f"more than {MAX_REPORTS} reports in one request")
    return reports


# --- applying them ---


@dataclass(frozen=True, slots=True)
class Applied:
    recorded: int = 0  # new inbound events (repeats of a delivered webhook are skipped)
    applied: int = 0  # reports that reached the bounce policy or suppressed a complainer


async def apply_reports(
    conn: asyncpg.Connection,
    settings: Settings,
    relay: str,
    reports: Sequence[RelayReport],
    *,
    now: dt.datetime | None = None,
) -> Applied:
    """Record and apply every report in one transaction (the caller answers 2xx after it)."""
    when = now or dt.datetime.now(dt.UTC)
    keyring = settings.keyring()
    tenants = await rows(queries().inbound.list_inbound_tenants(conn))
    all_ids = [int(t["id"]) for t in tenants]
    by_domain: dict[str, list[int]] = {}
    for tenant in tenants:
        by_domain.setdefault(str(tenant["sender_domain"]), []).append(int(tenant["id"]))
    recorded = applied = 0
    async with conn.transaction():
        for report in reports:
            event_id = await _insert(conn, settings, relay, report, when)
            if event_id is None:
                continue
            recorded += 1
            domain = (report.sender or "").rpartition("@")[2].lower()
            tenant_ids = by_domain.get(domain) or all_ids
            await remember_addresses(
                conn, event_id, settings.hash_key, tenant_ids, (report.recipient,)
            )
            match = await locate(
                conn,
                keyring,
                settings.hash_key,
                tenant_ids=tenant_ids,
                message_id=report.message_id,
                verp_addresses=(report.envelope_sender,),
                recipient=report.recipient,
            )
            kind, outcome, parsed = await _apply(conn, settings, report, match, event_id, when)
            if outcome in ("complaint", "permanent", "transient"):
                applied += 1
            await queries().inbound.finish_event(
                conn,
                id=event_id,
                tenant_id=match.tenant_id if match else None,
                kind=kind,
                delivery_id=match.delivery_id if match else None,
                subscriber_id=match.subscriber_id if match else None,
                parsed=clean_json(parsed),
                outcome=outcome,
            )
            log.info(
                "webhook recorded relay=%s event=%s kind=%s outcome=%s",
                relay, event_id, kind, outcome,
            )  # fmt: skip
    return Applied(recorded, applied)


async def _insert(
    conn: asyncpg.Connection,
    settings: Settings,
    relay: str,
    report: RelayReport,
    when: dt.datetime,
) -> int | None:
    item = json.dumps(clean_json(report.item), sort_keys=True, default=str).encode()
    digest = hashlib.sha256(f"hook:{relay}:{report.event}\x00".encode() + item).digest()
    event_id: int | None = await queries().inbound.insert_event(
        conn,
        tenant_id=None,
        kind="webhook",
        envelope_from=clean_text(report.envelope_sender),
        envelope_rcpt=f"/hooks/{relay}",
        raw=item,
        raw_expires_at=when + dt.timedelta(days=settings.inbound.raw_retention_days),
        dedupe_key=digest,
        received_at=when,
    )
    return event_id


async def _apply(
    conn: asyncpg.Connection,
    settings: Settings,
    report: RelayReport,
    match: Match | None,
    event_id: int,
    when: dt.datetime,
) -> tuple[str, str, dict[str, Any]]:
    parsed: dict[str, Any] = {
        "event": report.event,
        "recipient": report.recipient,
        "status": report.status,
        "permanent": report.permanent,
        "message_id": report.message_id,
    }
    if report.kind == "other":
        return "webhook", "ignored", parsed
    if match is None:
        return report.kind, "unmatched", parsed
    parsed["matched_by"] = match.via
    if report.kind == "complaint":
        outcome, details = await apply_complaint(
            conn,
            hash_key=settings.hash_key,
            settings=settings.inbound,
            match=match,
            feedback_type=report.feedback_type,
            evidence_message_id=report.message_id,
            channel="webhook",
            event_id=event_id,
        )
        parsed.update(details)
        return "complaint", outcome, parsed
    key = (
        delivery_address_key(settings.hash_key, match.delivery)
        if match.delivery is not None
        else address_key_for(settings.hash_key, match.tenant_id, report.recipient)
    )
    if key is None:
        return "bounce", "unmatched", parsed
    decision = await record_bounce(
        conn,
        tenant_id=match.tenant_id,
        address_key=key,
        delivery_id=match.delivery_id,
        status=report.status,
        permanent=report.permanent,
        source="webhook",
        subscriber_id=match.subscriber_id,
        now=when,
    )
    parsed["decision"] = plain(decision)
    return "bounce", "permanent" if report.permanent else "transient", parsed


# --- small helpers ---


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _without(item: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in names}


def _status(field_value: Any, text: Any) -> str | None:
    for candidate in (field_value, text):
        if isinstance(candidate, str) and (match := _STATUS.search(candidate)):
            return match.group(1)
    return None


def _angle(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith("<") else f"<{value}>"


def _first_address(value: Any) -> str | None:
    values = value if isinstance(value, list) else [value]
    found = getaddresses([v for v in values if isinstance(v, str)])
    return next((address for _name, address in found if address), None)


def _message_id_from_ses(mail: dict[str, Any]) -> str | None:
    for header in _list(mail.get("headers")):
        header = _dict(header)
        if str(header.get("name", "")).lower() == "message-id":
            return _angle(_str(header.get("value")))
    return _angle(_str(_dict(mail.get("commonHeaders")).get("messageId")))


def _sns_summary(body: dict[str, Any]) -> dict[str, Any]:
    keep = ("Type", "MessageId", "TopicArn", "SubscribeURL", "Timestamp")
    return {k: body[k] for k in keep if k in body}
