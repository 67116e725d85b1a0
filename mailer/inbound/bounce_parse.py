"""Parse a received bounce (RFC 3464 DSN, or a legacy plain-text bounce) into bounce evidence.

Pure functions on bytes: no database, no SMTP. Never raises on bad input; it says why instead.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from mailer.inbound.bounces import (
    apache_james,
    exchange,
    japanese_carriers,
    lotus_notes,
    notice,
    opensmtpd,
)
from mailer.inbound.bounces.derive import derive_status, most_specific
from mailer.inbound.bounces.mentions import ADDRESS, Mention

__all__ = [
    "BounceRecipient",
    "BounceReport",
    "OriginalHeaders",
    "decoded_text",
    "gave_up",
    "header_value",
    "header_values",
    "load_message",
    "original_headers",
    "parse_bounce",
    "status_class",
    "status_in_text",
]

log = logging.getLogger(__name__)

ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})

# RFC 3464 status-code: DIGIT "." 1*3DIGIT "." 1*3DIGIT, class limited to 2, 4, 5 (RFC 3463).
_STATUS_FIELD = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
# Outside the Status field a status is read only where RFC 3463 section 2 puts it: right after
# the SMTP reply code it refines, of the same class ("550 5.1.1", "550-5.1.1"), or as the
# "#5.1.1" that qmail (QSBMF) and Exchange write after their text. Never any dotted number:
# "Mailman v2.0.13" or "2.0.12" in prose is a version, not a status.
_REPLY_AND_STATUS = re.compile(r"(?<![\w.])([245])\d\d[ -]((?:[245])\.\d{1,3}\.\d{1,3})(?![\w.])")
_HASH_STATUS = re.compile(r"(?:\(|\s)#([245]\.\d{1,3}\.\d{1,3})(?![\w.])")
# A notice saying the MTA has stopped trying: final, whatever class its status has (qmail's
# "I'm not going to try again", Exim's "retry timeout exceeded", Postfix's "message expired").
_GAVE_UP = re.compile(
    r"not going to try again|i'?ve given up|giving up|retry time(?:out)? (?:not reached|exceeded)"
    r"|too long in (?:the )?queue|message expired|delivery (?:time|period) (?:has )?expired",
    re.I,
)
_ANGLE_ID = re.compile(r"<[^<>\s]+>")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# How far past an address a plain-text bounce's explanation of it may reach.
_NEAR_CHARS = 1000

# A returned original message comes back in one of these (RFC 3462, RFC 6532 variants).
_RETURNED_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
)
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})

# Lines of a plain-text bounce that quote the original message's headers inline (qmail, Exim).
_INLINE_HEADER = {
    "message-id": re.compile(r"^Message-ID:[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M),
    "list-unsubscribe": re.compile(r"^List-Unsubscribe:[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M),
    "return-path": re.compile(r"^Return-Path:[ \t]*(.*)", re.I | re.M),
    "from": re.compile(r"^From:[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M),
    "to": re.compile(r"^To:[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M),
}


@dataclass(frozen=True, slots=True)
class BounceRecipient:
    """One recipient's fate as reported by the bounce."""

    recipient: str  # Final-Recipient address without the "rfc822;" type
    action: str  # failed|delayed|delivered|relayed|expanded (lowercase)
    status: str | None  # "5.1.1"
    permanent: bool  # action failed and status class 5 (or no status at all: see _is_permanent)
    diagnostic: str | None  # Diagnostic-Code without its "smtp;" type
    remote_mta: str | None  # Remote-MTA without its "dns;" type
    derived: bool = False  # the status was read from the notice's words, not given
    phrase: str | None = None  # the words a derived status was read from

    @property
    def final(self) -> bool:
        """The MTA has given up: no later delivery will happen, whatever the cause's class.

        A final failure with a 4.x.x status is not permanent: it is a soft bounce.
        """
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class BounceReport:
    """Everything a bounce says about which sent message failed for whom."""

    recognised: bool
    kind: str  # "dsn" | a family (mailer.inbound.bounces) | "flufl" | "unrecognised"
    recipients: tuple[BounceRecipient, ...]
    original_message_id: str | None
    original_list_unsubscribe: str | None
    original_return_path: str | None
    reporting_mta: str | None
    reason: str | None  # why not recognised
    original_from: str | None = None  # the returned message's From address, when present


