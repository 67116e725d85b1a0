"""The inbound server's limits and transport: message size, recipients per message,
connections per IP, STARTTLS with a configured certificate, and `optout inbound` itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
import ssl
import subprocess
import sys

import aiosmtplib
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailer.inbound.server import purge_expired_raw
from tests.conftest import subprocess_env
from tests.support.inbound_world import (
    DOMAIN,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


async def test_a_50_mb_message_is_refused_with_552_and_nothing_kept(world, conn, settings, db_dsn):
    """DESIGN G6: the default limit is 10 MB; a bigger message is refused at DATA."""
    raw = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (50 * 1024 * 1024 // 1000)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "a@example.net", [f"postmaster@{DOMAIN}"], raw)
        ok = await send_smtplib(inbound.port, "a@example.net", [f"postmaster@{DOMAIN}"], b"\r\nx")
    assert replies.data[0] == 552
    assert ok.data[0] == 250
    assert len(await rows(probes().events(conn))) == 1


async def test_too_many_recipients_get_452(world, conn, settings, db_dsn):
    async with inbound_server(settings, db_dsn, max_recipients=2) as inbound:
        replies = await send_smtplib(
            inbound.port, "a@example.net", [f"postmaster@{DOMAIN}"] * 3, b"Subject: x\r\n\r\nx"
        )
    assert [code for code, _ in replies.rcpt] == [250, 250, 452]
    assert replies.data[0] == 250
    assert len(await rows(probes().events(conn))) == 1  # the same message to the same address


async def test_connections_per_ip_are_limited(world, settings, db_dsn):
    async with inbound_server(settings, db_dsn, max_connections_per_ip=2) as inbound:
        streams = []
        try:
            for _ in range(3):
                streams.append(await asyncio.open_connection("127.0.0.1", inbound.port))
            greetings = [await asyncio.wait_for(r.readline(), 10) for r, _w in streams]
            assert [g[:3] for g in greetings] == [b"220", b"220", b"421"]
            assert b"4.7.0" in greetings[2]
            _r, writer = streams.pop(0)
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection("127.0.0.1", inbound.port)
            streams.append((reader, writer))
            assert (await asyncio.wait_for(reader.readline(), 10))[:3] == b"220"
        finally:
            for _r, writer in streams:
                writer.close()


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inbound.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
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


def starttls_session(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo("client.test")
        assert isinstance(client.sock, ssl.SSLSocket)
        cipher = client.sock.cipher()
        client.mail("a@example.net")
        code, _ = client.rcpt(f"postmaster@{DOMAIN}")
        data = client.data(b"Subject: over TLS\r\n\r\nhello\r\n")
        return cipher, code, data


async def test_starttls_when_a_certificate_is_configured(world, conn, settings, db_dsn, tmp_path):
    cert, key = self_signed(tmp_path)
    async with inbound_server(settings, db_dsn, tls_cert=cert, tls_key=key) as inbound:
        cipher, code, data = await asyncio.to_thread(starttls_session, inbound.port)
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=inbound.port, validate_certs=False, start_tls=True
        ) as client:
            errors, _ = await client.sendmail(
                "b@example.net", [f"postmaster@{DOMAIN}"], b"Subject: aio\r\n\r\nhi\r\n"
            )
    assert cipher is not None
    assert (code, data[0]) == (250, 250)
    assert errors == {}
    assert len(await rows(probes().events(conn))) == 2


async def test_no_starttls_without_a_certificate(world, settings, db_dsn):
    def features(port):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.test")
            return client.has_extn("starttls"), client.has_extn("size")

    async with inbound_server(settings, db_dsn) as inbound:
        starttls, size = await asyncio.to_thread(features, inbound.port)
    assert (starttls, size) == (False, True)


async def test_eight_bit_headers_over_smtp_are_kept_as_sent(world, conn, settings, db_dsn):
    raw = "From: Jürgen <j@exämple.de>\r\nSubject: Grüße\r\n\r\nä\r\n".encode()
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "j@example.de", [f"postmaster@{DOMAIN}"], raw)
    assert replies.data[0] == 250
    assert bytes((await rows(probes().events(conn)))[0]["raw"]) == raw


async def test_raw_messages_expire_but_the_record_stays(world, conn, settings, db_dsn):
    async with inbound_server(settings, db_dsn, raw_retention_days=0) as inbound:
        await send_smtplib(inbound.port, "a@example.net", [f"postmaster@{DOMAIN}"], b"\r\nx")
        assert await purge_expired_raw(inbound.pool) == 1
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["raw"]) for e in events] == [("postmaster", None)]


async def test_optout_inbound_command_listens_and_stops_on_sigterm(db_dsn, world):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailer.cli", "inbound", "--host", "127.0.0.1", "--port", "0",
        env=subprocess_env(db_dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"optout inbound: listening on 127.0.0.1:"), line
        port = int(line.rsplit(b":", 1)[1])
        replies = await send_smtplib(port, "a@example.net", [f"nobody@{DOMAIN}"], None)
        assert replies.rcpt[0][0] == 550
    finally:
        process.terminate()
        try:
            code = await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    assert code == 0
