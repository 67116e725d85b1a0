"""Long lines in returned mail: DATA lines up to OPTOUT_INBOUND_MAX_LINE are taken (Amazon SES
and GMX reports carry lines of over 1,000 octets), longer ones get 500 5.5.2, command lines
stay bounded, and the message size limit is untouched."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from tests.support.inbound_world import (
    DOMAIN,
    fixture,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)

ADDRESS = "jdoe@example.net"


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def with_long_diagnostic(length: int) -> bytes:
    """The Postfix 5.1.1 fixture whose Diagnostic-Code is one unfolded line of ``length``."""
    raw = fixture("dsn", "postfix_5_1_1_user_unknown.eml")
    head = b"Diagnostic-Code: smtp; 550 5.1.1 <jdoe@example.net>: Recipient address rejected: "
    folded = (
        b"Diagnostic-Code: smtp; 550 5.1.1 <jdoe@example.net>: Recipient address\r\n"
        b"    rejected: User unknown in virtual mailbox table"
    )
    filler = b"User unknown in virtual mailbox table; " * (length // 39 + 1)
    line = (head + filler)[:length]
    assert folded in raw
    return raw.replace(folded, line)


async def test_a_dsn_with_a_1240_character_line_is_accepted_and_parsed(
    world, conn, settings, db_dsn
):
    """STANDARDS 60: a DSN with a 1,240-octet line is accepted and parsed."""
    raw = with_long_diagnostic(1240)
    assert max(len(line) for line in raw.split(b"\r\n")) == 1240
    subscriber = await world.person(ADDRESS, topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
    assert replies.data[0] == 250, replies.data
    [event] = await rows(probes().events(conn))
    assert event["raw"] == raw
    assert (event["delivery_id"], event["outcome"]) == (delivery, "permanent")
    applied = event["parsed"]["applied"]
    assert (applied["recipient"], applied["status"]) == (ADDRESS, "5.1.1")
    [bounce] = await rows(probes().bounce_events(conn))
    assert (bounce["delivery_id"], bounce["status"]) == (delivery, "5.1.1")


async def test_a_line_over_the_limit_gets_500_5_5_2_and_nothing_is_kept(
    world, conn, settings, db_dsn
):
    """A line past OPTOUT_INBOUND_MAX_LINE is refused with an enhanced code; the session goes on."""
    subscriber = await world.person(ADDRESS, topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn, max_line_bytes=2000) as inbound:
        refused = await send_smtplib(
            inbound.port, "", [world.bounce_address(delivery)], with_long_diagnostic(3000)
        )
        taken = await send_smtplib(
            inbound.port, "", [world.bounce_address(delivery)], with_long_diagnostic(1900)
        )
    assert refused.data[0] == 500
    assert refused.data[1].startswith(b"5.5.2 ")
    assert taken.data[0] == 250
    assert len(await rows(probes().events(conn))) == 1


def command_replies(port: int, lines: list[bytes]) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        replies = []
        for line in lines:
            client.send(line + b"\r\n")
            replies.append(client.getreply())
        return replies


async def test_command_lines_stay_bounded(world, settings, db_dsn):
    """Only DATA lines grow: a 2,000-octet MAIL command is still refused."""
    long_path = b"MAIL FROM:<" + b"a" * 2000 + b"@example.net>"
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await asyncio.to_thread(
            command_replies,
            inbound.port,
            [long_path, b"MAIL FROM:<a@example.net>", f"RCPT TO:<postmaster@{DOMAIN}>".encode()],
        )
    assert [code for code, _ in replies] == [500, 250, 250]
    assert b"too long" in replies[0][1]


async def test_the_message_size_limit_is_unchanged(world, conn, settings, db_dsn):
    """Long lines do not widen OPTOUT_INBOUND_MAX_BYTES: a message over it still gets 552."""
    raw = b"Subject: big\r\n\r\n" + (b"y" * 60_000 + b"\r\n") * 3
    async with inbound_server(settings, db_dsn, max_message_bytes=100_000) as inbound:
        replies = await send_smtplib(inbound.port, "a@example.net", [f"postmaster@{DOMAIN}"], raw)
    assert replies.data[0] == 552
    assert await rows(probes().events(conn)) == []
