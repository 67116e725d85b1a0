"""The demo's SMTP catcher: an aiosmtpd server on loopback that keeps every message it gets.

Messages are written to a folder (one .eml plus a .json envelope each, written atomically)
so the web process can show them at /dev/outbox, whichever process caught them.
"""

from __future__ import annotations

import asyncio
import email
import email.parser
import email.policy
import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.errors import NotFound
from mailer.smtp_envelope import RawEnvelopeSMTP

MESSAGE_ID = re.compile(r"^[0-9]{19}-[0-9]{1,9}$")
_sequence = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CaughtMessage:
    id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    raw: bytes

    @property
    def headers(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


class Catcher:
    """aiosmtpd handler: accepts any recipient (it only ever listens on loopback)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        await asyncio.to_thread(
            save_message, self.folder, envelope.mail_from or "", list(envelope.rcpt_tos), content
        )
        return "250 2.0.0 caught"


def save_message(folder: Path, mail_from: str, rcpt_tos: list[str], raw: bytes) -> str:
    message_id = f"{time.time_ns():019d}-{next(_sequence)}"
    meta = {"mail_from": mail_from, "rcpt_tos": rcpt_tos, "received_at": time.time()}
    # The .eml lands last, under its final name: a reader never sees half a message.
    _write_atomic(folder / f"{message_id}.json", json.dumps(meta).encode())
    _write_atomic(folder / f"{message_id}.eml", raw)
    return message_id


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One line of the outbox: read from the envelope and the headers, never the body."""

    id: str
    rcpt_tos: tuple[str, ...]
    subject: str
    date: str


@dataclass(frozen=True, slots=True)
class OutboxPage:
    total: int  # messages caught
    matching: int  # of those, the ones the search finds
    messages: list[MessageSummary]


def list_messages(
    folder: Path, *, search: str = "", offset: int = 0, limit: int = 50
) -> OutboxPage:
    """Newest first; ``search`` keeps messages whose recipient or subject contains it (any
    case). Only headers are parsed, so a few thousand messages list quickly."""
    ids = sorted((p.stem for p in folder.glob("*.eml")), reverse=True)
    needle = search.strip().casefold()
    found = []
    for message_id in ids:
        summary = _summary(folder, message_id)
        if summary is None:
            continue  # removed while we listed (a --fresh demo)
        if needle and not any(
            needle in text.casefold() for text in (*summary.rcpt_tos, summary.subject)
        ):
            continue
        found.append(summary)
    return OutboxPage(len(ids), len(found), found[offset : offset + limit])


def _summary(folder: Path, message_id: str) -> MessageSummary | None:
    try:
        meta = json.loads((folder / f"{message_id}.json").read_text())
        with (folder / f"{message_id}.eml").open("rb") as raw:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parse(raw)
    except FileNotFoundError:
        return None
    return MessageSummary(
        id=message_id,
        rcpt_tos=tuple(meta["rcpt_tos"]),
        subject=str(headers.get("Subject", "")),
        date=str(headers.get("Date", "")),
    )


def read_message(folder: Path, message_id: str) -> CaughtMessage:
    if not MESSAGE_ID.match(message_id) or not (folder / f"{message_id}.eml").exists():
        raise NotFound("No such message in the outbox.")
    meta = json.loads((folder / f"{message_id}.json").read_text())
    return CaughtMessage(
        id=message_id,
        mail_from=meta["mail_from"],
        rcpt_tos=tuple(meta["rcpt_tos"]),
        received_at=meta["received_at"],
        raw=(folder / f"{message_id}.eml").read_bytes(),
    )


async def start_catcher(folder: Path, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    handler = Catcher(folder)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        # Raw envelope addresses: the outbox shows what was on the wire, not a decoded form.
        lambda: RawEnvelopeSMTP(handler, hostname="catcher.optout.local", enable_SMTPUTF8=True),
        host,
        port,
    )
