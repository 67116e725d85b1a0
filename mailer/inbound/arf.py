"""Parse ARF complaint (feedback) reports, RFC 5965, into complaint evidence.

Pure functions on bytes. A malformed report still yields what it holds, with its problems
listed; nothing here raises on bad input (STANDARDS 49).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import Message

from mailer.inbound.bounce_parse import (
    OriginalHeaders,
    header_value,
    header_values,
    load_message,
    original_headers,
)

__all__ = ["ComplaintReport", "parse_complaint"]

log = logging.getLogger(__name__)

_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
# RFC 5965 §3.1: each of these "MUST appear exactly once".
_REQUIRED_ONCE = ("Feedback-Type", "User-Agent", "Version")


@dataclass(frozen=True, slots=True)
class ComplaintReport:
    """What a feedback report says about a message a recipient complained about."""

    recognised: bool
    valid: bool
    problems: tuple[str, ...]
    feedback_type: str | None  # abuse, fraud, virus, other, not-spam ...
    user_agent: str | None
    version: str | None
    original_mail_from: str | None
    original_rcpt_to: str | None
    source_ip: str | None
    arrival_date: str | None
    original_message_id: str | None
    original_list_unsubscribe: str | None
    original_return_path: str | None
    original_to: str | None
    reported_domain: str | None = None


def parse_complaint(raw: bytes) -> ComplaintReport:
    """Parse a received message as an ARF report; anything else is unrecognised, not an error."""
    try:
        return _parse_complaint(bytes(raw))
    except Exception as exc:  # the contract: garbage in, a problem listed, never an exception
        log.debug("complaint parse failed", exc_info=True)
        return _unrecognised(f"parser error: {type(exc).__name__}")


def _parse_complaint(raw: bytes) -> ComplaintReport:
    msg = load_message(raw)
    fields = _feedback_fields(msg)
    if fields is None:
        return _unrecognised("no message/feedback-report part", original_headers(msg))
    problems = _field_problems(fields)
    if msg.get_content_type() != "multipart/report" or _report_type(msg) != "feedback-report":
        problems.append("not a multipart/report; report-type=feedback-report")
    if not _has_returned_message(msg):
        problems.append("no returned message (message/rfc822 or text/rfc822-headers) part")
    original = original_headers(msg)
    feedback_type = header_value(fields, "feedback-type")
    return ComplaintReport(
        recognised=True,
        valid=not problems,
        problems=tuple(problems),
        feedback_type=feedback_type.lower() if feedback_type else None,
        user_agent=header_value(fields, "user-agent"),
        version=header_value(fields, "version"),
        original_mail_from=_addr_spec(header_value(fields, "original-mail-from")),
        original_rcpt_to=_addr_spec(header_value(fields, "original-rcpt-to")),
        source_ip=header_value(fields, "source-ip"),
        # Received-Date is the pre-RFC name some older reporters still send.
        arrival_date=header_value(fields, "arrival-date") or header_value(fields, "received-date"),
        original_message_id=original.message_id,
        original_list_unsubscribe=original.list_unsubscribe,
        original_return_path=original.return_path,
        original_to=original.to,
        reported_domain=header_value(fields, "reported-domain"),
    )


def _feedback_fields(msg: Message) -> Message | None:
    """The header block of the first message/feedback-report part, however it was parsed."""
    for part in msg.walk():
        if part.get_content_type() not in _FEEDBACK_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            block = next((p for p in payload if isinstance(p, Message)), None)
            if block is not None:
                return block
        # An encoded part stays a string; its decoded text is still a header block.
        body = part.get_payload(decode=True)
        if isinstance(body, bytes):
            return load_message(body.lstrip())
        return Message()
    return None


def _field_problems(fields: Message) -> list[str]:
    problems = []
    for name in _REQUIRED_ONCE:
        count = len([v for v in header_values(fields, name) if v])
        if count == 0:
            problems.append(f"{name} missing")
        elif count > 1:
            problems.append(f"{name} appears {count} times")
    version = header_value(fields, "version")
    if version is not None and version != "1":
        problems.append(f"Version is {version!r}, not '1'")
    return problems


def _addr_spec(value: str | None) -> str | None:
    """RFC 5965 allows "<addr>", "addr" or "<>"; return the bare address, None for the null one."""
    if value is None:
        return None
    return value.strip().strip("<>").strip() or None


def _report_type(msg: Message) -> str | None:
    value = msg.get_param("report-type")
    return value.strip().lower() if isinstance(value, str) else None


def _has_returned_message(msg: Message) -> bool:
    returned = {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
    return any(part.get_content_type() in returned for part in msg.walk())


def _unrecognised(problem: str, original: OriginalHeaders | None = None) -> ComplaintReport:
    original = original or OriginalHeaders()
    return ComplaintReport(
        recognised=False,
        valid=False,
        problems=(problem,),
        feedback_type=None,
        user_agent=None,
        version=None,
        original_mail_from=None,
        original_rcpt_to=None,
        source_ip=None,
        arrival_date=None,
        original_message_id=original.message_id,
        original_list_unsubscribe=original.list_unsubscribe,
        original_return_path=original.return_path,
        original_to=original.to,
    )