@dataclass(frozen=True, slots=True)
class OriginalHeaders:
    """The headers of a returned original message that map a report back to what we sent."""

    message_id: str | None = None
    list_unsubscribe: str | None = None
    return_path: str | None = None
    from_address: str | None = None
    to: str | None = None


def status_class(status: str | None) -> int | None:
    """Return 2, 4 or 5 for a valid RFC 3463 status code, None for anything else."""
    if not status:
        return None
    match = _STATUS_FIELD.match(status)
    return int(match.group(1)[0]) if match else None


def parse_bounce(raw: bytes) -> BounceReport:
    """Parse a received message into bounce evidence; unparseable input is unrecognised."""
    try:
        return _parse_bounce(bytes(raw))
    except Exception as exc:  # the contract: garbage in, a reason out, never an exception
        log.debug("bounce parse failed", exc_info=True)
        return _unrecognised(f"parser error: {type(exc).__name__}")


# --- shared message helpers (also used by mailer.arf) ---


def load_message(raw: bytes) -> Message:
    """Parse bytes leniently; compat32 keeps undecodable bytes recoverable via raw_items()."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def header_values(msg: Message, name: str) -> list[str]:
    """All values of a header, unfolded, with 8-bit bytes decoded as UTF-8 (else Latin-1)."""
    wanted = name.lower()
    return [_clean(value) for key, value in msg.raw_items() if key.lower() == wanted]


def header_value(msg: Message, name: str) -> str | None:
    """The first non-empty value of a header, or None."""
    for value in header_values(msg, name):
        if value:
            return value
    return None


def original_headers(msg: Message) -> OriginalHeaders:
    """Headers of the returned original message: the attached part, else quoted inline text."""
    returned = _returned_header_block(msg)
    if returned is not None:
        return _headers_from_block(returned)
    return _headers_from_text("\n".join(_notification_texts(msg)))


def decoded_text(part: Message) -> str:
    """A leaf part's body as text, tolerating bad transfer encodings and charsets."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode_bytes(payload, part.get_content_charset())


# --- the parse ---


def _parse_bounce(raw: bytes) -> BounceReport:
    msg = load_message(raw)
    original = original_headers(msg)
    status_parts = [p for p in msg.walk() if p.get_content_type() in _STATUS_TYPES]
    dsn_problem = "no message/delivery-status part"
    if status_parts:
        report = _parse_dsn(status_parts, original, msg)
        if report.recognised:
            return report
        dsn_problem = report.reason or dsn_problem
    text = "\n".join(_notification_texts(msg)).replace("\r\n", "\n")
    for family, reader in _FAMILIES:
        mentions = reader(text)
        if mentions:
            return _report(family, [_from_mention(m) for m in mentions], original, None)
    report = _parse_with_flufl(raw, msg, original)
    if report.recognised:
        return report
    # Last: a notice naming nobody, sent to a VERP address that names the delivery itself.
    subject = header_value(msg, "subject") or ""
    sender = f"{header_value(msg, 'from') or ''} {header_value(msg, 'return-path') or ''}"
    mentions = notice.read(subject, sender, text) or []
    found = [r for r in map(_from_mention, mentions) if r.status is not None]
    if found:
        return _report("notice", found, original, None)
    return _unrecognised(f"{dsn_problem}; {report.reason}", original)


# Families whose own formats flufl.bounce misses or reads without a status, most specific first.
_FAMILIES = (
    ("opensmtpd", opensmtpd.read),
    ("apache_james", apache_james.read),
    ("lotus_notes", lotus_notes.read),
    ("exchange", exchange.read),
    ("japanese_carrier", japanese_carriers.read),
)


