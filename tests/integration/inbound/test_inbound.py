"""The inbound SMTP server over loopback, with smtplib and aiosmtplib as real clients:
RCPT decisions, mailto unsubscribes, partner withdrawals, postmaster, outages."""

from __future__ import annotations

import aiosmtplib
import pytest

from mailer.db import create_pool
from tests.support.inbound_world import (
    DOMAIN,
    PARTNER,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


async def ledger(conn):
    return await rows(probes().ledger(conn))


async def subscriptions(conn):
    return {
        (r["subscriber_id"], r["topic_id"]): r["state"]
        for r in await rows(probes().subscriptions(conn))
    }


async def test_mailto_unsubscribe_from_a_sent_message_header(world, conn, settings, db_dsn):
    """STANDARDS 50: one SMTP session to the List-Unsubscribe mailto unsubscribes exactly that
    recipient from exactly that topic, with one ledger row, whatever subject and body say."""
    ann = await world.person("ann@example.org")
    bob = await world.person("bob@example.org")
    sent = world.newsletter(ann, "ann@example.org", message_id="<c1.s1@news.example.com>")
    header = next(
        line for line in sent.decode().split("\r\n") if line.startswith("List-Unsubscribe:")
    )
    mailto = header.split("<mailto:", 1)[1].split(">", 1)[0]
    before = await ledger(conn)
    async with inbound_server(settings, db_dsn) as inbound:
        body = b"From: ann@example.org\r\nSubject: please SUBSCRIBE me again\r\n\r\nsubscribe\r\n"
        replies = await send_smtplib(inbound.port, "ann@example.org", [mailto], body)
    assert replies.rcpt == [(250, b"2.1.5 OK")]
    assert replies.data[0] == 250
    states = await subscriptions(conn)
    assert states[(ann, world.topic_id)] == "unsubscribed"
    assert states[(ann, world.other_topic_id)] == "confirmed"
    assert states[(bob, world.topic_id)] == "confirmed"
    new = (await ledger(conn))[len(before) :]
    assert [(e["subscriber_id"], e["topic_id"], e["action"], e["source"]) for e in new] == [
        (ann, world.topic_id, "unsubscribe", "mailto")
    ]
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["subscriber_id"]) for e in events] == [
        ("unsubscribe", "unsubscribed", ann)
    ]
    assert events[0]["raw"] == body
    # No auto-reply, no mail of any kind goes out (STANDARDS 46, 50).
    assert await probes().delivery_count(conn) == 0


async def test_mailto_unsubscribe_with_upper_cased_local_part_via_aiosmtplib(
    world, conn, settings, db_dsn
):
    """Mail servers may change the case of a local part: the code is read case-insensitively."""
    ann = await world.person("ann@example.org")
    address = world.unsubscribe_address(ann, world.other_topic_id)
    local, domain = address.split("@")
    shouted = f"{local.upper()}@{domain.upper()}"
    async with (
        inbound_server(settings, db_dsn) as inbound,
        aiosmtplib.SMTP(hostname="127.0.0.1", port=inbound.port) as client,
    ):
        errors, reply = await client.sendmail("", [shouted], b"Subject: x\r\n\r\nbye\r\n")
    assert errors == {}
    assert reply.startswith("2.0.0")
    states = await subscriptions(conn)
    assert states[(ann, world.other_topic_id)] == "unsubscribed"
    assert states[(ann, world.topic_id)] == "confirmed"
    assert len([e for e in await ledger(conn) if e["action"] == "unsubscribe"]) == 1


async def test_repeated_mailto_is_idempotent(world, conn, settings, db_dsn):
    ann = await world.person("ann@example.org")
    address = world.unsubscribe_address(ann)
    async with inbound_server(settings, db_dsn) as inbound:
        for body in (b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"):
            replies = await send_smtplib(inbound.port, "ann@example.org", [address], body)
            assert replies.data[0] == 250
    assert len([e for e in await ledger(conn) if e["action"] == "unsubscribe"]) == 1
    outcomes = [e["outcome"] for e in await rows(probes().events(conn))]
    assert outcomes == ["unsubscribed", "already_unsubscribed"]


async def test_rcpt_refuses_unknown_local_parts_bad_codes_and_relaying(
    world, conn, settings, db_dsn
):
    """STANDARDS 45: a forged or unknown address gets 550 at RCPT time; relaying is refused."""
    ann = await world.person("ann@example.org")
    good = world.unsubscribe_address(ann)
    local, _ = good.split("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    delivery = await world.delivery(await world.campaign(), ann)
    bounce = world.bounce_address(delivery)
    # A valid code of one kind is not accepted as the other kind.
    swapped = "bounces+" + local.partition("+")[2] + "@" + DOMAIN
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port,
            "someone@example.net",
            [
                f"nobody@{DOMAIN}",
                f"{flipped}@{DOMAIN}",
                f"unsubscribe+{local.partition('+')[2][:-3]}@{DOMAIN}",
                "unsubscribe+@" + DOMAIN,
                swapped,
                f"{good.split('@')[0]}@other.example",  # a genuine code at a foreign domain
                "victim@gmail.com",  # relay attempt
                good,
                bounce,
                f"POSTMASTER@{DOMAIN.upper()}",
                f"complaints@{DOMAIN}",
                f"fbl@{DOMAIN}",
                PARTNER,
            ],
            None,
        )
    codes = [(code, text.split(b" ")[0]) for code, text in replies.rcpt]
    assert codes[:5] == [(550, b"5.1.1")] * 5
    assert codes[5:7] == [(550, b"5.7.1")] * 2
    assert codes[7:] == [(250, b"2.1.5")] * 6
    assert await rows(probes().events(conn)) == []


async def test_code_for_another_tenants_domain_is_refused(world, conn, settings, db_dsn):
    from mailer import tenants

    other = await tenants.create_tenant(
        conn, "globex", name="Globex", sender_address="news@globex.example"
    )
    ann = await world.person("ann@example.org")
    address = world.unsubscribe_address(ann)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, "x@example.net",
            [address.replace(DOMAIN, "globex.example"), "postmaster@globex.example"], None,
        )  # fmt: skip
    assert [code for code, _ in replies.rcpt] == [550, 250]
    assert other["sender_domain"] == "globex.example"


