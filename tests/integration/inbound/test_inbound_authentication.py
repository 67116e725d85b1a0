"""Inbound mail authenticated the way receivers do it (DKIM, SPF, DMARC) against a real DNS
server on loopback; the result kept with the event and in the ledger's evidence; a
withdrawal honoured even unauthenticated, saying so; OPTOUT_FBL_DOMAINS for complaints."""

from __future__ import annotations

import dataclasses
import time
import uuid
from functools import cache

import dkim
import dns.resolver
import pytest

from mailer.consent import writer as consent
from mailer.inbound.authentication import LOOKUP_LIFETIME
from mailer.sending.dkim import generate_rsa_key_pem, public_key_dns_record
from tests.conftest import probes as web_probes
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

SELECTOR = "s1"


@cache
def key() -> bytes:
    return generate_rsa_key_pem()


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def fresh_domain(zone, *, spf: str | None = "v=spf1 ip4:127.0.0.1 -all", dmarc=True) -> str:
    """A domain of the test's own in the loopback zone: DKIM key, SPF and DMARC records."""
    domain = f"d{uuid.uuid4().hex[:10]}.example"
    zone.add_txt(f"{SELECTOR}._domainkey.{domain}", public_key_dns_record(key()))
    if spf:
        zone.add_txt(domain, spf)
    if dmarc:
        zone.add_txt(f"_dmarc.{domain}", "v=DMARC1; p=reject; rua=mailto:d@" + domain)
    return domain


def message(sender: str, *, sign_domain: str | None = None) -> bytes:
    raw = (
        f"From: {sender}\r\nTo: {PARTNER}\r\nSubject: stop sharing my data\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{sender.rpartition('@')[2]}>\r\n\r\n"
        "Please stop sharing my address with partners.\r\n"
    ).encode()
    if sign_domain:
        signature = dkim.sign(
            raw, SELECTOR.encode(), sign_domain.encode(), key(),
            include_headers=[b"from", b"to", b"subject", b"message-id"],
        )  # fmt: skip
        raw = signature + raw
    return raw


async def partner_person(world, conn, address):
    person = await world.person(address, topics=[world.topic_id])
    await consent.set_partner_consent(
        conn, tenant_id=world.tenant_id, subscriber_id=person, granted=True,
        source="preference_centre",
    )  # fmt: skip
    return person


async def last_withdrawal_evidence(conn):
    event = [e for e in await rows(probes().ledger(conn)) if e["action"] == "partner_withdraw"][-1]
    return (await web_probes().evidence(conn, id=event["evidence_id"]))["detail"]


async def test_an_aligned_dkim_signed_withdrawal_is_applied_with_its_authentication(
    world, conn, settings, db_dsn, dns_zone
):
    """DESIGN G7: DKIM, SPF and DMARC pass against the loopback DNS server; the withdrawal
    is applied at once and both the event and the ledger's evidence say how it was checked."""
    domain = fresh_domain(dns_zone)
    person = await partner_person(world, conn, f"ann@{domain}")
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, f"ann@{domain}", [PARTNER], message(f"ann@{domain}", sign_domain=domain)
        )
    assert replies.data[0] == 250
    subscriber = await probes().subscriber(conn, id=person)
    assert subscriber["partner_consent"] is False
    event = (await rows(probes().events(conn)))[-1]
    assert event["outcome"] == "withdrawn"
    expected = {
        "dkim": "pass", "dkim_domains": [domain], "spf": "pass", "spf_domain": domain,
        "dmarc": "pass", "dmarc_policy": "reject", "from_domain": domain,
        "aligned_domain": domain,
    }  # fmt: skip
    assert event["parsed"]["auth"] == expected
    detail = await last_withdrawal_evidence(conn)
    assert detail["auth"] == expected and detail["from_authenticated"] is True
    # Every lookup went to the loopback server (the guard fails any other).
    assert (f"{SELECTOR}._domainkey.{domain}", "TXT") in dns_zone.queries
    assert (f"_dmarc.{domain}", "TXT") in dns_zone.queries


