"""Addresses as they were sent (STANDARDS 61): the RCPT command carries the stored address byte
for byte (quoted, encoded-word-looking and UTF-8 local parts alike), the To: header matches it,
the demo catcher and the inbound server keep it as it came, and a non-ASCII address to a relay
without SMTPUTF8 fails for good with reason smtputf8-unsupported."""

from __future__ import annotations

import asyncio
import re
import smtplib
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope, Session
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer.catcher import list_messages, read_message, start_catcher
from mailer.db import create_pool
from mailer.inbound.server import ConnectionLimiter, InboundSMTP
from mailer.sending import campaigns
from mailer.sending.transport import SMTPUTF8_UNSUPPORTED
from mailer.sending.worker import Worker
from mailer.smtp_envelope import RawEnvelopeSMTP, address_as_sent
from tests.conftest import probes
from tests.support.mailer_env import address_key, mail_settings, make_tenant
from tests.support.smtp_sink import start_sink

QUOTED = '"first..last"@example.org'
ENCODED_WORD = "=?utf-8?B?8J+QiPCfkIg=?=@example.org"  # decodes to two cats; sent as is
UTF8 = "ünïcödé@example.org"
ASCII = "plain@example.org"
# Optout refuses quoted local parts at sign-up and import (mailer.addresses), so only the
# servers' side sees one; the stored ones are the other three.
STORED = (ENCODED_WORD, UTF8, ASCII)
ADDRESSES = (QUOTED, *STORED)


async def subscribe_all(conn, settings, tenant_id, topic_id, emails):
    keys = [address_key(settings, tenant_id, e) for e in emails]
    ids = [
        r["subscriber_id"]
        async for r in probes().bulk_confirmed_subscribers(
            conn, tenant_id=tenant_id, topic_id=topic_id, emails=list(emails), keys=keys
        )
    ]
    return dict(zip(ids, emails, strict=True))


async def send_campaign(conn, db_dsn, settings, tmp_path, port):
    tenant, topic = await make_tenant(conn, tmp_path)
    await subscribe_all(conn, settings, tenant["id"], topic["id"], STORED)
    campaign = await campaigns.create(
        conn, tenant_id=tenant["id"], topic_slug="newsletter", name="Spring", template="newsletter",
        subject="Spring", content={"headline": "Spring", "intro": "Hello.", "blocks": []},
    )  # fmt: skip
    s = mail_settings(settings, port)
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == len(STORED)
    pool = await create_pool(db_dsn, max_size=4)
    try:
        await Worker(pool, s).run(until_idle=True)
    finally:
        await pool.close()
    return {
        r["email"]: r for r in [row async for row in probes().campaign_deliveries(
            conn, campaign_id=campaign["id"])]
    }  # fmt: skip


def to_header(data: bytes) -> str:
    """The To: header's address as it stands in the message's bytes (UTF-8 headers, RFC 6532),
    not as a header parser would decode it."""
    match = re.search(rb"^To: (?:[^\r\n]*<)?([^<>\r\n]+)>?\r\n", data, re.M)
    assert match is not None
    return match.group(1).decode()


async def test_rcpt_lines_equal_the_stored_address_and_the_to_header(
    conn, db_dsn, settings, tmp_path
):
    """STANDARDS 61: the envelope recipient equals the stored address byte for byte."""
    sink, server = await start_sink(enable_SMTPUTF8=True)
    try:
        deliveries = await send_campaign(conn, db_dsn, settings, tmp_path, sink.port)
        messages = await sink.wait_for(len(STORED))
    finally:
        server.close()
        await server.wait_closed()
    assert {d["state"] for d in deliveries.values()} == {"sent"}
    rcpt_lines = [line for line in sink.command_lines if line.startswith("RCPT ")]
    assert sorted(rcpt_lines) == sorted(f"RCPT TO:<{a}>" for a in STORED)
    mail_lines = [line for line in sink.command_lines if line.startswith("MAIL ")]
    # SMTPUTF8 only where an address needs it (here only the recipient could).
    assert sum(line.endswith(" SMTPUTF8") for line in mail_lines) == 1
    by_line = dict(zip(rcpt_lines, messages, strict=True))
    for address in STORED:
        message = by_line[f"RCPT TO:<{address}>"]
        assert to_header(message.data) == address, address