def _from_mention(mention: Mention) -> BounceRecipient:
    """A family reader's mention as evidence: a given status first, else one derived."""
    context = mention.context
    action = "delayed" if mention.delayed else "failed"
    status = status_in_text(context)
    derived = None if status else derive_status(_without_addresses(context))
    if derived is not None:
        status = derived.status
        if derived.final:
            action = "failed"
    if action == "delayed" and gave_up(context):
        action = "failed"
    return BounceRecipient(
        recipient=mention.recipient,
        action=action,
        status=status,
        permanent=_is_permanent(action, status),
        diagnostic=" ".join(context.split())[:_NEAR_CHARS] or None,
        remote_mta=None,
        derived=derived is not None,
        phrase=derived.phrase if derived else None,
    )


def _parse_dsn(
    status_parts: list[Message], original: OriginalHeaders, msg: Message
) -> BounceReport:
    reporting_mta: str | None = None
    recipients: list[BounceRecipient] = []
    text: str | None = None
    for part in status_parts:
        for block in _status_blocks(part):
            reporting_mta = reporting_mta or _strip_type(header_value(block, "reporting-mta"))
            recipient = _dsn_recipient(block)
            if recipient is not None and (recipient.status or "").endswith(".0.0"):
                if text is None:
                    text = "\n".join(_notification_texts(msg)).replace("\r\n", "\n")
                recipient = _refined(recipient, text)
            if recipient is not None:
                recipients.append(recipient)
    if not recipients:
        return _unrecognised("delivery-status part has no usable per-recipient fields", original)
    return _report("dsn", recipients, original, reporting_mta)


def _refined(recipient: BounceRecipient, text: str) -> BounceRecipient:
    """A generic X.0.0 Status made specific by the server's own reply, when it gave one.

    Exim and OpenSMTPD write "Status: 5.0.0" whatever the remote said; the remote's "550 5.1.1"
    stands in the Diagnostic-Code (Exim) or in the notice's line for the recipient (OpenSMTPD).
    Only a code of the same class, after its reply code, is taken: it is given, not derived.
    Where the remote's reply has no code at all ("554 IP address is block listed", "550
    Requested action not taken: mailbox unavailable"), the X.0.0 is the MTA's placeholder:
    the reply's words give the cause, as a derived status with its phrase (issue 23 item 2).
    """
    assert recipient.status is not None
    better = status_in_text(recipient.diagnostic) or _evidence_near(recipient.recipient, text)[0]
    if better is not None and better[0] == recipient.status[0] and not better.endswith(".0.0"):
        return dataclasses.replace(
            recipient, status=better, permanent=_is_permanent(recipient.action, better)
        )
    # The Diagnostic-Code first; then the notice's paragraphs on this address (Sendmail keeps
    # only a multi-line reply's first line there, OpenSMTPD writes no Diagnostic-Code at all).
    words = [recipient.diagnostic, *_paragraphs_about(recipient.recipient, text)]
    derived = most_specific(*map(_without_addresses, words))
    if derived is None or not derived.specific or derived.status[0] != recipient.status[0]:
        return recipient
    return dataclasses.replace(
        recipient,
        status=derived.status,
        permanent=_is_permanent(recipient.action, derived.status),
        derived=True,
        phrase=derived.phrase,
    )


