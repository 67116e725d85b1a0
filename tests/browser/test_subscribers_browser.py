"""Issue 17's acceptance flow in Chromium, as a marketing user and nothing by CLI: a template
from the built-in one, edited, sent as a campaign's layout (it reaches the SMTP server with
the edit); a person found by address, their page, an unsubscribe from a topic (one ledger row
naming the staff actor); a CSV of 1,000 rows with 10 bad uploaded, its page polling while it
runs, and the report of the 10 downloaded. axe-core on every new page (STANDARDS 62)."""

from __future__ import annotations

import asyncio
import csv
import email
import email.policy
import io
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from mailer import api_tokens
from mailer.config import Settings
from tests.browser.test_workspace_browser import running_worker, sign_in, staff_page, wait_until
from tests.conftest import probes
from tests.support.axe import assert_accessible
from tests.support.mailer_env import mail_settings
from tests.support.workspace import BODY, Tenant, ready_tenant

AUDIENCE = 3
ROWS = 1000
BAD = 10
MARK = "Spring look, edited in the browser"


@pytest.fixture
async def ws_settings(web_settings: Settings, smtp_sink) -> Settings:
    return mail_settings(web_settings, smtp_sink.port)


@pytest.fixture
async def served_settings(ws_settings: Settings) -> Settings:
    """The app serves with the mail settings (conftest's ``server``)."""
    return ws_settings


@pytest.fixture
async def acme(conn, ws_settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, ws_settings, tmp_path, "acme", people=AUDIENCE)


def people_csv(path: Path) -> Path:
    """ROWS rows; every hundredth a broken address (the first of them a formula)."""
    lines = ["email,name"]
    for i in range(ROWS):
        if i % (ROWS // BAD) == ROWS // BAD - 1:
            lines.append(("=HYPERLINK(1)" if i < ROWS // BAD else f"broken-{i}") + ",Bad")
        else:
            lines.append(f"fair{i}@example.org,Guest {i}")
    path.write_text("\n".join(lines) + "\n")
    return path


async def make_template(page: Page, base: str) -> None:
    await page.goto(f"{base}/dashboard/t/acme/templates")
    await page.get_by_label("Name").fill("Spring look")
    await page.get_by_role("button", name="Create from the built-in newsletter").click()
    await page.wait_for_selector("#notice")
    html = await page.get_by_label("HTML part").input_value()
    await page.get_by_label("HTML part").fill(
        html.replace("{{ body_html }}", f"<p>{MARK}</p>\n{{{{ body_html }}}}")
    )
    await page.get_by_role("button", name="Save as a new version").click()
    await page.wait_for_selector("#notice")


async def send_campaign(page: Page, base: str) -> None:
    await page.get_by_role("link", name="Campaigns").click()
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Campaign name").fill("Spring")
    await page.get_by_label("Topic").select_option("newsletter")
    await page.get_by_label("Layout").select_option(label="Spring look (version 2)")
    await page.get_by_label("Subject", exact=True).fill("Spring news")
    await page.get_by_label("Markdown").check()
    await page.get_by_label("Body", exact=True).fill(BODY)
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_selector("#ready")
    await page.get_by_role("button", name="Send now").click()
    await page.wait_for_selector("#notice")


async def test_a_marketer_templates_sends_finds_unsubscribes_and_imports_in_the_browser(
    browser: Browser, server, ws_settings, acme, conn, db_dsn, smtp_sink, tmp_path
):
    base = ws_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["marketing"])

    # A template from the built-in one, edited, laid around a campaign that is sent.
    await make_template(page, base)
    async with running_worker(db_dsn, ws_settings):
        await send_campaign(page, base)
        messages = await smtp_sink.wait_for(AUDIENCE, timeout=30)
    for message in messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        html = parsed.get_body(("html",))
        assert html is not None and MARK in html.get_content()

    # A person found by address; their page; unsubscribed from the topic.
    person, address = min(acme.people.items())
    await page.get_by_role("link", name="Subscribers").click()
    await assert_accessible(page)
    await page.get_by_label("Exact email address or subscriber id").fill(address.upper())
    await page.get_by_role("button", name="Find").click()
    await assert_accessible(page)
    await page.get_by_role("link", name=f"#{person}").click()
    await page.wait_for_selector("#person")
    assert await page.locator("#address").inner_text() == address
    assert "Spring" in await page.locator("#deliveries").inner_text()
    await assert_accessible(page)
    await page.get_by_role("button", name="Unsubscribe from Newsletter").click()
    await page.wait_for_selector("#notice")
    state = page.locator("#topic-newsletter [data-field=state]")
    assert await state.inner_text() == "unsubscribed"
    await assert_accessible(page)
    marketer = (await api_tokens.authenticate(conn, f"Bearer {acme.tokens['marketing']}")).actor
    rows = [dict(r) async for r in probes().staff_ledger_rows(conn, subscriber_id=person)]
    assert rows == [
        {"action": "unsubscribe", "topic_id": acme.topic_id, "source": "staff", "actor": marketer}
    ]

    # A CSV of 1,000 rows with 10 bad: its page while it runs, then the report of the 10.
    await page.get_by_role("link", name="Imports").click()
    await assert_accessible(page)
    await page.get_by_label("Topic").select_option("newsletter")
    await page.get_by_label("Lawful basis").select_option("consent")
    await page.get_by_label("Where the list comes from").fill("Spring fair")
    await page.get_by_label("Everyone in the file is above").check()
    await page.get_by_label("CSV file", exact=True).set_input_files(
        people_csv(tmp_path / "fair.csv")
    )
    await page.get_by_role("button", name="Upload and import").click()
    await page.wait_for_selector("#progress")
    await wait_until(page, "document.getElementById('status').textContent === 'done'", 60)
    assert await page.locator("[data-field=rejected]").inner_text() == str(BAD)
    assert await page.locator("[data-field=imported]").inner_text() == str(ROWS - BAD)
    await assert_accessible(page)
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download the report of rejected rows").click()
    download = await download_info.value
    report = await asyncio.to_thread(Path(await download.path()).read_text)
    rows_bad = list(csv.DictReader(io.StringIO(report)))
    assert len(rows_bad) == BAD
    assert [int(r["line"]) for r in rows_bad] == [1 + 100 * k for k in range(1, BAD + 1)]
    await page.context.close()


async def test_the_suppression_page_passes_axe_and_works_by_keyboard(
    browser: Browser, server, ws_settings, acme, tmp_path
):
    """STANDARDS 62 for the compliance role's page: upload a list by keyboard alone."""
    base = ws_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["compliance"])
    await page.goto(f"{base}/dashboard/t/acme/suppressions")
    await assert_accessible(page)
    listing = tmp_path / "gone.csv"
    listing.write_text("email\ngone@example.org\n")
    await page.locator("#suppress-file").set_input_files(listing)
    await page.get_by_label("Reason", exact=True).focus()
    await page.keyboard.press("Tab")  # the file field
    await page.keyboard.press("Tab")  # the upload button
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notice")
    assert "Suppressed 1 new address" in await page.locator("#notice").inner_text()
    await assert_accessible(page)
    await page.context.close()
