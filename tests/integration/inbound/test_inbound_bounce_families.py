"""Every family's fixture through the inbound server to a VERP address: recorded against the
delivery the VERP names, with its status, and the policy's action is what the fixture
states: a given 5.1.1 suppresses at once, a derived one only on the second failure, 5.7.x
alerts, anything else is counted."""

from __future__ import annotations

import re

import pytest

from tests.support.inbound_world import inbound_server, make_world, probes, rows, send_smtplib
from tests.unit.inbound.test_bounce_families import FAMILIES, FIXTURES


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def wire(name: str) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", (FIXTURES / name).read_bytes())


def person_for(index: int, recipient: str, used: set[str]) -> str:
    """The fixture's recipient where it is an address a subscriber can have and no other
    fixture used (each fixture's failures must count alone); else one of our own."""
    plain = re.fullmatch(r"[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]+", recipient, re.I)
    if plain and ".." not in recipient and recipient.lower() not in used:
        used.add(recipient.lower())
        return recipient
    return f"family{index}@example.org"


def expected_action(status: str, derived: bool, permanent: bool) -> str:
    if permanent and status.startswith("5.7."):
        return "alert"
    if permanent and status in ("5.1.1", "5.1.10") and not derived:
        return "suppress"  # 5.1.10: Exchange Online's "recipient not found"
    return "record"  # a derived 5.1.1 waits for a second failure; others are counted


async def test_each_family_is_recorded_against_its_delivery_and_the_policy_acts(
    world, conn, settings, db_dsn
):
    sent = {}
    used: set[str] = set()
    async with inbound_server(settings, db_dsn) as inbound:
        for index, name in enumerate(sorted(FAMILIES)):
            address = person_for(index, FAMILIES[name][1], used)
            subscriber = await world.person(address, topics=[world.topic_id])
            delivery = await world.delivery(await world.campaign(), subscriber)
            replies = await send_smtplib(
                inbound.port, "", [world.bounce_address(delivery)], wire(name)
            )
            assert (replies.rcpt[0][0], replies.data[0]) == (250, 250), name
            sent[delivery] = name
    events = {e["delivery_id"]: e for e in await rows(probes().events(conn))}
    bounces = {b["delivery_id"]: b for b in await rows(probes().bounce_events(conn))}
    assert set(bounces) == set(sent)  # every one recorded, each against its own delivery
    for delivery, name in sent.items():
        _reader, _recipient, status, derived, permanent = FAMILIES[name]
        event = events[delivery]
        assert event["outcome"] == ("permanent" if permanent else "soft"), name
        applied = event["parsed"]["applied"]
        assert (applied["status"], applied["derived"]) == (status, derived), name
        assert (bounces[delivery]["status"], bounces[delivery]["final"]) == (status, True), name
        decision = event["parsed"]["decision"]["action"]
        assert decision == expected_action(status, derived, permanent), name


async def test_a_derived_unknown_user_suppresses_on_the_second_bounce(
    world, conn, settings, db_dsn
):
    """Issue 23: a 5.1.1 read from words waits for OPTOUT_BOUNCE_DERIVED_5_1_1_AFTER (2)."""
    name = "synthetic/opensmtpd_550_unknown_user.eml"
    subscriber = await world.person("mwhite@example.net", topics=[world.topic_id])
    first = await world.delivery(await world.campaign(), subscriber)
    second = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn) as inbound:
        await send_smtplib(inbound.port, "", [world.bounce_address(first)], wire(name))
        assert await rows(probes().suppressions(conn)) == []
        await send_smtplib(inbound.port, "", [world.bounce_address(second)], wire(name))
    [suppression] = await rows(probes().suppressions(conn))
    assert (suppression["scope"], suppression["reason"]) == ("all", "hard_bounce")


async def test_with_the_setting_at_one_a_derived_unknown_user_suppresses_at_once(
    world, conn, settings, db_dsn
):
    name = "synthetic/docomo_iso2022jp_unknown_user.eml"
    subscriber = await world.person("hanako-fixture@docomo.ne.jp", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn, derived_unknown_after=1) as inbound:
        await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], wire(name))
    assert len(await rows(probes().suppressions(conn))) == 1