def _status_blocks(part: Message) -> Iterator[Message]:
    """The header blocks of a delivery-status part, however the parser split it."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        yield from _blocks_from_text(decoded_text(part))
        return
    blocks = [block for block in payload if isinstance(block, Message)]
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        # The parser splits delivery-status into header blocks before decoding, so an encoded
        # part comes out as one junk block: rebuild its text, decode it, and split again.
        text = "".join(block.as_string() for block in blocks)
        yield from _blocks_from_text(_transfer_decoded(text, encoding))
        return
    for block in blocks:
        yield block
        # message/global-delivery-status parses as one message: later blocks sit in its body.
        if not block.is_multipart():
            yield from _blocks_from_text(decoded_text(block))


def _transfer_decoded(text: str, encoding: str) -> str:
    carrier = Message()
    carrier["Content-Transfer-Encoding"] = encoding
    carrier.set_payload(text)
    return decoded_text(carrier)


def _blocks_from_text(text: str) -> Iterator[Message]:
    parser = BytesHeaderParser(policy=email.policy.compat32)
    for chunk in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        if chunk.strip():
            yield parser.parsebytes(chunk.strip("\n").encode("utf-8", "surrogateescape"))


def _dsn_recipient(block: Message) -> BounceRecipient | None:
    address = _recipient_address(block)
    if not address:
        return None
    diagnostic = _strip_type(header_value(block, "diagnostic-code"))
    status = _status_from_field(header_value(block, "status"), diagnostic)
    action = _normalise_action(header_value(block, "action"), status)
    if action is None:
        return None
    derived = None
    if status is None and action in ("failed", "delayed"):
        derived = derive_status(_without_addresses(diagnostic))
    if derived is not None:
        status = derived.status
        action = "failed" if derived.final else action
    return BounceRecipient(
        recipient=address,
        action=action,
        status=status,
        permanent=_is_permanent(action, status),
        diagnostic=diagnostic,
        remote_mta=_strip_type(header_value(block, "remote-mta")),
        derived=derived is not None,
        phrase=derived.phrase if derived else None,
    )


def _recipient_address(block: Message) -> str | None:
    # Final-Recipient is the MUST; the others are fallbacks seen from broken MTAs.
    for name in ("final-recipient", "original-recipient", "x-actual-recipient"):
        address = _bare_address(_strip_type(header_value(block, name)))
        if address:
            return address
    return None


def _status_from_field(field: str | None, diagnostic: str | None) -> str | None:
    if field and (match := _STATUS_FIELD.match(field)):
        return match.group(1)
    # A missing or malformed Status is common in home-grown MTAs; the reply text often has one,
    # at its start or after its reply code (RFC 3463 section 2), nowhere else.
    if diagnostic and (match := _STATUS_FIELD.match(diagnostic)):
        return match.group(1)
    return status_in_text(diagnostic)


def status_in_text(text: str | None) -> str | None:
    """The first enhanced status code in free text, read only where RFC 3463 puts one."""
    if not text:
        return None
    found = [m for m in _REPLY_AND_STATUS.finditer(text) if m.group(1) == m.group(2)[0]]
    found += list(_HASH_STATUS.finditer(text))
    if not found:
        return None
    first = min(found, key=lambda m: m.start())
    return first.group(2) if first.re is _REPLY_AND_STATUS else first.group(1)


def gave_up(text: str | None) -> bool:
    """Whether a notice says delivery will not be tried again."""
    return bool(text and _GAVE_UP.search(text))


def _normalise_action(field: str | None, status: str | None) -> str | None:
    word = (field or "").strip().split(" ", 1)[0].split("(", 1)[0].strip().lower()
    if word in ACTIONS:
        return word
    if word in ("error", "failure", "fail"):  # OpenSMTPD says "error"
        return "failed"
    # No usable Action: infer it from the status class rather than drop the evidence.
    return {5: "failed", 4: "delayed", 2: "delivered"}.get(status_class(status) or 0)


def _is_permanent(action: str, status: str | None) -> bool:
    """Failed with a 5.x.x status; failed without any status trusts the MTA's verdict.

    A 4.x.x status is never permanent, whatever the Action says (RFC 3463, STANDARDS 48).
    """
    return action == "failed" and status_class(status) in (5, None)


def _parse_with_flufl(raw: bytes, msg: Message, original: OriginalHeaders) -> BounceReport:
    try:
        temporary, permanent = all_failures(_flufl_view(raw))
    except Exception as exc:  # a detector tripping over odd input means "not recognised"
        log.debug("flufl.bounce failed", exc_info=True)
        return _unrecognised(f"flufl.bounce error: {type(exc).__name__}", original)
    if not temporary and not permanent:
        return _unrecognised("no known bounce format", original)
    text = "\n".join(_notification_texts(msg)).replace("\r\n", "\n")
    failed = sorted(_decode_all(permanent))
    delayed = sorted(_decode_all(temporary - permanent))
    alone = len(failed) + len(delayed) == 1  # then the whole notice is about that one address
    recipients = [_flufl_recipient(address, "failed", text, alone) for address in failed]
    recipients += [_flufl_recipient(address, "delayed", text, alone) for address in delayed]
    return _report("flufl", recipients, original, None)


def _flufl_view(raw: bytes) -> Message:
    """A copy of the message that flufl.bounce's detectors can read without tripping.

    They call str methods on header values (compat32 hands back Header objects for 8-bit
    values) and index the first of getaddresses(From), which is empty for a missing From.
    """
    view = email.message_from_string(raw.decode("utf-8", "replace"), policy=email.policy.compat32)
    if not getaddresses([str(view.get("from", ""))]):
        del view["from"]
        view["From"] = "<>"
    return view


def _flufl_recipient(address: str, action: str, text: str, alone: bool) -> BounceRecipient:
    status, paragraph = _evidence_near(address, text)
    if action == "delayed" and gave_up(text):
        action = "failed"  # a warning says "delayed"; "not going to try again" is final
    derived = None
    if status is None:
        derived = most_specific(
            _without_addresses(paragraph), _without_addresses(text) if alone else None
        )
    if derived is not None:
        status = derived.status
        action = "failed" if derived.final else action
    # A final failure with a 4.x.x status stays final (not retried): _is_permanent makes it a
    # soft bounce, not a hard one.
    return BounceRecipient(
        recipient=address,
        action=action,
        status=status,
        permanent=_is_permanent(action, status),
        diagnostic=paragraph,
        remote_mta=None,
        derived=derived is not None,
        phrase=derived.phrase if derived else None,
    )


# Where a notice quotes the original message inline: our own newsletter's words after it
# ("not spam", "blocked") say nothing about the failure.
_ORIGINAL_FOLLOWS = re.compile(
    r"below this line is a copy of the message|copy of the original message"
    r"|-+ ?original message ?-+|original message headers|the header of the original message",
    re.I,
)


def _without_addresses(text: str | None) -> str | None:
    """Words to read a cause from: "blocked@x" or "spam@x" is a mailbox's name, not a cause."""
    return ADDRESS.sub("<>", text) if text else text  # no word in its place: none to match