async def test_a_relay_without_smtputf8_fails_a_utf8_address_for_good(
    conn, db_dsn, settings, tmp_path
):
    """STANDARDS 61: never down-converted, never retried; the ASCII ones still go."""
    sink, server = await start_sink(enable_SMTPUTF8=False)
    try:
        deliveries = await send_campaign(conn, db_dsn, settings, tmp_path, sink.port)
        await sink.wait_for(len(STORED) - 1)
    finally:
        server.close()
        await server.wait_closed()
    failed = deliveries[UTF8]
    assert failed["state"] == "failed"
    assert SMTPUTF8_UNSUPPORTED in str(dict(failed).values())
    assert failed["attempts"] == 1
    assert {deliveries[a]["state"] for a in (ENCODED_WORD, ASCII)} == {"sent"}
    assert not any(UTF8 in line for line in sink.command_lines)
    assert await probes().bounce_events_count(conn) == 0  # the relay's limit, not the address's


class Recorder:
    """A handler that keeps what the server hands it, for the inbound server's class."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:  # fmt: skip
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.seen.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 OK"


def smtp_session(port: int, mail_from: str, rcpts: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        options = [] if all(a.isascii() for a in (mail_from, *rcpts)) else ["SMTPUTF8"]
        client.sendmail(mail_from, rcpts, b"Subject: x\r\n\r\nx\r\n", mail_options=options)


async def test_the_catcher_and_the_inbound_server_show_addresses_as_sent(tmp_path):
    """What the catcher lists and what the inbound server matches is what was on the wire."""
    folder = tmp_path / "outbox"
    catcher = await start_catcher(folder)
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    inbound = await loop.create_server(
        lambda: InboundSMTP(recorder, limiter=ConnectionLimiter(10), enable_SMTPUTF8=True),
        "127.0.0.1", 0,
    )  # fmt: skip
    try:
        for server in (catcher, inbound):
            port = server.sockets[0].getsockname()[1]
            for address in ADDRESSES:
                await asyncio.to_thread(smtp_session, port, ENCODED_WORD, [address])
    finally:
        for server in (catcher, inbound):
            server.close()
            await server.wait_closed()
    caught = [read_message(folder, m.id) for m in reversed(list_messages(folder).messages)]
    assert [(m.mail_from, m.rcpt_tos) for m in caught] == [(ENCODED_WORD, (a,)) for a in ADDRESSES]
    assert recorder.seen == [(ENCODED_WORD, [a]) for a in ADDRESSES]


LOCAL_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
    exclude_characters='<>"\\@ ,;:()[]',
)  # fmt: skip


@hypothesis_settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    local=st.text(LOCAL_CHARS, min_size=1, max_size=30).filter(lambda s: not s.startswith(".")),
    quoted=st.booleans(),
    params=st.sampled_from(["", " SIZE=100", " BODY=8BITMIME SMTPUTF8"]),
    route=st.booleans(),
)
def test_an_accepted_path_is_its_address_as_written(local, quoted, params, route):
    """Whatever aiosmtpd would decode (encoded words, quotes), the address it accepts is the
    text sent, and the parameters after it are left to aiosmtpd."""
    address = f'"{local}"@example.org' if quoted else f"{local}@example.org"
    path = f"<{'@relay.example:' if route else ''}{address}>"
    server = RawEnvelopeSMTP.__new__(RawEnvelopeSMTP)  # only the path parser is exercised
    server.local_part_limit = 0
    parsed, rest = server._getaddr(path + params)
    if parsed is not None:  # aiosmtpd refuses some odd local parts; those get 553
        assert (parsed, rest) == (address, params.strip())


@pytest.mark.parametrize("path", ["<>", " <> "])
def test_the_null_path_stays_the_null_path(path):
    assert address_as_sent(path) == "<>"