async def test_outage_answers_451_and_the_retry_is_applied_once(world, conn, settings, db_dsn):
    """DESIGN G2: with Postgres unreachable DATA gets 451 and nothing is recorded; the retried
    message is applied once after it returns, and a further retry changes nothing."""
    ann = await world.person("ann@example.org")
    address = world.unsubscribe_address(ann)
    body = b"Message-ID: <retry-1@example.org>\r\nSubject: stop\r\n\r\nstop\r\n"
    async with inbound_server(settings, db_dsn) as inbound:
        working = inbound.handler.pool
        # A pool for a port where nothing listens: every acquire fails to connect.
        unreachable = await create_pool(
            "postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1
        )
        inbound.handler.pool = unreachable
        try:
            replies = await send_smtplib(inbound.port, "ann@example.org", [address], body)
            assert replies.rcpt[0][0] == 250  # RCPT is decided from the cached tenant table
            assert replies.data[0] == 451
            assert replies.data[1].startswith(b"4.3.0")
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=inbound.port) as client:
                with pytest.raises(aiosmtplib.SMTPDataError) as failure:
                    await client.sendmail("ann@example.org", [address], body)
            assert failure.value.code == 451
        finally:
            inbound.handler.pool = working
            await unreachable.close()
        assert await rows(probes().events(conn)) == []
        assert (await subscriptions(conn))[(ann, world.topic_id)] == "confirmed"
        for _ in range(2):  # the sender's retry, then a duplicate retry
            replies = await send_smtplib(inbound.port, "ann@example.org", [address], body)
            assert replies.data[0] == 250
    assert (await subscriptions(conn))[(ann, world.topic_id)] == "unsubscribed"
    assert len([e for e in await ledger(conn) if e["action"] == "unsubscribe"]) == 1
    assert len(await rows(probes().events(conn))) == 1


async def test_partner_withdrawal_from_a_subscribed_address(world, conn, settings, db_dsn):
    from mailer.consent import writer as consent

    ann = await world.person("Ann@Example.org")
    await consent.set_partner_consent(
        conn, tenant_id=world.tenant_id, subscriber_id=ann, granted=True,
        source="preference_centre",
    )  # fmt: skip
    body = (
        b"From: Ann <ann@example.org>\r\nMessage-ID: <withdraw-1@example.org>\r\n"
        b"Subject: stop sharing\r\n\r\nPlease stop sharing my data.\r\n"
    )
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "ann@example.org", [PARTNER.upper()], body)
    assert replies.data[0] == 250
    assert (await probes().subscriber(conn, id=ann))["partner_consent"] is False
    event = (await ledger(conn))[-1]
    assert (event["action"], event["source"]) == ("partner_withdraw", "partner_address")
    from tests.conftest import probes as core_probes

    evidence = await core_probes().evidence(conn, id=event["evidence_id"])
    assert evidence["message_id"] == "<withdraw-1@example.org>"
    assert await rows(probes().data_requests(conn)) == []


async def test_partner_withdrawal_from_an_unknown_address_is_a_claim_not_a_request(
    world, conn, settings, db_dsn
):
    """Issue 14: a withdrawal from an address that matches no one, unauthenticated, is listed
    for staff as a claim: no data request with a deadline, no mail back (no backscatter)."""
    before = await probes().state_digest(conn)
    body = b"From: stranger@example.net\r\nSubject: remove me\r\n\r\nstop sharing\r\n"
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "stranger@example.net", [PARTNER], body)
        # A bounce to the partner address is not a person asking: kept, no claim.
        bounce = await send_smtplib(inbound.port, "", [PARTNER], b"Subject: failure\r\n\r\nx\r\n")
    assert replies.data[0] == 250 and bounce.data[0] == 250
    assert await rows(probes().data_requests(conn)) == []
    claims = await rows(probes().claims(conn))
    assert [(c["requester"], c["status"], c["authenticated"]) for c in claims] == [
        ("stranger@example.net", "listed", False)
    ]
    after = await probes().state_digest(conn)
    assert (after["ledger"], after["deliveries"]) == (before["ledger"], before["deliveries"])
    outcomes = [e["outcome"] for e in await rows(probes().events(conn))]
    assert outcomes == ["claim_opened", "ignored_automatic"]


async def test_postmaster_mail_is_kept_for_the_operator(world, conn, settings, db_dsn):
    """STANDARDS 46: postmaster is accepted; a message from the null sender too, no reply."""
    body = b"From: someone@example.net\r\nSubject: hello postmaster\r\n\r\nhi\r\n"
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [f"postmaster@{DOMAIN}"], body)
    assert replies.data[0] == 250
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["raw"]) for e in events] == [("postmaster", "kept", body)]
    assert events[0]["raw_expires_at"] > events[0]["received_at"]
    assert await probes().delivery_count(conn) == 0