def _paragraphs_about(address: str, text: str, most: int = 4) -> list[str]:
    """The first few paragraphs of a notice, before any quoted original, naming the address."""
    if cut := _ORIGINAL_FOLLOWS.search(text):
        text = text[: cut.start()]
    found: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        if address and address.lower() in paragraph.lower():
            found.append(paragraph[: _NEAR_CHARS * 2])
            if len(found) == most:
                break
    return found


def _evidence_near(address: str, text: str) -> tuple[str | None, str | None]:
    """The first enhanced status code in a paragraph mentioning the address, and that paragraph.

    Without a status, the first paragraph mentioning the address still serves as diagnostic.
    """
    lowered = text.lower()
    needle = address.lower()
    first_paragraph: str | None = None
    start = lowered.find(needle)
    while start != -1:
        paragraph_start = max(lowered.rfind("\n\n", 0, start), 0)
        paragraph_end = lowered.find("\n\n", start)
        if paragraph_end == -1:
            paragraph_end = len(text)
        window = text[paragraph_start : min(paragraph_end, start + _NEAR_CHARS)]
        paragraph = " ".join(window.split())[:_NEAR_CHARS] or None
        first_paragraph = first_paragraph or paragraph
        if status := status_in_text(window):
            return status, paragraph
        start = lowered.find(needle, start + len(needle))
    return None, first_paragraph


