"""ARF complaints over SMTP: mapped by Message-ID, VERP code or List-Unsubscribe codes (also
with the recipient redacted), suppressing the person from all mail and counting toward the
campaign's complaint rate, which alerts and pauses past the thresholds."""

from __future__ import annotations

import re

import pytest

from mailer.addresses import suppression_key, tenant_hash_key
from tests.support.inbound_world import (
    DOMAIN,
    fixture,
    inbound_server,
    make_world,
    probes,
    rows,
    send_smtplib,
)

FAKE_VERP = b"bounces+abcdef234567@news.example.com"
RETURNED_ID = re.compile(rb"<c42\.s10\d\d@news\.example\.com>")


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def arf(
    name,
    *,
    message_id=b"<not-ours@elsewhere.example>",
    verp=None,
    one_click=None,
    mailto=None,
    report_id=None,
):
    """A fixture report whose returned headers carry our real identifiers (or none)."""
    raw = fixture("arf", name)
    raw = RETURNED_ID.sub(message_id, raw)
    if verp is not None:
        raw = raw.replace(FAKE_VERP, verp.encode())
    if one_click is not None:
        raw = re.sub(rb"https://news\.example\.com/u/[A-Za-z0-9_-]+", one_click.encode(), raw)
    if mailto is not None:
        raw = re.sub(rb"unsubscribe\+[a-z0-9]+@news\.example\.com", mailto.encode(), raw)
    if report_id is not None:  # a different report about the same message
        raw = raw.replace(b"Subject: ", b"Message-ID: " + report_id.encode() + b"\r\nSubject: ", 1)
    return raw


async def complain(settings, db_dsn, raws, rcpt=f"complaints@{DOMAIN}", **limits):
    async with inbound_server(settings, db_dsn, **limits) as inbound:
        for raw in raws:
            replies = await send_smtplib(inbound.port, "fbl@isp.example", [rcpt], raw)
            assert replies.rcpt[0][0] == 250
            assert replies.data[0] == 250, replies.data


async def assert_suppressed_for_complaint(conn, settings, world, address, subscriber, campaign):
    key = suppression_key(tenant_hash_key(settings.hash_key, world.tenant_id), address)
    suppressions = await rows(probes().suppressions(conn))
    assert [(bytes(s["address_key"]), s["scope"], s["reason"]) for s in suppressions] == [
        (key, "all", "complaint")
    ]
    event = (await rows(probes().ledger(conn)))[-1]
    assert (event["subscriber_id"], event["action"], event["source"], event["campaign_id"]) == (
        subscriber, "suppress", "complaint", campaign,
    )  # fmt: skip


async def test_complaint_maps_by_returned_message_id(world, conn, settings, db_dsn):
    """STANDARDS 49: a fixture ARF report suppresses the person it is about (scope all)."""
    address = "rtaylor.fixture@yahoo.com"
    ann = await world.person(address)
    campaign = await world.campaign()
    delivery = await world.delivery(campaign, ann, message_id="<c9.s9@news.example.com>")
    await complain(
        settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=b"<c9.s9@news.example.com>")]
    )
    await assert_suppressed_for_complaint(conn, settings, world, address, ann, campaign)
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"], e["delivery_id"], e["subscriber_id"]) for e in events] == [
        ("complaint", "complaint", delivery, ann)
    ]
    assert events[0]["parsed"]["matched_by"] == "message_id"
    assert events[0]["parsed"]["feedback_type"] == "abuse"


async def test_redacted_recipient_maps_by_verp_code(world, conn, settings, db_dsn):
    """The recipient is redacted and the Message-ID is not ours: the VERP code decides."""
    address = "ann@example-isp.net"
    ann = await world.person(address)
    campaign = await world.campaign()
    delivery = await world.delivery(campaign, ann)
    raw = arf("redacted_recipient.eml", verp=world.bounce_address(delivery))
    assert b"redacted@example-isp.net" in raw
    await complain(settings, db_dsn, [raw], rcpt=f"fbl@{DOMAIN}")
    await assert_suppressed_for_complaint(conn, settings, world, address, ann, campaign)
    event = (await rows(probes().events(conn)))[0]
    assert (event["delivery_id"], event["parsed"]["matched_by"]) == (delivery, "verp")


