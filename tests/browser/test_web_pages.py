"""The public pages in Chromium, as a person uses them (JavaScript off: nothing needs it)."""

from __future__ import annotations

import email
import email.policy
import re

from mailer.db import create_pool
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.mailer_env import mail_settings
from tests.support.web import seed


async def test_landing_page_button_unsubscribes(page, web_server, web_settings, conn):
    world = await seed(conn)
    ada = world.subscribers[0]
    await page.goto(f"{web_settings.base_url}/u/{world.one_click(ada)}")
    assert await page.locator("h1").inner_text() == "Unsubscribe from Weekly news?"
    await page.get_by_role("button", name="Unsubscribe").click()
    await page.wait_for_selector("#done")
    assert await page.locator("#done").inner_text() == "You are unsubscribed"
    state = await probes().subscription_state(
        conn, subscriber_id=ada, topic_id=world.topics["news"]
    )
    assert state == "unsubscribed"


async def test_preference_centre_untick_save_reload(page, web_server, web_settings, conn):
    world = await seed(conn)
    ada = world.subscribers[0]
    url = f"{web_settings.base_url}/p/{world.preferences(ada)}"
    await page.goto(url)
    news = page.get_by_label("Weekly news")
    assert await news.is_checked()
    await news.uncheck()
    await page.get_by_role("button", name="Save my choices").click()
    await page.wait_for_selector("#notice")
    assert "saved" in await page.locator("#notice").inner_text()
    await page.reload()
    assert not await page.get_by_label("Weekly news").is_checked()
    assert await page.get_by_label("Special offers").is_checked()
    state = await probes().subscription_state(
        conn, subscriber_id=ada, topic_id=world.topics["news"]
    )
    assert state == "unsubscribed"


async def test_subscribe_read_the_mail_and_confirm(
    page, web_server, web_settings, conn, db_dsn, smtp_sink
):
    """Sign up, the real worker sends the confirmation into the capture SMTP server, open its
    link (which confirms nothing), press the button."""
    world = await seed(conn)
    await page.goto(f"{web_settings.base_url}/s/acme/news")
    await page.get_by_label("Email address").fill("reader@example.org")
    await page.get_by_label("I am over 13").check()
    await page.get_by_role("button", name="Subscribe").click()
    await page.wait_for_selector("#done")
    assert await page.locator("#done").inner_text() == "Check your inbox"

    pool = await create_pool(db_dsn, max_size=2)
    try:
        settings = mail_settings(web_settings, smtp_sink.port, allow_unsigned=True)
        await Worker(pool, settings).run(until_idle=True)
    finally:
        await pool.close()
    [message] = await smtp_sink.wait_for(1)
    assert message.rcpt_tos == ("reader@example.org",)
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    found = re.search(r"http://127\.0\.0\.1:\d+/c/[A-Za-z0-9_-]+", body.get_content())
    assert found, "no confirmation link in the mail"
    link = found.group(0)

    await page.goto(link)
    assert await page.locator("h1").inner_text() == "Confirm your subscription"
    row = await probes().web_state(conn)
    pending = [s for s in row["subscriptions"] if s["topic_id"] == world.topics["news"]]
    assert sorted(s["state"] for s in pending) == ["confirmed", "pending"]
    await page.get_by_role("button", name="Confirm my subscription").click()
    await page.wait_for_selector("#done")
    assert await page.locator("#done").inner_text() == "You are subscribed"
    row = await probes().web_state(conn)
    states = [s["state"] for s in row["subscriptions"] if s["topic_id"] == world.topics["news"]]
    assert states == ["confirmed", "confirmed"]
