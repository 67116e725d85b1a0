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
    delivery = await world.delivery(campaign, ann)
    returned = world.message_id(delivery).encode()
    await complain(settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=returned)])
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
        delivery = await world.delivery(campaign, person)
        people.append(world.message_id(delivery).encode())
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
    delivery = await world.delivery(campaign, person)
    await probes().insert_sent_deliveries(
        conn, tenant_id=world.tenant_id, campaign_id=campaign, n=99
    )
    returned = world.message_id(delivery).encode()
    await complain(settings, db_dsn, [arf("yahoo_abuse_full.eml", message_id=returned)])
    assert (await probes().campaign(conn, id=campaign))["status"] == "sending"
    assert await rows(probes().alerts(conn, campaign_id=campaign)) == []
    event = (await rows(probes().events(conn)))[-1]
    assert event["parsed"]["campaign_rate"]["action"] == "below_minimum"
    assert event["outcome"] == "complaint"


async def test_forged_reports_by_guessed_message_id_or_address_change_nothing(
    world, conn, settings, db_dsn
):
    """DESIGN G7: 100 forged ARF reports, half naming a delivery by its guessable (pre-MAC)
    Message-ID, half by the recipient's address alone: no suppression, no ledger row, no
    complaint counted; each kept as unmatched with its reason. A genuine report quoting the
    real message's headers still suppresses."""
    campaign = await world.campaign("sending")
    guessed, addressed = [], []
    for n in range(100):
        address = f"walk{n}@example.org"
        person = await world.person(address, topics=[world.topic_id])
        old_form = f"<c{campaign}.s{person}@{DOMAIN}>"  # what deliveries carried before
        await world.delivery(campaign, person, message_id=old_form)
        raw = arf("yahoo_abuse_full.eml", message_id=old_form.encode())
        raw = raw.replace(b"rtaylor.fixture@yahoo.com", address.encode())
        if n % 2:
            guessed.append(raw)
        else:  # the returned headers carry no Message-ID: the address is all it names
            addressed.append(raw.replace(b"Message-ID: " + old_form.encode() + b"\r\n", b""))
    before = await probes().state_digest(conn)
    await complain(settings, db_dsn, guessed + addressed)
    assert await probes().state_digest(conn) == before
    events = await rows(probes().events(conn))
    reasons = [e["parsed"]["unmatched_reason"] for e in events]
    assert [(e["kind"], e["outcome"], e["delivery_id"]) for e in events] == [
        ("complaint", "unmatched", None)
    ] * 100
    # The fixture's VERP and List-Unsubscribe codes carry no valid MAC: they count for nothing.
    assert reasons == ["unsigned_message_id"] * 50 + ["recipient_only"] * 50
    counts = await probes().complaint_counts(conn, campaign_id=campaign)
    assert counts == 0

    # The genuine report: the headers of the message as the worker sent it.
    real = await world.person("real@example.org", topics=[world.topic_id])
    delivery = await world.delivery(campaign, real)
    sent = world.newsletter(real, "real@example.org", message_id=world.message_id(delivery))
    genuine = arf("yahoo_abuse_full.eml").split(b"Content-Type: message/rfc822")[0]
    genuine += (
        b"Content-Type: message/rfc822\r\n\r\n"
        + sent
        + b"\r\n------=_ARF_Part_0_1234567.1718100000000--\r\n"
    )
    await complain(settings, db_dsn, [genuine])
    await assert_suppressed_for_complaint(conn, settings, world, "real@example.org", real, campaign)
    last = (await rows(probes().events(conn)))[-1]
    assert (last["outcome"], last["delivery_id"]) == ("complaint", delivery)
    assert last["parsed"]["matched_by"] == "message_id"
    assert await probes().complaint_counts(conn, campaign_id=campaign) == 1


async def test_report_with_only_an_address_is_unmatched_recipient_only(
    world, conn, settings, db_dsn
):
    """No Message-ID, VERP or List-Unsubscribe of ours, only the recipient: nothing changes."""
    person = await world.person("only@example.org")
    await world.delivery(await world.campaign(), person)
    raw = arf("yahoo_abuse_full.eml").replace(b"rtaylor.fixture@yahoo.com", b"only@example.org")
    raw = raw.replace(b"Message-ID: <not-ours@elsewhere.example>\r\n", b"")
    before = await probes().state_digest(conn)
    await complain(settings, db_dsn, [raw])
    assert await probes().state_digest(conn) == before
    event = (await rows(probes().events(conn)))[0]
    assert (event["outcome"], event["parsed"]["unmatched_reason"]) == (
        "unmatched", "recipient_only",
    )  # fmt: skip


async def test_message_id_signed_with_a_retired_key_still_matches(world, conn, settings, db_dsn):
    """Verification tries every key in OPTOUT_SECRET_KEYS: a message sent before rotation."""
    import dataclasses

    from mailer.tokens import Keyring, message_id_for

    person = await world.person("rot@example.org")
    campaign = await world.campaign()
    delivery = await world.delivery(campaign, person)
    old_key = ("old1", b"o" * 32)
    old_id = message_id_for(Keyring([old_key]), world.tenant_id, delivery, DOMAIN)
    rotated = dataclasses.replace(
        settings, secret_keys=(("new1", b"n" * 32), old_key, *settings.secret_keys)
    )
    await complain(rotated, db_dsn, [arf("yahoo_abuse_full.eml", message_id=old_id.encode())])
    event = (await rows(probes().events(conn)))[0]
    assert (event["outcome"], event["delivery_id"]) == ("complaint", delivery)
