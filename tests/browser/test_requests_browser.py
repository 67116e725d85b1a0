"""The request queue in Chromium as a compliance user: the queue and a request's page pass
axe-core (with an error shown too); a partner withdrawal mail matched to nobody is attached by
address, acted on and closed with its receipt, leaving a ledger row; another request is
rejected with a reason that is mailed."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import re
import smtplib
import uuid
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser

from mailer import api_tokens
from mailer.consent import writer as consent
from mailer.db import create_pool, queries
from mailer.sending.worker import Worker
from tests.browser.test_workspace_browser import sign_in, staff_page
from tests.conftest import probes
from tests.support.axe import assert_accessible
from tests.support.inbound_world import PARTNER, inbound_server, make_world
from tests.support.mailer_env import mail_settings
from tests.support.workspace import Tenant, ready_tenant


@pytest.fixture
async def acme(conn, web_settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, web_settings, tmp_path, "acme")


async def withdrawal(conn, t: Tenant, requester: str) -> int:
    """What confirming a partner-address claim leaves (mailer.inbound.claims)."""
    request_id: int = await queries().inbound.insert_partner_request(
        conn,
        tenant_id=t.id,
        requester=requester,
        received_at=dt.datetime.now(dt.UTC),
        detail={"partner_claim_id": 1, "confirmed_by": "mailbox"},
    )
    return request_id


async def test_compliance_attaches_and_closes_a_partner_withdrawal_and_rejects_another(
    browser: Browser, web_server, web_settings, acme, conn
):
    """STANDARDS 36, 62, 65"""
    base = web_settings.base_url
    person, address = next(iter(acme.people.items()))
    await consent.set_partner_consent(
        conn, tenant_id=acme.id, subscriber_id=person, granted=True, source="preference_centre"
    )
    first = await withdrawal(conn, acme, "old-name@example.net")
    second = await withdrawal(conn, acme, "someone@example.net")
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["compliance"])
    await page.get_by_role("link", name="Requests").click()
    assert await page.locator("h1").inner_text() == "Data requests"
    await assert_accessible(page)

    await page.get_by_role("link", name=f"Request {first}", exact=True).click()
    await assert_accessible(page)
    await page.get_by_label("Exact email address").fill("nobody@example.org")
    await page.get_by_role("button", name="Attach").click()
    assert "No subscriber has that address" in await page.locator("#form-error").inner_text()
    await assert_accessible(page)
    await page.get_by_label("Exact email address").fill(address)
    await page.get_by_role("button", name="Attach").click()
    assert "Attached" in await page.locator("#notice").inner_text()
    await page.get_by_role("button", name="Withdraw partner consent and close").click()
    assert (await page.locator("#request-status").inner_text()).startswith("done")
    receipt = await page.locator("#receipt").inner_text()
    assert "partner consent withdrawn" in receipt
    await assert_accessible(page)
    ledger = [dict(r) async for r in probes().partner_ledger(conn, subscriber_id=person)]
    assert ledger[-1]["action"] == "partner_withdraw"
    assert ledger[-1]["detail"]["data_request_id"] == first

    await page.goto(f"{base}/dashboard/t/acme/requests/{second}")
    reason = "The address that wrote to us does not match any subscriber."
    await page.get_by_label("Reason (mailed to the requester", exact=False).fill(reason)
    await page.get_by_role("button", name="Reject the request").click()
    assert await page.locator("#rejection-reason").inner_text() == reason
    [mail] = [d async for d in probes().transactional_to(conn, recipient="someone@example.net")]
    assert mail["template"] == "request_rejected" and mail["payload"]["reason"] == reason
    await page.get_by_role("link", name="All requests").click()
    closed = await page.locator("#closed-requests").inner_text()
    assert f"Request {first}" in closed and f"Request {second}" in closed
    await assert_accessible(page)


async def send_mail(db_dsn: str, settings, smtp_sink, total: int) -> list[tuple[str, str]]:
    """Run the worker until the outbox is empty; (recipient, plain text) of every message the
    sink holds, once it holds ``total``."""
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, mail_settings(settings, smtp_sink.port)).run(until_idle=True)
    finally:
        await pool.close()
    messages = await smtp_sink.wait_for(total)
    found = []
    for message in messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        body = parsed.get_body(("plain",))
        assert isinstance(body, EmailMessage)
        found.append((message.rcpt_tos[0], body.get_content()))
    return found


def link_in(text: str) -> str:
    found = re.search(r"http://127\.0\.0\.1:\d+/d/[A-Za-z0-9_-]+", text)
    assert found is not None, text
    return found.group(0)


async def test_each_persons_request_verified_by_their_link_then_acted_on_in_the_queue(
    browser: Browser, web_server, web_settings, acme, conn, db_dsn, smtp_sink
):
    """STANDARDS 38, 39, 40: staff record access, rectification and erasure; each person
    confirms from the mailed link; each action does its work and closes with a receipt."""
    base = web_settings.base_url
    (ann, ann_address), (bob, bob_address), (cy, cy_address) = list(acme.people.items())
    staff = await staff_page(browser, script=True)
    await sign_in(staff, base, acme.tokens["compliance"])
    for kind, address in (
        ("Access (a copy of the data)", ann_address),
        ("Rectification", bob_address),
        ("Erasure", cy_address),
    ):
        await staff.goto(f"{base}/dashboard/t/acme/requests")
        await staff.get_by_label("Kind").select_option(label=kind)
        await staff.get_by_label("The person's email address").fill(address)
        await staff.get_by_role("button", name="Record the request").click()
        assert "Request recorded" in await staff.locator("#notice").inner_text()
    ids = {r["subscriber_id"]: r["id"] async for r in probes().workspace_requests(conn)}
    assert set(ids) == {ann, bob, cy}

    # Each person confirms from the verification link mailed to them.
    person = await browser.new_page()
    for recipient, text in await send_mail(db_dsn, web_settings, smtp_sink, 3):
        assert recipient in (ann_address, bob_address, cy_address)
        await person.goto(link_in(text))
        await person.locator("#use-link").click()
    statuses = {r["id"]: r["status"] async for r in probes().workspace_requests(conn)}
    assert set(statuses.values()) == {"open"}

    await staff.goto(f"{base}/dashboard/t/acme/requests/{ids[ann]}")
    await staff.get_by_role("button", name="Mail the data link and close").click()
    assert "data link mailed" in await staff.locator("#receipt").inner_text()
    recipient, text = (await send_mail(db_dsn, web_settings, smtp_sink, 4))[-1]
    assert recipient == ann_address and "/d/" in text
    await person.goto(link_in(text))
    await person.locator("#use-link").click()
    assert await person.locator("h1").inner_text() == "Your data"

    await staff.goto(f"{base}/dashboard/t/acme/requests/{ids[bob]}")
    await staff.get_by_role("button", name="Apply the correction and close").click()
    assert "Give the correction" in await staff.locator("#form-error").inner_text()
    await assert_accessible(staff)
    await staff.get_by_label("Correct name").fill("Bob Builder")
    await staff.get_by_role("button", name="Apply the correction and close").click()
    assert "name corrected" in await staff.locator("#receipt").inner_text()
    assert (await probes().subscriber_row(conn, id=bob))["name"] == "Bob Builder"

    await staff.goto(f"{base}/dashboard/t/acme/requests/{ids[cy]}")
    await staff.get_by_role("button", name="Erase and close").click()
    assert "erasure receipt id" in await staff.locator("#receipt").inner_text()
    assert (await probes().subscriber_row(conn, id=cy))["status"] == "erased"
    await assert_accessible(staff)


async def test_a_clients_csv_from_the_api_is_acted_on_in_the_queue(
    browser: Browser, web_server, web_settings, acme, conn
):
    """A client's removal list: uploaded with the client's token, done by compliance."""
    base = web_settings.base_url
    (ann, ann_address), *_ = list(acme.people.items())
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{base}/api/v1/tenants/acme/client-removals",
            data=f"email\n{ann_address}\nnobody@example.org\n".encode(),
            headers={
                "Authorization": f"Bearer {acme.tokens['client']}",
                "Content-Type": "text/csv",
            },
        ) as response,
    ):
        created = await response.json()
        assert response.status == 201, created
    staff = await staff_page(browser, script=True)
    await sign_in(staff, base, acme.tokens["compliance"])
    await staff.goto(f"{base}/dashboard/t/acme/requests")
    assert "Client removal (2 addresses)" in await staff.locator("#open-requests").inner_text()
    await staff.get_by_role("link", name=f"Request {created['id']}", exact=True).click()
    await assert_accessible(staff)
    await staff.get_by_role("button", name="Remove and close").click()
    receipt = await staff.locator("#receipt").inner_text()
    assert "erased\t1" in receipt.replace("\n", "\t") or "erased 1" in receipt.replace("\n", " ")
    assert (await probes().subscriber_row(conn, id=ann))["status"] == "erased"


async def test_a_partner_withdrawal_mailed_and_confirmed_by_the_mailbox_is_done_in_the_queue(
    browser: Browser, web_server, web_settings, conn, db_dsn, dns_zone
):
    """STANDARDS 36, 58: mail to the partner address from an address we do not hold, whose
    domain's SPF passes through the loopback DNS, gets a confirmation; the mailbox confirms
    in the browser; compliance attaches the request by the person's address and closes it."""
    world = await make_world(conn, web_settings)
    person = await world.person("ann@example.org")
    await consent.set_partner_consent(
        conn, tenant_id=world.tenant_id, subscriber_id=person, granted=True, source="web_form"
    )
    domain = f"ok{uuid.uuid4().hex[:8]}.example"
    dns_zone.add_txt(domain, "v=spf1 ip4:127.0.0.1 -all")
    sender = f"ann.private@{domain}"
    message = (
        f"From: {sender}\r\nTo: {PARTNER}\r\nSubject: stop sharing\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@x>\r\n\r\nPlease stop sharing my address.\r\n"
    ).encode()
    async with inbound_server(web_settings, db_dsn) as inbound:
        await asyncio.to_thread(_send, inbound.port, sender, message)
    [mail] = [d async for d in probes().transactional_to(conn, recipient=sender)]
    assert mail["template"] == "confirm_claim"

    mailbox = await browser.new_page()
    await mailbox.goto(mail["payload"]["confirm_url"])
    await mailbox.get_by_role("button", name="Yes, this is my request").click()
    assert "confirmed" in await mailbox.locator("#done").inner_text()
    [request] = [r async for r in probes().workspace_requests(conn)]
    assert (request["kind"], request["status"], request["subscriber_id"]) == (
        "partner_withdrawal",
        "open",
        None,
    )

    token = await api_tokens.create_token(conn, role="compliance", tenant_id=world.tenant_id)
    staff = await staff_page(browser, script=True)
    base = web_settings.base_url
    await sign_in(staff, base, token.secret)
    await staff.goto(f"{base}/dashboard/t/acme/requests/{request['id']}")
    assert sender in await staff.locator("#request-requester").inner_text()
    await staff.get_by_label("Exact email address").fill("ann@example.org")
    await staff.get_by_role("button", name="Attach").click()
    await staff.get_by_role("button", name="Withdraw partner consent and close").click()
    assert "partner consent withdrawn" in await staff.locator("#receipt").inner_text()
    ledger = [dict(r) async for r in probes().partner_ledger(conn, subscriber_id=person)]
    assert [r["action"] for r in ledger] == ["partner_grant", "partner_withdraw"]
    assert ledger[-1]["detail"]["data_request_id"] == request["id"]


def _send(port: int, sender: str, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail(sender, [PARTNER], message)
