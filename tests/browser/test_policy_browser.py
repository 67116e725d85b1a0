"""The workspace's policy pages in Chromium, as a compliance user, nothing by CLI: the next
version written with its diff, a date inside the notice period refused, a valid one published,
the notice sent by a real worker to the loopback SMTP sink and watched to 100% delivered, the
proof of notice downloaded; the public page announces the change; axe-core on every page
(STANDARDS 62)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from playwright.async_api import Page

from mailer import tenants
from mailer.config import Settings
from mailer.db import queries
from mailer.rights import policy
from tests.browser.test_workspace_browser import running_worker, sign_in, staff_page
from tests.support.axe import assert_accessible
from tests.support.mailer_env import add_subscribers, mail_settings
from tests.support.workspace import Tenant, ready_tenant

NOTICE_PEOPLE = 12
V1 = "# Privacy policy\n\nWe keep your address to mail you.\n"
ADDED = "We keep records of undeliverable mail for 12 months."


@pytest.fixture
async def policy_settings(web_settings: Settings, smtp_sink) -> Settings:
    return mail_settings(web_settings, smtp_sink.port, per_second=20.0)


@pytest.fixture
async def served_settings(policy_settings: Settings) -> Settings:
    """The app serves with the policy settings (conftest's ``server``)."""
    return policy_settings


@pytest.fixture
async def acme(conn, policy_settings, tmp_path: Path) -> Tenant:
    """Three newsletter readers, NOTICE_PEOPLE on the notice topic, version 1 in effect."""
    t = await ready_tenant(conn, policy_settings, tmp_path, "acme")
    topic = await tenants.create_topic(
        conn, t.id, slug="policy-notices", name="Policy notices", kind="notice"
    )
    t.people |= await add_subscribers(
        conn, policy_settings, t.id, topic["id"], NOTICE_PEOPLE, prefix="acme-n"
    )
    tenant = await queries().tenants.get_tenant(conn, id=t.id)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    await policy.publish(
        conn,
        tenant=tenant,
        body=V1,
        summary="The first policy.",
        effective_at=earlier + dt.timedelta(minutes=1),
        now=earlier,
        force_reason="the first version",
    )
    return t


def local(days: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


async def delivered_percent(page: Page, timeout: float) -> str:
    """Reload the notice page until it shows 100% delivered (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        shown = await page.locator("#percent-delivered").inner_text()
        if shown == "100" or asyncio.get_running_loop().time() > deadline:
            return shown
        await asyncio.sleep(0.5)
        await page.reload()


async def test_compliance_publishes_a_version_sends_its_notice_and_downloads_the_proof(
    browser, server, policy_settings, acme, conn, db_dsn, smtp_sink
):
    """The issue's acceptance flow for policy versions, in the browser as compliance."""
    base = policy_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["compliance"])
    await page.get_by_role("link", name="Privacy policy").click()
    await page.wait_for_selector("#version-list")
    await assert_accessible(page)
    await page.get_by_role("link", name="Write the next version").click()
    await assert_accessible(page)
    assert "the earliest effective time is" in await page.locator("#earliest").inner_text()

    body = page.get_by_label("Policy text (Markdown)")
    assert await body.input_value() == V1.strip("\n")
    await body.fill(V1 + "\n## Bounces\n\n" + ADDED + "\n")
    await page.get_by_label("What changes").fill("Bounce records are kept for 12 months.")
    await page.get_by_label("Takes effect at (UTC)").fill(local(3))
    await page.get_by_role("button", name="Show the text and the changes").click()
    await page.wait_for_selector("#policy-diff")
    assert f"+ {ADDED}" in await page.locator("#policy-diff ins").all_inner_texts()
    await assert_accessible(page)

    # Inside the 30 days' notice: refused, with the earliest time; nothing published.
    await page.get_by_role("button", name="Publish").click()
    error = await page.locator("#form-error").inner_text()
    assert "30 days' notice: the earliest effective time is" in error
    assert len(await policy.versions(conn, acme.id)) == 1

    await page.get_by_label("Takes effect at (UTC)").fill(local(31))
    await page.get_by_role("button", name="Publish").click()
    await page.wait_for_selector("#notice")
    assert await page.get_by_role("heading", name="Policy version 2", exact=True).count() == 1
    await assert_accessible(page)

    # The notice mail: its text, then sent to the notice topic by a real worker.
    await page.get_by_label("Subject").fill("Our privacy policy changes")
    await page.get_by_label("What changes, one a line").fill("Bounce records kept 12 months")
    await page.get_by_role("button", name="Save the notice").click()
    await page.wait_for_selector("#notice")
    assert "Bounce records kept 12 months" in await page.locator("#preview-text").inner_text()
    async with running_worker(db_dsn, policy_settings):
        await page.get_by_role("button", name="Send the notice").click()
        await page.wait_for_selector("#notice")
        assert await delivered_percent(page, 60) == "100"
    messages = await smtp_sink.wait_for(NOTICE_PEOPLE, timeout=20)
    notice_people = {email for email in acme.people.values() if email.startswith("acme-n")}
    assert {m.rcpt_tos[0] for m in messages} == notice_people
    assert await page.locator('[data-field="delivered"]').inner_text() == str(NOTICE_PEOPLE)
    assert await page.locator("#notice-warning").count() == 0
    await assert_accessible(page)

    # The proof: every notice-topic subscriber by email, the others under the site notice.
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Download the proof of notice (CSV)").click()
    download = await download_info.value
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_email = {r["email"]: r["notified_by"] for r in rows}
    assert {e for e, how in by_email.items() if how == "email"} == notice_people
    readers = set(acme.people.values()) - notice_people
    assert {e for e, how in by_email.items() if how == "site_notice"} == readers

    # The register of companies that help: a row added in the workspace, axe-clean.
    await page.goto(f"{base}/dashboard/t/acme/policy")
    await page.get_by_role("link", name="Companies that help").click()
    await assert_accessible(page)
    await page.get_by_label("Company, row 1").fill("Example Hosting GmbH")
    await page.get_by_label("What it does, row 1").fill("Runs our servers")
    await page.get_by_label("Where, row 1").fill("Frankfurt, DE")
    await page.get_by_role("button", name="Save the register").click()
    assert await page.locator("#notice").inner_text() == "Register saved."
    await assert_accessible(page)

    # The public page shows the coming change and the register.
    await page.goto(f"{base}/policy/acme")
    notice = await page.locator("#policy-notice").inner_text()
    assert "Bounce records are kept for 12 months." in notice and ADDED in notice
    assert "Example Hosting GmbH" in await page.locator("#subprocessors").inner_text()
    await assert_accessible(page)
    await page.context.close()
