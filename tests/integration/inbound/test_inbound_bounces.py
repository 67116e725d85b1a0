"""Bounces to VERP addresses over SMTP: every DSN fixture maps to the right delivery,
recipient, action and status, and the single bounce policy acts as configured."""

from __future__ import annotations

import pytest

from mailer.addresses import suppression_key, tenant_hash_key
from tests.support.inbound_world import (
    fixture,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)
from tests.unit.inbound.test_bounce_parse import EXPECTED

IMMEDIATE = {"5.1.1", "5.1.10"}


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def key(settings, tenant_id, address):
    return suppression_key(tenant_hash_key(settings.hash_key, tenant_id), address)


async def bounce(world, conn, settings, db_dsn, raw, address):
    """Subscribe ``address``, mail it in a campaign, send ``raw`` back to its VERP address."""
    subscriber = await world.person(address, topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
    assert replies.rcpt[0][0] == 250
    assert replies.data[0] == 250, replies.data
    return subscriber, delivery


RECOGNISED_FAILURES = sorted(
    name for name, (ok, _k, recipients, _m) in EXPECTED.items()
    if ok and any(action in ("failed", "delayed") for _r, action, _s, _p in recipients)
)  # fmt: skip


def test_enough_real_world_shaped_fixtures():
    styles = {name.split("_")[0] for name in RECOGNISED_FAILURES}
    assert len(RECOGNISED_FAILURES) >= 15
    assert {"postfix", "exim", "exchange", "gmail", "yahoo", "qmail"} <= styles


async def test_each_dsn_maps_to_its_delivery_and_the_policy_acts(world, conn, settings, db_dsn):
    """STANDARDS 47, 48: for every fixture, recipient, action and status reach the policy
    against the exact delivery; 5.1.1/5.1.10 suppress at once, 5.7.x only alerts, delayed
    never suppresses. One database and one server for all of them, to keep the suite fast."""
    sent = {}
    async with inbound_server(settings, db_dsn) as inbound:
        for name in RECOGNISED_FAILURES:
            address = EXPECTED[name][2][0][0]
            subscriber = await world.person(address, topics=[world.topic_id])
            delivery = await world.delivery(await world.campaign(), subscriber)
            replies = await send_smtplib(
                inbound.port, "", [world.bounce_address(delivery)], fixture("dsn", name)
            )
            assert (replies.rcpt[0][0], replies.data[0]) == (250, 250), name
            sent[name] = (subscriber, delivery)

    events = {e["delivery_id"]: e for e in await rows(probes().events(conn))}
    bounces = {b["delivery_id"]: b for b in await rows(probes().bounce_events(conn))}
    assert len(events) == len(bounces) == len(RECOGNISED_FAILURES)
    suppressed_keys = {
        (bytes(s["address_key"]), s["scope"], s["reason"])
        for s in await rows(probes().suppressions(conn))
    }
    expected_keys = set()
    for name in RECOGNISED_FAILURES:
        _ok, _kind, recipients, message_id = EXPECTED[name]
        address, action, status, permanent = recipients[0]
        subscriber, delivery = sent[name]
        event = events[delivery]
        assert (event["kind"], event["subscriber_id"]) == ("bounce", subscriber), name
        final = action == "failed"
        expected_outcome = "permanent" if permanent else "soft" if final else "transient"
        assert event["outcome"] == expected_outcome, name
        applied = event["parsed"]["applied"]
        got = (applied["recipient"], applied["action"], applied["status"], applied["permanent"])
        assert got == (address, action, status, permanent), name
        assert event["parsed"]["original_message_id"] == message_id, name
        assert event["raw"] == fixture("dsn", name), name
        bounce_row = bounces[delivery]
        assert (
            bounce_row["status"], bounce_row["permanent"], bounce_row["final"], bounce_row["source"]
        ) == (status, permanent, final, "dsn"), name  # fmt: skip
        assert bytes(bounce_row["address_key"]) == key(settings, world.tenant_id, address), name
        decision = event["parsed"]["decision"]["action"]
        # A status derived from words (issue 23) waits for a second failure; given ones don't.
        if permanent and status in IMMEDIATE and not applied["derived"]:
            assert decision == "suppress", name
            expected_keys.add((key(settings, world.tenant_id, address), "all", "hard_bounce"))
        elif permanent and status and status.startswith("5.7."):
            assert decision == "alert", name
        else:
            assert decision == "record", name
    assert suppressed_keys == expected_keys


async def test_other_permanent_failures_suppress_on_the_second_within_the_window(
    world, conn, settings, db_dsn
):
    """STANDARDS 48: a permanent failure other than 5.1.1 suppresses only when it persists."""
    raw = fixture("dsn", "exchange_5_4_1_access_denied.eml")
    address = "fgarcia@fabrikam.com"
    subscriber = await world.person(address, topics=[world.topic_id])
    first = await world.delivery(await world.campaign(), subscriber)
    second = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn) as inbound:
        await send_smtplib(inbound.port, "", [world.bounce_address(first)], raw)
        assert await rows(probes().suppressions(conn)) == []
        await send_smtplib(inbound.port, "", [world.bounce_address(second)], raw)
    suppressions = await rows(probes().suppressions(conn))
    assert [(s["scope"], s["reason"]) for s in suppressions] == [("all", "hard_bounce")]
    ledger = await rows(probes().ledger(conn))
    assert [(e["action"], e["source"]) for e in ledger][-1] == ("suppress", "bounce")


