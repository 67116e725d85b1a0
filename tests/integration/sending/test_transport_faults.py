"""The SMTP client against a misbehaving server: each fault ends as the reply code says."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ssl
from typing import ClassVar

import pytest

from mailer.config import MailerSettings, SmtpRelay, SmtpTimeouts
from mailer.db import create_pool
from mailer.sending import campaigns
from mailer.sending.transport import Reply, SmtpPool, classify
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.fault_sink import FaultSink, start_fault_sink
from tests.support.mailer_env import (
    address_key,
    mail_settings,
    newsletter_campaign,
    wait_until,
)


@pytest.fixture
async def faults():
    sink = FaultSink()
    server = await start_fault_sink(sink)
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


async def _send_until_done(db_dsn, conn, s, tenant, campaign, timeout=30.0):
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    pool = await create_pool(db_dsn, max_size=4)
    worker = Worker(pool, s)
    task = asyncio.create_task(worker.run())
    try:
        status = await wait_until(conn, campaign["id"], timeout, "done", "paused")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
        await pool.close()
    return status, worker.stats


async def _deliveries(conn, campaign_id):
    return {
        r["email"]: r async for r in probes().campaign_deliveries(conn, campaign_id=campaign_id)
    }


@pytest.mark.parametrize(
    ("code", "stage", "outcome"),
    [
        (250, "data", "sent"),
        (421, "mail", "retry"),
        (451, "rcpt", "retry"),
        (452, "rcpt", "retry"),
        (552, "rcpt", "retry"),
        (552, "data", "permanent"),
        (550, "rcpt", "permanent"),
        (599, "data", "permanent"),
        (354, "data", "retry"),
    ],
)
def test_replies_are_decided_by_code_alone(code, stage, outcome):
    """STANDARDS 51, 53: 4xx retry, 5xx permanent, 552 at RCPT temporary; first digit rules."""
    assert classify(code, stage) == outcome


def test_enhanced_status_is_read_from_the_reply():
    assert Reply("permanent", 550, "5.1.1 <x@y>: no such user", "rcpt").status == "5.1.1"
    assert Reply("permanent", 550, "no enhanced code here", "rcpt").status is None
    assert Reply("permanent", 550, "4.1.1 mismatched class", "rcpt").status is None


async def test_temporary_refusals_are_delivered_later(conn, db_dsn, settings, faults, tmp_path):
    """STANDARDS 51, 52: 421 and 451 defer with backoff, then the message goes through."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 4)
    emails = sorted(people.values())
    faults.faults[emails[0]] = ("rcpt:451 4.3.0 try again later", 2)
    faults.mail_faults.append("421 4.3.2 busy")
    faults.faults[emails[2]] = ("data:452 4.3.1 insufficient storage", 1)
    s = mail_settings(settings, faults.port)
    status, stats = await _send_until_done(db_dsn, conn, s, tenant, campaign)
    assert status == "done"
    assert sorted(r for r, _ in faults.delivered) == emails
    rows = await _deliveries(conn, campaign["id"])
    assert all(rows[e]["state"] == "sent" for e in emails)
    assert rows[emails[0]]["attempts"] >= 3 and rows[emails[2]]["attempts"] >= 2
    # Someone also met the 421 at MAIL and needed one more attempt.
    assert sum(rows[e]["attempts"] for e in emails) == 3 + 2 + 1 + 1 + 1
    assert stats.deferred == 4 and stats.sent == 4
    assert await _rows(probes().bounce_events_of(conn, tenant_id=tenant["id"])) == []


async def _rows(gen):
    return [r async for r in gen]


