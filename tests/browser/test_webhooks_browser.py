"""The workspace's webhooks pages in Chromium (issue 22): a client's staff adds an endpoint by
keyboard, pointing at a receiving aiohttp server on loopback, copies the secret shown once,
sends a test event that the standardwebhooks library verifies, sees it in the delivery log,
rotates the secret, and sees the failing state of an endpoint that refuses; every page passes
axe-core (STANDARDS 62) and reflows at 320 CSS px."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from standardwebhooks.webhooks import Webhook

from mailer.config import Settings
from tests.browser.test_workspace_browser import sign_in, staff_page, tab_to
from tests.support.axe import assert_accessible
from tests.support.staff import staff_probes
from tests.support.webhook_receiver import Receiver
from tests.support.workspace import Tenant, ready_tenant


@pytest.fixture
async def hook_settings(web_settings: Settings) -> Settings:
    """The development setting the events tests use: http to a loopback receiver."""
    return dataclasses.replace(
        web_settings, events=dataclasses.replace(web_settings.events, allow_http_loopback=True)
    )


@pytest.fixture
async def served_settings(hook_settings: Settings) -> Settings:
    return hook_settings


@pytest.fixture
async def acme(conn, hook_settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, hook_settings, tmp_path, "acme")


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    good, refusing = await Receiver().start(), await Receiver(status=503).start()
    try:
        yield good, refusing
    finally:
        await good.stop()
        await refusing.stop()


async def reflows(page: Page) -> None:
    """WCAG 1.4.10: at 320 CSS px nothing scrolls sideways."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 320, (page.url, width)


async def add_by_keyboard(page: Page, base: str, url: str) -> str:
    """Add an endpoint with the keyboard alone; the secret on the answer page."""
    await page.goto(f"{base}/dashboard/t/acme/webhooks")
    await tab_to(page, "url")
    await page.keyboard.type(url)
    await tab_to(page, "add-endpoint-button")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#secret")
    secret = await page.locator("#secret").input_value()
    assert secret.startswith("whsec_")
    return secret


async def test_a_client_adds_tests_rotates_and_sees_a_refusing_endpoint_fail(
    browser: Browser, server, hook_settings, acme, conn, receivers
):
    good, refusing = receivers
    base = hook_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["client"])
    await page.goto(f"{base}/dashboard/t/acme/webhooks")
    await assert_accessible(page)
    secret = await add_by_keyboard(page, base, good.url)
    await assert_accessible(page)
    # Shown once: the list and the endpoint's page never carry it.
    await page.goto(f"{base}/dashboard/t/acme/webhooks")
    assert secret not in await page.content()
    await page.get_by_role("link", name=good.url).click()
    await page.wait_for_selector("#endpoint-facts")
    assert secret not in await page.content()
    await assert_accessible(page)

    await tab_to(page, "send-test")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notice")
    [arrived] = good.received
    assert Webhook(secret).verify(arrived.body, arrived.headers)["type"] == "endpoint.test"
    first_row = page.locator("#delivery-log tbody tr").first
    assert await first_row.locator("td").nth(1).inner_text() == "test"
    assert await first_row.locator("td").nth(2).inner_text() == "204"
    await assert_accessible(page)

    # Rotation at 320 px: the new secret shown once, and the page still reflows.
    await page.set_viewport_size({"width": 320, "height": 640})
    await reflows(page)
    await page.get_by_role("button", name="Rotate the secret").click()
    await page.wait_for_selector("#overlap")
    rotated = await page.locator("#secret").input_value()
    assert rotated.startswith("whsec_") and rotated != secret
    await reflows(page)
    await assert_accessible(page)

    # An endpoint that refuses: the attempt logged as 503, then failing after a day.
    await page.set_viewport_size({"width": 1280, "height": 800})
    await add_by_keyboard(page, base, refusing.url)
    await page.get_by_role("link", name="Go to the endpoint").click()
    await page.get_by_role("button", name="Send a test event").click()
    await page.wait_for_selector("#notice")
    assert len(refusing.received) == 1
    row = page.locator("#delivery-log tbody tr").first
    assert await row.locator("td").nth(2).inner_text() == "503"
    assert await row.locator("td").nth(4).inner_text() == "http_503"
    endpoint_id = int(page.url.rsplit("/", 1)[1].split("?")[0])
    await staff_probes().endpoint_failing_for(conn, id=endpoint_id, hours=25)
    await page.goto(f"{base}/dashboard/t/acme/webhooks")
    state = page.locator(f"#endpoint-{endpoint_id} .endpoint-state")
    assert (await state.inner_text()).startswith("Failing since")
    await assert_accessible(page)
    await page.set_viewport_size({"width": 320, "height": 640})
    await reflows(page)
    await page.goto(f"{base}/dashboard/t/acme/webhooks/{endpoint_id}")
    await reflows(page)
    await page.context.close()