async def test_final_failures_with_a_temporary_cause_are_soft_bounces(
    world, conn, settings, db_dsn
):
    """Issue 14: a DSN with Action failed and a 4.x.x status, and qmail's "not going to try
    again", are final, not delays: each counts as a soft bounce (0.6 of a hard one), so the
    third in a row suppresses the address, where delays never would."""
    subscriber = await world.person("ovega@down.example", topics=[world.topic_id])
    decisions = []
    async with inbound_server(settings, db_dsn) as inbound:
        for name in ("qmail_gave_up_4_4_2.eml", "postfix_failed_4_4_1_expired.eml") * 2:
            raw = fixture("dsn", name).replace(b"asmith@slow.example", b"ovega@down.example")
            delivery = await world.delivery(await world.campaign(), subscriber)
            await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
            event = (await rows(probes().events(conn)))[-1]
            assert (event["outcome"], event["parsed"]["applied"]["final"]) == ("soft", True)
            decisions.append(event["parsed"]["decision"]["action"])
    assert decisions == ["record", "record", "suppress", "suppress"]
    suppressions = await rows(probes().suppressions(conn))
    assert [(s["scope"], s["reason"]) for s in suppressions] == [("all", "hard_bounce")]


async def test_delayed_never_suppresses_however_often(world, conn, settings, db_dsn):
    """STANDARDS 48: `delayed` reports never suppress by themselves."""
    raw = fixture("dsn", "postfix_4_4_1_delayed.eml")
    subscriber = await world.person("asmith@slow.example", topics=[world.topic_id])
    async with inbound_server(settings, db_dsn) as inbound:
        for _ in range(3):
            delivery = await world.delivery(await world.campaign(), subscriber)
            await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
    assert len(await rows(probes().bounce_events(conn))) == 3
    assert await rows(probes().suppressions(conn)) == []


@pytest.mark.parametrize(
    "name, outcome",
    [("no_delivery_status_part.eml", "unparsed"), ("delivered_success.eml", "not_a_failure")],
)
async def test_bounces_that_are_not_failures_change_nothing_but_are_kept(
    name, outcome, world, conn, settings, db_dsn
):
    """A DSN without a delivery-status part, or a success notice: kept, nothing changed."""
    subscriber = await world.person("qchen@example.net", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    before = await probes().state_digest(conn)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, "", [world.bounce_address(delivery)], fixture("dsn", name)
        )
    assert replies.data[0] == 250
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["delivery_id"]) for e in events] == [
        ("bounce", outcome, delivery)
    ]
    assert events[0]["raw"] == fixture("dsn", name)


async def test_dsn_for_an_unknown_delivery_is_kept_unmatched(world, conn, settings, db_dsn):
    """A genuine code whose delivery does not exist (any more): 250, kept, nothing changed."""
    await world.person("jdoe@example.net", topics=[world.topic_id])
    before = await probes().state_digest(conn)
    raw = fixture("dsn", "postfix_5_1_1_user_unknown.eml")
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [world.bounce_address(987654)], raw)
    assert replies.data[0] == 250
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["outcome"], e["delivery_id"], e["tenant_id"]) for e in events] == [
        ("unknown_delivery", None, world.tenant_id)
    ]
