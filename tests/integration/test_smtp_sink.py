"""The capture fixture itself: a real SMTP session over loopback keeps the exact bytes."""

from __future__ import annotations

import aiosmtplib

from tests.support.smtp_sink import SmtpSink


async def test_sink_keeps_exact_bytes_and_dot_lines(smtp_sink: SmtpSink):
    """STANDARDS 57: a body line "." round-trips (the client dot-stuffs, the server unstuffs)."""
    data = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nline\r\n.\r\nend\r\n"
    await aiosmtplib.send(
        data,
        sender="a@example.com",
        recipients=["b@example.com"],
        hostname="127.0.0.1",
        port=smtp_sink.port,
        start_tls=False,
    )
    [message] = await smtp_sink.wait_for(1)
    assert message.mail_from == "a@example.com" and message.rcpt_tos == ("b@example.com",)
    assert message.data == data