async def test_no_such_user_is_not_retried_and_is_suppressed(
    conn, db_dsn, settings, faults, tmp_path
):
    """STANDARDS 48, 51: 550 5.1.1 at RCPT: bounced once, never retried, suppressed 'all'."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 3)
    gone, policy, *_ = sorted(people.values())
    faults.faults[gone] = ("rcpt:550 5.1.1 <gone>: no such user", 99)
    faults.faults[policy] = ("rcpt:550 5.7.1 blocked by policy", 99)
    s = mail_settings(settings, faults.port)
    status, _ = await _send_until_done(db_dsn, conn, s, tenant, campaign)
    assert status == "done"
    rows = await _deliveries(conn, campaign["id"])
    assert (rows[gone]["state"], rows[gone]["attempts"], rows[gone]["last_reply_code"]) == (
        "bounced",
        1,
        550,
    )
    assert faults.attempts[gone] == 1
    suppression = await probes().suppression_of(
        conn, tenant_id=tenant["id"], address_key=address_key(settings, tenant["id"], gone)
    )
    assert suppression["scope"] == "all" and suppression["reason"] == "hard_bounce"
    # 5.7.x is the sender's reputation or policy, reported but never a suppression.
    assert rows[policy]["state"] == "bounced"
    assert (
        await probes().suppression_of(
            conn, tenant_id=tenant["id"], address_key=address_key(settings, tenant["id"], policy)
        )
        is None
    )
    events = await _rows(probes().bounce_events_of(conn, tenant_id=tenant["id"]))
    assert sorted((e["status"], e["source"], e["permanent"]) for e in events) == [
        ("5.1.1", "smtp", True),
        ("5.7.1", "smtp", True),
    ]


async def test_a_connection_dropped_mid_data_is_retried(conn, db_dsn, settings, faults, tmp_path):
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 3)
    victim = sorted(people.values())[1]
    faults.faults[victim] = ("drop", 1)
    s = mail_settings(settings, faults.port)
    status, _ = await _send_until_done(db_dsn, conn, s, tenant, campaign)
    assert status == "done"
    assert sorted(r for r, _ in faults.delivered) == sorted(people.values())
    rows = await _deliveries(conn, campaign["id"])
    assert rows[victim]["attempts"] == 2 and rows[victim]["last_reply_code"] == 250


async def test_a_stalled_server_times_out_and_is_retried(conn, db_dsn, settings, faults, tmp_path):
    """STANDARDS 54: a stalled reply to the final dot trips its timeout
    (OPTOUT_SMTP_TIMEOUT_DATA_END, half a second here); the worker retries later."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 2)
    victim = sorted(people.values())[0]
    faults.faults[victim] = ("stall", 1)
    faults.stall_seconds = 3.0
    s = mail_settings(settings, faults.port, smtp_timeouts=SmtpTimeouts(data_end=0.5))
    status, _ = await _send_until_done(db_dsn, conn, s, tenant, campaign)
    assert status == "done"
    rows = await _deliveries(conn, campaign["id"])
    assert rows[victim]["attempts"] == 2 and rows[victim]["state"] == "sent"
    assert sorted(r for r, _ in faults.delivered) == sorted(people.values())


async def test_default_retry_waits_30_minutes_and_gives_up_as_soft_failure(
    conn, db_dsn, settings, faults, tmp_path
):
    """STANDARDS 52: the first retry is 30 minutes or more away; past the give-up age (4 days
    by default) a 4xx ends as a soft failure: failed, not bounced, no suppression."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 2)
    fresh, old = sorted(people.values())
    faults.faults[fresh] = ("rcpt:451 4.3.0 later", 99)
    faults.faults[old] = ("rcpt:451 4.3.0 later", 99)
    s = mail_settings(settings, faults.port)
    s = dataclasses.replace(s, mailer=MailerSettings(poll_seconds=0.2))
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    # The old one was queued five days ago.
    rows = await _deliveries(conn, campaign["id"])
    await probes().age_deliveries_by_id(conn, id=rows[old]["id"], seconds=5 * 86400)
    pool = await create_pool(db_dsn, max_size=4)
    try:
        await Worker(pool, s).run(until_idle=True)
    finally:
        await pool.close()
    rows = await _deliveries(conn, campaign["id"])
    assert rows[fresh]["state"] == "deferred"
    wait = rows[fresh]["next_attempt_at"] - rows[fresh]["claimed_at"]
    assert wait >= dt.timedelta(minutes=30)
    assert rows[old]["state"] == "failed" and rows[old]["last_reply_code"] == 451
    assert await _rows(probes().bounce_events_of(conn, tenant_id=tenant["id"])) == []
    assert (await campaigns.stats(conn, tenant["id"], campaign["id"])).failed == 1


async def test_starttls_required_refuses_a_plaintext_relay(faults):
    """STANDARDS 25: with starttls=require, a relay that offers no TLS gets no message."""
    relay = SmtpRelay(host="127.0.0.1", port=faults.port, use_tls=False, starttls="require")
    pool = SmtpPool(relay, size=1, timeout=5)
    try:
        reply = await pool.send("a@example.com", "b@example.org", b"Subject: x\r\n\r\nhi\r\n")
    finally:
        await pool.close()
    assert reply.outcome == "retry" and reply.stage == "connect"
    assert "STARTTLS" in reply.text or "TLS" in reply.text
    assert faults.delivered == []


async def test_starttls_is_used_when_offered(tmp_path):
    """STANDARDS 25: with starttls=auto the client upgrades when the relay offers STARTTLS."""
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    sink = FaultSink()
    server = await start_fault_sink(sink, tls_context=server_ctx, require_starttls=True)
    relay = SmtpRelay(host="127.0.0.1", port=sink.port, use_tls=False, starttls="auto")
    pool = SmtpPool(relay, size=1, timeout=5, tls_context=client_ctx, helo="client.test")
    try:
        reply = await pool.send("a@example.com", "b@example.org", b"Subject: x\r\n\r\nhi\r\n")
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert reply.outcome == "sent", reply
    assert [r for r, _ in sink.delivered] == ["b@example.org"]


def _self_signed(tmp_path):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("set_aside_seconds", [0.2, 0.001])
async def test_a_dead_relay_is_set_aside_and_the_next_one_takes_the_mail(
    conn, db_dsn, settings, faults, tmp_path, set_aside_seconds
):
    """Several relays: the first refuses connections; every message still goes out at once
    through the second, and the first is set aside for every worker (relays table), also
    when the setting aside runs out before the batch is recorded (a slow batch, a loaded
    machine: 0.001 s)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # closed again: connections are refused
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 12)
    s = mail_settings(
        settings,
        dead_port,
        fallbacks=(SmtpRelay(host="127.0.0.1", port=faults.port, use_tls=False, starttls="off"),),
        retry_schedule=(set_aside_seconds, 0.4),
    )
    status, stats = await _send_until_done(db_dsn, conn, s, tenant, campaign)
    assert status == "done" and stats.sent == 12 and stats.deferred == 0
    assert sorted(r for r, _ in faults.delivered) == sorted(people.values())
    rows = await _deliveries(conn, campaign["id"])
    assert {r["relay"] for r in rows.values()} == {f"127-0-0-1-{faults.port}"}
    assert all(r["attempts"] == 1 for r in rows.values())
    dead = await probes().relay_row(conn, name=f"127-0-0-1-{dead_port}")
    assert dead["set_aside_until"] is not None