def _decode_all(addresses: Iterable[bytes]) -> set[str]:
    return {a.decode("ascii", "replace").strip() for a in addresses if a.strip()}


# --- the returned original message ---


def _returned_header_block(msg: Message) -> Message | None:
    for part in msg.walk():
        content_type = part.get_content_type()
        if content_type not in _RETURNED_TYPES:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            inner = next((p for p in payload if isinstance(p, Message)), None)
            if inner is not None:
                return inner
            continue
        body = part.get_payload(decode=True)
        if isinstance(body, bytes) and body.strip():
            return BytesHeaderParser(policy=email.policy.compat32).parsebytes(body.lstrip())
    return None


def _headers_from_block(block: Message) -> OriginalHeaders:
    return OriginalHeaders(
        message_id=_message_id(header_value(block, "message-id")),
        list_unsubscribe=header_value(block, "list-unsubscribe"),
        return_path=_bare_address(header_value(block, "return-path")),
        from_address=_bare_address(header_value(block, "from")),
        to=header_value(block, "to"),
    )


def _headers_from_text(text: str) -> OriginalHeaders:
    text = text.replace("\r\n", "\n")

    def find(name: str) -> str | None:
        match = _INLINE_HEADER[name].search(text)
        if match is None:
            return None
        return _clean(match.group(1)) or None

    return OriginalHeaders(
        message_id=_message_id(find("message-id")),
        list_unsubscribe=find("list-unsubscribe"),
        return_path=_bare_address(find("return-path")),
        from_address=_bare_address(find("from")),
        to=find("to"),
    )


def _notification_texts(part: Message) -> Iterator[str]:
    """Text of the human-readable parts, skipping any attached original message."""
    content_type = part.get_content_type()
    if content_type in _RETURNED_TYPES or content_type in _STATUS_TYPES:
        return
    payload = part.get_payload()
    if isinstance(payload, list):
        for sub in payload:
            if isinstance(sub, Message):
                yield from _notification_texts(sub)
    elif part.get_content_maintype() == "text":
        yield decoded_text(part)


# --- small value helpers ---


def _report(
    kind: str,
    recipients: list[BounceRecipient],
    original: OriginalHeaders,
    reporting_mta: str | None,
) -> BounceReport:
    return BounceReport(
        recognised=True,
        kind=kind,
        recipients=tuple(recipients),
        original_message_id=original.message_id,
        original_list_unsubscribe=original.list_unsubscribe,
        original_return_path=original.return_path,
        reporting_mta=reporting_mta,
        reason=None,
        original_from=original.from_address,
    )


def _unrecognised(reason: str, original: OriginalHeaders | None = None) -> BounceReport:
    # The returned headers are kept even here: they let an operator see what bounced.
    original = original or OriginalHeaders()
    return BounceReport(
        recognised=False,
        kind="unrecognised",
        recipients=(),
        original_message_id=original.message_id,
        original_list_unsubscribe=original.list_unsubscribe,
        original_return_path=original.return_path,
        reporting_mta=None,
        reason=reason,
        original_from=original.from_address,
    )


def _clean(value: object) -> str:
    """Unfold a raw header value and recover 8-bit bytes the parser smuggled as surrogates."""
    text = value if isinstance(value, str) else str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = _decode_bytes(text.encode("utf-8", "surrogateescape"), None)
    return " ".join(text.split())


def _decode_bytes(data: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _strip_type(value: str | None) -> str | None:
    """Drop the RFC 3464 type prefix ("rfc822;", "dns;", "smtp;") from a field value."""
    if value is None:
        return None
    _kind, sep, rest = value.partition(";")
    stripped = (rest if sep else value).strip()
    return stripped or None


def _bare_address(value: str | None) -> str | None:
    if not value:
        return None
    address = parseaddr(value)[1].strip() or value.strip().strip("<>").strip()
    return address or None


def _message_id(value: str | None) -> str | None:
    if not value:
        return None
    match = _ANGLE_ID.search(value)
    return match.group(0) if match else value.strip() or None
