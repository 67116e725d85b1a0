"""When applying inbound mail fails: an opt-out answers 451 and keeps nothing, so the sender
retries; anything else is kept as unmatched/error with 250 and `optout inbound reapply` runs
it again; a reply to a test send is recorded as such and changes no consent."""

from __future__ import annotations

import pytest

from mailer.consent import writer as consent
from tests.conftest import subprocess_env
from tests.support.cli import optout
from tests.support.inbound_world import (
    DOMAIN,
    PARTNER,
    fixture,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


@pytest.mark.parametrize("door", ["unsubscribe", "complaint", "partner_withdrawal"])
async def test_an_opt_out_that_fails_to_apply_answers_451_and_keeps_nothing(
    door, world, conn, settings, db_dsn
):
    """DESIGN G2: a 250 means committed. When the ledger write fails, the SMTP client sees
    451, nothing is kept, and the sender's retry (after the fault is mended) applies it."""
    ann = await world.person("ann@example.org")
    delivery = await world.delivery(await world.campaign(), ann)
    if door == "unsubscribe":
        rcpt, raw = world.unsubscribe_address(ann), b"Subject: stop\r\n\r\nstop\r\n"
    elif door == "complaint":
        rcpt = f"complaints@{DOMAIN}"
        raw = fixture("arf", "redacted_recipient.eml").replace(
            b"bounces+abcdef234567@news.example.com", world.bounce_address(delivery).encode()
        )
    else:
        await consent.set_partner_consent(
            conn, tenant_id=world.tenant_id, subscriber_id=ann, granted=True,
            source="preference_centre",
        )  # fmt: skip
        rcpt, raw = PARTNER, b"From: ann@example.org\r\nSubject: no sharing\r\n\r\nstop\r\n"
    await probes().break_table(conn)
    before = await probes().state_digest(conn)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "ann@example.org", [rcpt], raw)
        assert replies.rcpt[0][0] == 250
        assert replies.data[0] == 451, replies.data
        assert await probes().event_count(conn) == 0
        assert await probes().state_digest(conn) == before
        await probes().mend_table(conn)
        retried = await send_smtplib(inbound.port, "ann@example.org", [rcpt], raw)
    assert retried.data[0] == 250
    assert await probes().state_digest(conn) != before
    events = await rows(probes().events(conn))
    assert [e["kind"] for e in events] == [door]
    assert events[0]["outcome"] in ("unsubscribed", "complaint", "withdrawn")


async def test_a_failed_bounce_is_kept_and_reapplied(world, conn, settings, db_dsn):
    """Not an opt-out: a failure keeps the raw message as unmatched/error (250), and
    `optout inbound reapply` applies it once the fault is gone."""
    ann = await world.person("gone@example.org", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), ann)
    raw = fixture("dsn", "postfix_5_1_1_user_unknown.eml").replace(
        b"user.unknown@example.net", b"gone@example.org"
    )
    await probes().break_table(conn)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
    assert replies.data[0] == 250
    kept = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["parsed"]) for e in kept] == [
        ("unmatched", "error", {"error": "RaiseError"})
    ]
    assert await rows(probes().bounce_events(conn)) == []

    env = subprocess_env(db_dsn)
    still = optout("inbound", "reapply", env=env)
    assert (still.returncode, still.stdout.strip()) == (
        1, "optout inbound reapply: 0 applied, 1 still failing",
    ), still.stderr  # fmt: skip
    await probes().mend_table(conn)
    done = optout("inbound", "reapply", env=env)
    assert (done.returncode, done.stdout.strip()) == (
        0, "optout inbound reapply: 1 applied, 0 still failing",
    ), done.stderr  # fmt: skip
    event = (await rows(probes().events(conn)))[0]
    assert (event["id"], event["kind"], event["outcome"], event["delivery_id"]) == (
        kept[0]["id"], "bounce", "permanent", delivery,
    )  # fmt: skip
    assert event["parsed"]["reapplied"] is True
    assert [b["delivery_id"] for b in await rows(probes().bounce_events(conn))] == [delivery]
    # Run again: nothing left to do, nothing applied twice.
    again = optout("inbound", "reapply", env=env)
    assert again.stdout.strip() == "optout inbound reapply: 0 applied, 0 still failing"
    assert len(await rows(probes().bounce_events(conn))) == 1


async def test_a_reply_to_a_test_send_changes_no_consent(world, conn, settings, db_dsn):
    """A test send's codes name subscriber 0: a reply to its unsubscribe address is recorded
    as a test-send reply (250), with no error and no consent change."""
    await world.person("ann@example.org")
    before = await probes().state_digest(conn)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, "staff@acme.example", [world.unsubscribe_address(0)], b"stop\r\n"
        )
    assert replies.data[0] == 250
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["subscriber_id"]) for e in events] == [
        ("unsubscribe", "test_send_reply", None)
    ]
    assert await probes().error_events(conn) == 0