class _StallingServer(asyncio.Protocol):
    """A raw SMTP server that goes silent at one stage: no reply (greeting, mail, rcpt,
    data_init, data_end) or, for data_block, no more reading of the message."""

    opened: ClassVar[list[asyncio.Transport]] = []  # closed by the test, whatever the client did

    def __init__(self, stall: str) -> None:
        self.stall = stall
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.opened.append(transport)
        if self.stall != "greeting":
            transport.write(b"220 stall.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if self.in_data:
            if b"\r\n.\r\n" in self.buffer and self.stall != "data_end":
                self.transport.write(b"250 2.0.0 OK\r\n")
            return
        while b"\r\n" in self.buffer and not self.in_data:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.transport.write(b"250 stall.test\r\n")
            elif verb == b"MAIL" and self.stall != "mail":
                self.transport.write(b"250 2.1.0 OK\r\n")
            elif verb == b"RCPT" and self.stall != "rcpt":
                self.transport.write(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA" and self.stall != "data_init":
                self.transport.write(b"354 go ahead\r\n")
                self.in_data = True
                if self.stall == "data_block":
                    self.transport.pause_reading()  # the message stops leaving the client
            elif verb in (b"RSET", b"NOOP"):
                self.transport.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()


@pytest.mark.parametrize(
    "stage, reply_stage",
    [
        ("greeting", "connect"),
        ("mail", "mail"),
        ("rcpt", "rcpt"),
        ("data_init", "data"),
        ("data_block", "data"),
        ("data_end", "data"),
    ],
)
async def test_a_stalled_server_trips_the_timeout_of_that_stage(stage, reply_stage):
    """STANDARDS 54: each RFC 5321 4.5.3.2 stage has its own setting; a server that stalls at
    one stage trips that stage's timeout (seconds here), and the mail is left to retry."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _StallingServer(stage), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    relay = SmtpRelay(host="127.0.0.1", port=port, use_tls=False, starttls="off")
    generous = dict.fromkeys(SmtpTimeouts.__dataclass_fields__, 30.0)
    timeouts = SmtpTimeouts(**(generous | {stage: 0.3}))
    pool = SmtpPool(relay, size=1, timeout=30, timeouts=timeouts)
    # A message big enough to fill the socket buffers when the server stops reading.
    size = 48 * 1024 * 1024 if stage == "data_block" else 100
    message = b"Subject: x\r\n\r\n" + (b"y" * 998 + b"\r\n") * (size // 1000)
    started = loop.time()
    try:
        reply = await asyncio.wait_for(pool.send("a@example.com", "b@example.org", message), 20)
    finally:
        await pool.close()
        _close(server)
    elapsed = loop.time() - started
    assert (reply.outcome, reply.stage, reply.code) == ("retry", reply_stage, None), reply
    assert elapsed < 10, elapsed  # the 0.3 s stage timeout, not any of the 30 s ones

    # The same server with that stage's timeout generous and another one short still stalls
    # there, and only gives up at the generous one: the settings are independent.
    if stage == "data_end":
        other = SmtpTimeouts(**(generous | {"data_end": 1.5, "data_init": 0.1}))
        server = await loop.create_server(lambda: _StallingServer(stage), "127.0.0.1", 0)
        relay = dataclasses.replace(relay, port=server.sockets[0].getsockname()[1])
        pool = SmtpPool(relay, size=1, timeout=30, timeouts=other)
        started = loop.time()
        try:
            reply = await pool.send("a@example.com", "b@example.org", message)
        finally:
            await pool.close()
            _close(server)
        assert reply.stage == "data" and loop.time() - started >= 1.4


def _close(server: asyncio.Server) -> None:
    server.close()
    while _StallingServer.opened:
        _StallingServer.opened.pop().close()