@pytest.mark.parametrize("code", ["mailto", "one_click"])
async def test_redacted_headers_only_report_maps_by_list_unsubscribe(
    code, world, conn, settings, db_dsn
):
    """No Message-ID or VERP of ours: the List-Unsubscribe code of the returned headers."""
    address = "carl@mailbox.example"
    carl = await world.person(address)
    campaign = await world.campaign()
    delivery = await world.delivery(campaign, carl)
    if code == "mailto":
        raw = arf("headers_only.eml", mailto=world.unsubscribe_address(carl))
    else:
        raw = arf("headers_only.eml", one_click=world.one_click_url(carl))
    await complain(settings, db_dsn, [raw])
    await assert_suppressed_for_complaint(conn, settings, world, address, carl, campaign)
    event = (await rows(probes().events(conn)))[0]
    assert (event["delivery_id"], event["parsed"]["matched_by"]) == (delivery, "list_unsubscribe")


@pytest.mark.parametrize(
    "name, outcome",
    [("missing_version_user_agent.eml", "held"), ("not_spam.eml", "not_spam")],
)
async def test_malformed_or_not_spam_reports_change_nothing(
    name, outcome, world, conn, settings, db_dsn
):
    """STANDARDS 49: a report missing required fields is held, not acted on; not-spam is no
    complaint. Both are kept for inspection."""
    person = await world.person("upton@smallisp.example")
    delivery = await world.delivery(await world.campaign(), person)
    before = await probes().state_digest(conn)
    await complain(settings, db_dsn, [arf(name, verp=world.bounce_address(delivery))])
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["kind"], e["outcome"]) for e in events] == [("complaint", outcome)]
    assert events[0]["raw"] is not None


async def test_complaint_matching_nobody_is_kept_unmatched(world, conn, settings, db_dsn):
    await world.person("someone@example.org")
    before = await probes().state_digest(conn)
    await complain(settings, db_dsn, [arf("yahoo_abuse_full.eml")])
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    assert [(e["outcome"], e["tenant_id"]) for e in events] == [("unmatched", world.tenant_id)]


async def test_complaint_rate_alerts_then_pauses_a_running_campaign(world, conn, settings, db_dsn):
    """STANDARDS 28: above 0.1% an alert, above 0.3% the campaign pauses and says why; tested
    with the minimum lowered to 100 deliveries."""
    campaign = await world.campaign("sending")
    people = []
    for n in range(3):
        person = await world.person(f"p{n}@example.org")
        message_id = f"<c{campaign}.s{person}@news.example.com>"
        await world.delivery(campaign, person, message_id=message_id)
        people.append(message_id.encode())
    await probes().insert_sent_deliveries(
        conn, tenant_id=world.tenant_id, campaign_id=campaign, n=497
    )
    limits = {"complaint_min_deliveries": 100}

    # 1 of 500 = 0.2%: alert, keep sending.
    await complain(settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=people[0])], **limits)
    assert (await probes().campaign(conn, id=campaign))["status"] == "sending"
    assert [a["action"] for a in await rows(probes().alerts(conn, campaign_id=campaign))] == [
        "complaint_rate_alert"
    ]
    # The same person complaining again does not count twice.
    again = arf("yahoo_abuse_full.eml", message_id=people[0], report_id="<again@isp.example>")
    await complain(settings, db_dsn, [again], **limits)
    assert (await probes().campaign(conn, id=campaign))["status"] == "sending"

    # 2 of 500 = 0.4%: pause, with the reason.
    await complain(settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=people[1])], **limits)
    paused = await probes().campaign(conn, id=campaign)
    assert paused["status"] == "paused"
    assert "complaint rate 0.40%" in paused["pause_reason"]
    actions = [a["action"] for a in await rows(probes().alerts(conn, campaign_id=campaign))]
    assert actions == ["complaint_rate_alert", "complaint_rate_pause"]
    event = (await rows(probes().events(conn)))[-1]
    assert event["parsed"]["campaign_rate"]["action"] == "pause"
    assert event["parsed"]["campaign_rate"]["complained"] == 2


async def test_no_alert_or_pause_before_the_minimum_deliveries(world, conn, settings, db_dsn):
    campaign = await world.campaign("sending")
    person = await world.person("p@example.org")
    await world.delivery(campaign, person, message_id="<c1.s1@news.example.com>")
    await probes().insert_sent_deliveries(
        conn, tenant_id=world.tenant_id, campaign_id=campaign, n=99
    )
    await complain(
        settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=b"<c1.s1@news.example.com>")]
    )
    assert (await probes().campaign(conn, id=campaign))["status"] == "sending"
    assert await rows(probes().alerts(conn, campaign_id=campaign)) == []
    event = (await rows(probes().events(conn)))[-1]
    assert event["parsed"]["campaign_rate"]["action"] == "below_minimum"
    assert event["outcome"] == "complaint"
