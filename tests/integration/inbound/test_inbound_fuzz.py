"""Fuzz: hypothesis-generated messages (headers, bodies, broken MIME, DSN and ARF look-alikes,
8-bit bytes) fed through the real handler never raise out of it, and each one is kept."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import Envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.db import create_pool
from mailer.inbound.handler import REPLY_OK, InboundHandler
from tests.support.inbound_world import DOMAIN, PARTNER, make_world, probes, rows

HEADER_NAMES = [
    "From", "To", "Subject", "Message-ID", "Content-Type", "Content-Transfer-Encoding",
    "MIME-Version", "Auto-Submitted", "Return-Path", "List-Unsubscribe", "Date",
]  # fmt: skip
CONTENT_TYPES = [
    'multipart/report; report-type=delivery-status; boundary="b"',
    'multipart/report; report-type=feedback-report; boundary="b"',
    "multipart/mixed; boundary=b",
    "message/delivery-status",
    "message/feedback-report",
    "message/rfc822",
    "text/plain; charset=utf-8",
    "text/plain; charset=x-unknown",
    "multipart/report; boundary=",
]
FIELD_NAMES = [
    "Final-Recipient", "Original-Recipient", "Action", "Status", "Diagnostic-Code",
    "Reporting-MTA", "Remote-MTA", "Feedback-Type", "User-Agent", "Version",
    "Original-Mail-From", "Original-Rcpt-To", "Message-ID", "List-Unsubscribe", "Return-Path",
]  # fmt: skip
FIELD_VALUES = [
    "rfc822; ann@example.org", "failed", "delayed", "5.1.1", "4.4.1", "5.7.1", "9.9.9", "abuse",
    "not-spam", "1", "<c1.s1@news.example.com>", "smtp; 550 5.1.1 no", "<>", "",
]  # fmt: skip

text = st.text(max_size=80)
raw_value = st.one_of(
    text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=80)
)


@st.composite
def field_block(draw):
    lines = draw(
        st.lists(
            st.tuples(
                st.sampled_from(FIELD_NAMES) | text,
                st.sampled_from(FIELD_VALUES) | text,
            ),
            max_size=8,
        )
    )
    return b"".join(f"{k}: {v}\r\n".encode("utf-8", "surrogatepass") for k, v in lines)


@st.composite
def message(draw):
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=3000))  # plain garbage after DATA
    headers = draw(
        st.lists(st.tuples(st.sampled_from(HEADER_NAMES) | text, raw_value), max_size=10)
    )
    head = b"".join(k.encode("utf-8", "surrogatepass") + b": " + v + b"\r\n" for k, v in headers)
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    parts = draw(
        st.lists(
            st.tuples(st.sampled_from(CONTENT_TYPES), field_block(), st.binary(max_size=200)),
            max_size=4,
        )
    )
    body = b"".join(
        b"--b\r\nContent-Type: " + ct.encode() + b"\r\n\r\n" + fields + b"\r\n" + extra + b"\r\n"
        for ct, fields, extra in parts
    )
    closing = draw(st.sampled_from([b"--b--\r\n", b"", b"--b"]))
    return head + b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body + closing


@pytest.fixture
async def handler(conn, settings, db_dsn):
    world = await make_world(conn, settings)
    ann = await world.person("ann@example.org")
    delivery = await world.delivery(await world.campaign(), ann, "<c1.s1@news.example.com>")
    pool = await create_pool(db_dsn, min_size=1, max_size=2)
    inbound = InboundHandler(settings, pool)
    assert await inbound.refresh()
    inbound.targets = [  # type: ignore[attr-defined]
        world.unsubscribe_address(ann),
        world.bounce_address(delivery),
        f"complaints@{DOMAIN}",
        PARTNER,
        f"postmaster@{DOMAIN}",
    ]
    try:
        yield inbound
    finally:
        await pool.close()


@settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=message(), which=st.integers(0, 4), mail_from=st.sampled_from(["", "x@y.example"]))
async def test_generated_messages_never_raise_out_of_the_handler(handler, raw, which, mail_from):
    envelope = Envelope()
    envelope.mail_from = mail_from
    envelope.rcpt_tos = [handler.targets[which]]
    envelope.content = envelope.original_content = raw
    reply = await handler.handle_DATA(None, None, envelope)
    assert reply == REPLY_OK
    # Kept and applied (or judged unmatched), never through the catch-all error path.
    async with handler.pool.acquire() as conn:
        assert await probes().error_events(conn) == 0


async def test_fuzzed_messages_are_kept_and_none_fell_into_the_error_path(handler, conn):
    """After the fuzz run above (its own database), a fixed batch of nasty inputs: every one
    is kept, and none needed the catch-all that keeps what could not be applied."""
    nasty = [
        b"",
        b"\x00\x01\x02" * 100,
        b"Subject: \xff\xfe\r\n\r\n\xff",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b",
        b"From: \x00@\x00\r\nMessage-ID: <\x00>\r\n\r\n",
        "From: Jürgen <jürgen@exämple.de>\r\n\r\nä".encode(),
    ]
    for n, raw in enumerate(nasty):
        envelope = Envelope()
        envelope.mail_from = ""
        envelope.rcpt_tos = [handler.targets[n % len(handler.targets)]]
        envelope.content = envelope.original_content = raw
        assert await handler.handle_DATA(None, None, envelope) == REPLY_OK
    events = await rows(probes().events(conn))
    assert len(events) == len(nasty)
    assert [e["outcome"] for e in events if e["outcome"] == "error"] == []
    assert [bytes(e["raw"]) for e in events] == nasty
