"""The request queue in Chromium as a compliance user: the queue and a request's page pass
axe-core (with an error shown too); a partner withdrawal mail matched to nobody is attached by
address, acted on and closed with its receipt, leaving a ledger row; another request is
rejected with a reason that is mailed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from playwright.async_api import Browser

from mailer.consent import writer as consent
from mailer.db import queries
from tests.browser.test_workspace_browser import sign_in, staff_page
from tests.conftest import probes
from tests.support.axe import assert_accessible
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
    await page.goto(f"{base}/dashboard/t/acme/requests")
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
