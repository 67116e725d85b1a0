"""The data-subject journey in Chromium: from the preference centre ask for the data link, open
it from the mail the worker sent to the capture SMTP server, download the data, delete it."""

from __future__ import annotations

import email
import email.policy
import json
import re

from mailer.db import create_pool
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.mailer_env import mail_settings
from tests.support.web import seed


async def test_preference_centre_data_link_download_then_delete(
    page, web_server, web_settings, conn, db_dsn, smtp_sink
):
    """STANDARDS 39, 40"""
    world = await seed(conn)
    ada = world.subscribers[0]
    await page.goto(f"{web_settings.base_url}/p/{world.preferences(ada)}")
    await page.get_by_role("button", name="Email me a link to my data").click()
    await page.wait_for_selector("#notice")

    pool = await create_pool(db_dsn, max_size=2)
    try:
        settings = mail_settings(web_settings, smtp_sink.port, allow_unsigned=True)
        await Worker(pool, settings).run(until_idle=True)
    finally:
        await pool.close()
    [message] = await smtp_sink.wait_for(1)
    assert message.rcpt_tos == ("person0@example.org",)
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    found = re.search(r"http://127\.0\.0\.1:\d+/d/[A-Za-z0-9_-]+", body.get_content())
    assert found is not None
    link = found.group(0)

    await page.goto(link)
    assert await page.locator("h1").inner_text() == "Your data"
    await page.get_by_role("button", name="Show my data").click()
    await page.wait_for_selector("#download")
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download my data (JSON)").click()
    download = await info.value
    data = json.loads((await download.path()).read_text(encoding="utf-8"))
    assert data["profile"]["email"] == "person0@example.org"
    assert data["subscriptions"]

    await page.get_by_role("link", name="Delete my data").click()
    assert await page.locator("h1").inner_text() == "Delete your data?"
    assert (await probes().subscriber_row(conn, id=ada))["status"] == "active"
    await page.get_by_role("button", name="Yes, delete my data").click()
    await page.wait_for_selector("#done")
    assert await page.locator("#done").inner_text() == "Your data is deleted"
    row = await probes().subscriber_row(conn, id=ada)
    assert (row["status"], row["email"], row["name"]) == ("erased", None, None)

    await page.goto(link)  # the mailed link worked once
    assert "already used" in await page.locator("main").inner_text()