async def test_an_unauthenticated_withdrawal_is_still_honoured_and_says_so(
    world, conn, settings, db_dsn, dns_zone
):
    """Withdrawing is the privacy-safe direction: a forged-looking From still withdraws (the
    worst a forger can do is stop sharing), and the evidence records that nothing passed."""
    domain = fresh_domain(dns_zone, spf="v=spf1 ip4:192.0.2.1 -all")
    person = await partner_person(world, conn, f"bob@{domain}")
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, f"bob@{domain}", [PARTNER], message(f"bob@{domain}")
        )
    assert replies.data[0] == 250
    assert (await probes().subscriber(conn, id=person))["partner_consent"] is False
    detail = await last_withdrawal_evidence(conn)
    assert detail["from_authenticated"] is False
    assert (detail["auth"]["dkim"], detail["auth"]["spf"], detail["auth"]["dmarc"]) == (
        "none", "fail", "fail",
    )  # fmt: skip


async def test_a_stalled_dns_server_gives_temperror_within_the_lookup_lifetime(
    world, conn, settings, db_dsn, dns_zone
):
    """Each lookup lives 3 s; a server that never answers makes the checks temperror, and
    the message is still recorded (the lookups happen before the transaction)."""
    domain = fresh_domain(dns_zone)
    dns_zone.stalled |= {domain, f"_dmarc.{domain}"}
    person = await partner_person(world, conn, f"cy@{domain}")
    started = time.monotonic()
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port, f"cy@{domain}", [PARTNER], message(f"cy@{domain}")
        )
    elapsed = time.monotonic() - started
    assert replies.data[0] == 250
    assert (await probes().subscriber(conn, id=person))["partner_consent"] is False
    auth = (await rows(probes().events(conn)))[-1]["parsed"]["auth"]
    assert (auth["spf"], auth["dmarc"]) == ("temperror", "temperror")
    # SPF (one TXT lookup) and DMARC (one): two lifetimes, not a hung session.
    assert LOOKUP_LIFETIME * 2 <= elapsed < LOOKUP_LIFETIME * 2 + 10


def test_no_lookup_may_reach_the_system_resolver():
    """The guard of the test set-up: dnspython's default resolver refuses to run."""
    with pytest.raises(AssertionError, match="outside the loopback"):
        dns.resolver.resolve("example.com", "A")


async def test_fbl_domains_decide_which_complaints_count_toward_the_pause_rate(
    world, conn, settings, db_dsn, dns_zone
):
    """OPTOUT_FBL_DOMAINS: a MAC-matched complaint DKIM-signed by a listed feedback loop
    counts toward the campaign's rate; the same report unsigned still suppresses the person
    (they did complain) but is not counted (anyone could have sent it)."""
    fbl = fresh_domain(dns_zone)
    inbound_settings = dataclasses.replace(settings.inbound, fbl_domains=(fbl,))
    fbl_settings = dataclasses.replace(settings, inbound=inbound_settings)
    campaign = await world.campaign()
    outcomes = []
    for n, signed in enumerate((True, False)):
        person = await world.person(f"c{n}@example.org", topics=[world.topic_id])
        delivery = await world.delivery(campaign, person)
        raw = fixture("arf", "redacted_recipient.eml").replace(
            b"bounces+abcdef234567@news.example.com", world.bounce_address(delivery).encode()
        )
        raw = raw.replace(b"From: ", b"X-Old-From: ", 1)
        raw = f"From: feedback@{fbl}\r\n".encode() + raw
        if signed:
            raw = (
                dkim.sign(raw, SELECTOR.encode(), fbl.encode(), key(), include_headers=[b"from"])
                + raw
            )
        async with inbound_server(fbl_settings, db_dsn) as inbound:
            replies = await send_smtplib(inbound.port, f"fbl@{fbl}", [f"fbl@{DOMAIN}"], raw)
        assert replies.data[0] == 250
        outcomes.append((await rows(probes().events(conn)))[-1]["outcome"])
    assert outcomes == ["complaint", "complaint_not_counted"]
    assert len(await rows(probes().suppressions(conn))) == 2
    assert await probes().complaint_counts(conn, campaign_id=campaign) == 1
