"""The README's five-minute tour, in Chromium, against `./dev demo` as a user starts it:
the outbox, the newsletter, its unsubscribe link, the dashboard; then the one-click button
of another message, exactly the POST a mail provider sends."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.support.demo_process import DemoProcess

pytestmark = pytest.mark.timeout(300)
PEOPLE = 12


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    process = DemoProcess(tmp_path / "data", subscribers=PEOPLE)
    process.start()
    process.wait_for_messages(2 * PEOPLE)  # the newsletter and the policy-version-2 notice
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, process.output


async def open_outbox(page: Page, demo: DemoProcess) -> None:
    await page.goto(f"{demo.base_url}/dev/outbox")
    assert await page.locator("h1").inner_text() == "Dev outbox"


async def log_in(page: Page, link: str, name: str) -> None:
    """Sign in with one of the demo's one-time links (a button, so link scanners spend none)."""
    await page.goto(link)
    await page.get_by_role("button", name=f"Sign in as {name}").click()
    await page.wait_for_url(re.compile(r"/dashboard(\?.*)?$"))
    assert f"Signed in as {name}" in await page.locator("main").inner_text()


async def unsubscribes_by_channel(page: Page) -> dict[str, int]:
    """The dashboard's count of unsubscribes per channel (last 30 days)."""
    counts = {}
    for item in await page.locator("#channels li").all_inner_texts():
        channel, _, count = item.rpartition(":")
        counts[channel.strip()] = int(count)
    return counts


async def test_the_tour(page: Page, demo: DemoProcess) -> None:
    """STANDARDS 8 and 12: the footer link's page and the one-click POST both unsubscribe."""
    await open_outbox(page, demo)
    newsletters = page.get_by_role("link", name=re.compile(r"^Demo news #1"))
    assert await newsletters.count() == PEOPLE

    # The newsletter as its recipient sees it, signed.
    await newsletters.first.click()
    assert "pass" in await page.locator("#dkim").inner_text()
    recipient = (await page.locator("code").nth(1).inner_text()).strip()

    # Its own unsubscribe link, inside the mail: the landing page opens in the whole tab.
    mail = page.frame_locator("#html-part")
    await mail.get_by_role("link", name="Unsubscribe").click()
    await page.wait_for_url(re.compile(r"/u/[A-Za-z0-9_-]+$"))
    assert await page.locator("h1").inner_text() == "Unsubscribe from Newsletter?"
    await page.get_by_role("button", name="Unsubscribe").click()
    await page.wait_for_selector("#done")
    assert await page.locator("#done").inner_text() == "You are unsubscribed"

    await log_in(page, demo.links["admin"], "Demo Admin")
    page_text = await page.locator("main").inner_text()
    assert "Demo newsletter #1" in page_text
    counts = await unsubscribes_by_channel(page)
    assert counts.get("landing_page") == 1, counts
    recent = page.locator("#recent-unsubscribes tbody tr")
    assert await recent.count() == 1
    first = await recent.first.inner_text()
    assert "Newsletter" in first and "landing_page" in first
    assert recipient[0] + "***@" in first  # the masked address of that recipient

    # Another message: the one-click button does the RFC 8058 POST a mail provider does.
    await open_outbox(page, demo)
    other = page.get_by_role("link", name=re.compile(r"^Demo news #1"))
    await other.nth(1).click()
    await page.locator("#one-click").click()
    assert "answered 200" in await page.locator("#result").inner_text()

    deadline = time.monotonic() + 20
    await page.goto(f"{demo.base_url}/dashboard")  # still signed in
    while (await unsubscribes_by_channel(page)).get("one_click") != 1:
        assert time.monotonic() < deadline, await page.locator("main").inner_text()
        await page.reload()
    assert (await unsubscribes_by_channel(page)).get("landing_page") == 1
    assert await page.locator("#recent-unsubscribes tbody tr").count() == 2

    # The marketer's link signs in once, with the marketing role in the demo tenant only.
    context = await page.context.browser.new_context()  # type: ignore[union-attr]
    marketer = await context.new_page()
    await log_in(marketer, demo.links["staff"], "Demo Marketer")
    assert "(marketing)" in await marketer.locator("main").inner_text()
    await marketer.goto(demo.links["staff"])
    assert "already used or has expired" in await marketer.locator("main").inner_text()
    await context.close()
