"""The workspace's template pages in Chromium as a marketing user: a template created from the
built-in newsletter layout and edited in the browser; axe-core on each page (STANDARDS 62)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.support.axe import assert_accessible
from tests.support.workspace import Tenant, ready_tenant


@pytest.fixture
async def acme(conn, web_settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, web_settings, tmp_path, "acme")


async def test_template_pages_work_in_the_browser_and_pass_axe(
    browser: Browser, server, web_settings, acme
):
    """STANDARDS 62: the list, the editor after a save and after a refused save."""
    base = web_settings.base_url
    context = await browser.new_context(java_script_enabled=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    await page.goto(f"{base}/dashboard")
    await page.get_by_label("API token").fill(acme.tokens["marketing"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("nav")
    await page.goto(f"{base}/dashboard/t/acme/templates")
    await assert_accessible(page)
    await page.get_by_label("Name").fill("Spring look")
    await page.get_by_role("button", name="Create from the built-in newsletter").click()
    await page.wait_for_selector("#notice")
    await assert_accessible(page)
    html = await page.get_by_label("HTML part").input_value()
    await page.get_by_label("HTML part").fill(
        html.replace("{{ body_html }}", "<p>Spring look</p>\n{{ body_html }}")
    )
    await page.get_by_role("button", name="Save as a new version").click()
    await page.wait_for_selector("#notice")
    assert "Version 2" in await page.locator("#versions").inner_text()
    frame = page.frame_locator("#preview-frame")
    assert "Spring look" in await frame.locator("body").inner_text()
    await page.get_by_label("HTML part").fill("{{ ''.__class__ }}")
    await page.get_by_role("button", name="Save as a new version").click()
    await page.wait_for_selector("#form-error")
    assert "is unsafe" in await page.locator("#form-error").inner_text()
    await assert_accessible(page)
    await context.close()
