"""No floods of work with legal deadlines: partner withdrawals from unknown addresses are
claims, deduplicated per sender and rate-limited per tenant and sending host; only an
SPF- or DKIM-authenticated one gets a confirmation mail (at most once a week), and only a
confirmed one becomes a data request with a deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import smtplib
import uuid

import pytest

from mailer import api_tokens
from tests.conftest import probes as core_probes
from tests.support.inbound_world import PARTNER, inbound_server, make_world, probes, rows
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


def claim(sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {PARTNER}\r\nSubject: stop sharing\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@x>\r\n\r\nPlease stop sharing my address.\r\n"
    ).encode()


def send_many(port: int, senders: list[str]) -> list[int]:
    """Many transactions over few connections (as a flooding host would), in a thread."""
    codes = []
    for start in range(0, len(senders), 100):
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("flood.test")
            for sender in senders[start : start + 100]:
                client.mail(sender)
                client.rcpt(PARTNER)
                codes.append(client.data(claim(sender))[0])
    return codes


def limited(settings, per_tenant: int, per_host: int):
    inbound = dataclasses.replace(
        settings.inbound,
        claims_per_tenant_per_hour=per_tenant,
        claims_per_host_per_hour=per_host,
    )
    return dataclasses.replace(settings, inbound=inbound)


async def test_1000_unauthenticated_claims_open_no_request_and_send_no_mail(
    world, conn, settings, db_dsn
):
    """Issue 14: 1,000 mails from 1,000 invented addresses (no SPF, no DKIM): 0 requests
    with a deadline, 0 mails; what fits under the rate limits is listed for staff."""
    senders = [f"nobody{n}@invented-{n}.example" for n in range(1000)]
    async with inbound_server(limited(settings, 100, 50), db_dsn) as inbound:
        codes = await asyncio.to_thread(send_many, inbound.port, senders)
    assert codes == [250] * 1000  # accepted and kept: never a bounce to a forged sender
    assert await rows(probes().data_requests(conn)) == []
    assert await probes().delivery_count(conn) == 0
    claims = await rows(probes().claims(conn))
    assert len(claims) == 50  # the sending host's limit
    assert {c["status"] for c in claims} == {"listed"}
    outcomes = [e["outcome"] for e in await rows(probes().events(conn))]
    assert outcomes.count("claim_opened") == 50 and outcomes.count("rate_limited") == 950


async def test_1000_spf_passing_claims_send_at_most_the_configured_confirmations(
    world, conn, settings, db_dsn, dns_zone
):
    """Issue 14: SPF passes for each From's domain (the loopback DNS server says 127.0.0.1
    may send for it), yet at most the configured number of confirmation mails is queued,
    and still no request with a deadline."""
    domain = f"spf{uuid.uuid4().hex[:8]}.example"
    dns_zone.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all")
    senders = [f"person{n}@{domain}" for n in range(1000)]
    async with inbound_server(limited(settings, 30, 1000), db_dsn) as inbound:
        codes = await asyncio.to_thread(send_many, inbound.port, senders)
    assert codes == [250] * 1000
    confirmations = await rows(probes().confirmation_deliveries(conn))
    assert len(confirmations) == 30  # the tenant's limit per hour
    assert await rows(probes().data_requests(conn)) == []
    claims = await rows(probes().claims(conn))
    assert {(c["status"], c["authenticated"]) for c in claims} == {("awaiting_confirmation", True)}


async def test_a_sender_is_one_claim_and_one_confirmation_a_week(
    world, conn, settings, db_dsn, dns_zone
):
    domain = f"dup{uuid.uuid4().hex[:8]}.example"
    dns_zone.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all")
    sender = f"ann@{domain}"
    async with inbound_server(settings, db_dsn) as inbound:
        codes = await asyncio.to_thread(send_many, inbound.port, [sender] * 5)
        assert codes == [250] * 5
        claims = await rows(probes().claims(conn))
        assert [(c["claims"], c["status"]) for c in claims] == [(5, "awaiting_confirmation")]
        assert len(await rows(probes().confirmation_deliveries(conn))) == 1
        # Eight days later the same sender asks again: one more confirmation.
        await probes().age_claims(conn, days=8)
        await asyncio.to_thread(send_many, inbound.port, [sender])
    assert len(await rows(probes().confirmation_deliveries(conn))) == 2


async def test_a_confirmed_claim_becomes_a_request_with_its_deadline(
    world, conn, settings, db_dsn, dns_zone, aiohttp_client
):
    """The link in the confirmation mail: GET changes nothing, the POST opens the data
    request, due a month from the confirmation; a second POST opens nothing more."""
    domain = f"ok{uuid.uuid4().hex[:8]}.example"
    dns_zone.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all")
    async with inbound_server(settings, db_dsn) as inbound:
        await asyncio.to_thread(send_many, inbound.port, [f"dee@{domain}"])
    mail = (await rows(probes().confirmation_deliveries(conn)))[0]
    assert mail["recipient"] == f"dee@{domain}"
    url = mail["payload"]["confirm_url"]
    assert url.startswith(settings.base_url + "/claims/")
    path = url[len(settings.base_url) :]
    client = await aiohttp_client(create_app(settings))
    before = await core_probes().web_state(conn)
    page = await client.get(path)
    assert page.status == 200 and "Yes, this is my request" in await page.text()
    assert await core_probes().web_state(conn) == before
    assert await rows(probes().data_requests(conn)) == []
    for _ in range(2):
        done = await client.post(path)
        assert done.status == 200 and "confirmed" in await done.text()
    requests = await rows(probes().data_requests(conn))
    assert [(r["kind"], r["requester"], r["status"]) for r in requests] == [
        ("partner_withdrawal", f"dee@{domain}", "open")
    ]
    due = requests[0]["due_at"] - requests[0]["received_at"]
    assert dt.timedelta(days=28) <= due <= dt.timedelta(days=31)
    assert (await rows(probes().claims(conn)))[0]["status"] == "confirmed"
    # A tampered link opens nothing.
    assert (await client.post(path[:-2] + "AA")).status == 400


async def test_staff_see_listed_claims_without_a_deadline(
    world, conn, settings, db_dsn, aiohttp_client
):
    """Listed for staff: the API shows each claim, with no data request (so no deadline)
    until the mailbox confirms."""
    async with inbound_server(settings, db_dsn) as inbound:
        await asyncio.to_thread(send_many, inbound.port, ["who@nowhere.example"] * 2)
    token = await api_tokens.create_token(conn, role="compliance", tenant_id=world.tenant_id)
    client = await aiohttp_client(create_app(settings))
    response = await client.get(
        "/api/v1/tenants/acme/partner-claims", headers={"Authorization": f"Bearer {token.secret}"}
    )
    assert response.status == 200
    items = (await response.json())["items"]
    assert [
        (c["requester"], c["status"], c["claims"], c["data_request_id"], c["authenticated"])
        for c in items
    ] == [("who@nowhere.example", "listed", 2, None, False)]
