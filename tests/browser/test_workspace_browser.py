"""The staff workspace in Chromium, as a marketing user: nothing by CLI. Writing a campaign,
its preview, a test send that reaches the SMTP server, scheduling, sending with live progress,
pause and resume; every inline refusal; the sandboxed preview; axe-core on every workspace
page (STANDARDS 62); the editor by keyboard alone."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page

from mailer.config import Settings
from mailer.db import create_pool
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.axe import assert_accessible, violations
from tests.support.mailer_env import mail_settings
from tests.support.workspace import BODY, Tenant, draft, ready_tenant

AUDIENCE = 30
RATE = 5.0  # messages a second: a send of AUDIENCE takes a few seconds, visible as it goes


@pytest.fixture
async def ws_settings(web_settings: Settings, smtp_sink) -> Settings:
    """The app and the worker send to the loopback SMTP sink, at a rate one can watch."""
    return mail_settings(web_settings, smtp_sink.port, per_second=RATE)


@pytest.fixture
async def served_settings(ws_settings: Settings) -> Settings:
    """The app serves with the mail settings (conftest's ``server``)."""
    return ws_settings


@pytest.fixture
async def acme(conn, ws_settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, ws_settings, tmp_path, "acme", people=AUDIENCE)


@contextlib.asynccontextmanager
async def running_worker(dsn: str, settings: Settings) -> AsyncIterator[None]:
    """A real worker sending in the background until the block ends."""
    pool = await create_pool(dsn, max_size=4)
    task = asyncio.create_task(Worker(pool, settings).run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()


async def staff_page(browser: Browser, *, script: bool) -> Page:
    context = await browser.new_context(java_script_enabled=script)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    return page


async def sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/dashboard")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_selector("nav")


async def wait_until(page: Page, expression: str, timeout: float) -> None:
    """Poll ``expression`` in the page until it is true (page.wait_for_function would need
    'unsafe-eval', which the workspace's CSP rightly refuses)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        await asyncio.sleep(0.1)


async def bar_values_until_full(page: Page, timeout: float) -> list[float]:
    """The progress bar's values as the page's script changes them, until it shows 100%."""
    seen: list[float] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not seen or seen[-1] < 100:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the bar never reached 100%: {seen}")
        value = float(await page.evaluate("document.getElementById('progress-bar').value"))
        if not seen or value != seen[-1]:
            seen.append(value)
        await asyncio.sleep(0.1)
    return seen


async def deliveries(conn) -> list[dict[str, object]]:
    return [dict(r) async for r in probes().workspace_deliveries(conn)]


async def test_a_marketer_writes_previews_tests_schedules_sends_and_watches_progress(
    browser, server, ws_settings, acme, conn, db_dsn, smtp_sink
):
    """The issue's acceptance flow, all in the browser as a marketing user."""
    base = ws_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["marketing"])
    await page.get_by_role("link", name="Campaigns").click()
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Campaign name").fill("Spring")
    await page.get_by_label("Topic").select_option("newsletter")
    await page.get_by_label("Subject", exact=True).fill("Spring news")
    await page.get_by_label("Markdown").check()
    await page.get_by_label("Body", exact=True).fill(BODY)
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_selector("#notice")
    assert await page.locator("#ready").inner_text() == "Ready to send: every check passes."

    # The preview: the HTML part in its frame, the text part, the List-Unsubscribe headers.
    frame = page.frame_locator("#preview-frame")
    assert await frame.locator("h1").inner_text() == "Spring news for Preview"
    assert "Our garden opens on Monday." in await page.locator("#preview-text").inner_text()
    shown: dict[str, str] = {}
    for row in await page.locator("#preview-headers tr").all():
        shown.setdefault(await row.locator("th").inner_text(), await row.locator("td").inner_text())
    assert shown["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert shown["List-Unsubscribe"].startswith(f"<{base}/u/")
    assert "list-unsubscribe" in shown["DKIM-Signature"].lower()

    async with running_worker(db_dsn, ws_settings):
        # A test send reaches the SMTP server.
        await page.get_by_label("Send a test to").fill("me@staff.example")
        await page.get_by_role("button", name="Send test").click()
        await page.wait_for_selector("#notice")
        [message] = await smtp_sink.wait_for(1, timeout=20)
        assert message.rcpt_tos == ("me@staff.example",)
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        assert parsed["Subject"] == "Spring news"

        # Schedule it for tomorrow, in the tenant's zone (shown with it).
        tomorrow = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(days=1)
        await page.get_by_label("Send at (UTC)").fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
        await page.get_by_role("button", name="Schedule").click()
        await page.wait_for_selector("#scheduled")
        assert await page.locator("#scheduled").inner_text() == (
            f"scheduled for {tomorrow:%Y-%m-%d %H:%M} (UTC)"
        )

        # Start it now and watch the bar reach 100% without reloading. The sink holds the
        # campaign's last message until the bar has shown the send part way: the worker records
        # a claim's results at once, and a loaded machine's page, polling every 1.5 s, could
        # otherwise see only 0% and 100%. The audience is more than one claim, so a claim's
        # results are recorded while the last message waits.
        assert RATE * ws_settings.mailer.lease_seconds / 2 < AUDIENCE
        smtp_sink.hold_after(AUDIENCE)  # the test message and all but one of the campaign's
        await page.get_by_role("button", name="Send now").click()
        await page.wait_for_selector("#notice")
        assert await page.locator("#status").inner_text() == "sending"
        await page.evaluate("window.notReloaded = true")
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "progress.json" in r.url else None)
        try:
            await wait_until(page, "document.getElementById('progress-bar').value > 0", 60)
            part_way = float(await page.evaluate("document.getElementById('progress-bar').value"))
        finally:
            smtp_sink.release()
        seen = [part_way, *await bar_values_until_full(page, 60)]
        assert any(0 < value < 100 for value in seen), seen  # it moved while sending
        assert await page.evaluate("window.notReloaded") is True
        await wait_until(page, "document.getElementById('status').textContent === 'done'", 20)
        assert await page.locator('[data-field="sent"]').inner_text() == str(AUDIENCE)
        assert len(polls) >= 2  # it polled while the campaign ran
        # The campaign ended: polling stops.
        stopped = len(polls)
        await asyncio.sleep(4)
        assert len(polls) == stopped
    await smtp_sink.wait_for(1 + AUDIENCE, timeout=20)

    # Another campaign (a duplicate), paused and resumed while it sends.
    await page.get_by_role("button", name="Duplicate").click()
    await page.wait_for_selector("#notice")
    assert (await page.locator("h1").inner_text()) == "Copy of Spring"
    await page.get_by_role("button", name="Send now").click()
    await page.wait_for_selector("#notice")
    await page.get_by_role("button", name="Pause").click()
    assert await page.locator("#notice").inner_text() == "Sending paused."
    assert await page.locator("#status").inner_text() == "paused"
    await page.get_by_role("button", name="Resume").click()
    assert await page.locator("#notice").inner_text() == "Sending resumed."
    async with running_worker(db_dsn, ws_settings):
        await wait_until(page, "document.getElementById('progress-bar').value === 100", 60)
    await smtp_sink.wait_for(1 + 2 * AUDIENCE, timeout=20)
    await page.context.close()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_postal_address", "the tenant has no postal address"),
        ("no_unsubscribe_link", "the body has no unsubscribe link"),
        ("empty_audience", "nobody would receive this campaign"),
        ("past_schedule_time", "is in the past"),
    ],
)
async def test_each_refusal_shows_inline_and_queues_nothing(
    browser, server, ws_settings, acme, conn, case, expected
):
    text = BODY
    if case == "no_postal_address":
        await probes().clear_every_postal_address(conn)
    elif case == "no_unsubscribe_link":
        text = "# Hello {{ name }}\n\nNothing to leave by.\n"
    elif case == "empty_audience":
        await probes().unsubscribe_everyone(conn)
    campaign = await draft(conn, acme, text=text)
    page = await staff_page(browser, script=False)
    await sign_in(page, ws_settings.base_url, acme.tokens["marketing"])
    await page.goto(f"{ws_settings.base_url}/dashboard/t/acme/campaigns/{campaign['id']}")
    if case == "past_schedule_time":
        assert await page.locator("#ready").count() == 1
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        await page.get_by_label("Send at (UTC)").fill(past.strftime("%Y-%m-%dT%H:%M"))
        await page.get_by_role("button", name="Schedule").click()
    else:
        assert expected in await page.locator("#problems").inner_text()
        await page.get_by_role("button", name="Send now").click()
    assert expected in await page.locator("#action-error").inner_text()
    assert await deliveries(conn) == []
    assert (await campaigns.get(conn, acme.id, campaign["id"]))["status"] == "draft"
    await page.context.close()


async def test_the_preview_frame_runs_no_script_and_loads_no_remote_image(
    browser, server, ws_settings, acme, conn
):
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"GIF89a", content_type="image/gif")

    spy = web.Application()
    spy.router.add_get("/{name}", record)
    spy_server = TestServer(spy, host="127.0.0.1")
    await spy_server.start_server()
    try:
        there = f"http://127.0.0.1:{spy_server.port}"
        hostile = (
            f'<p id="hello">Hello {{{{ name }}}}</p>\n'
            f"<script>new Image().src = '{there}/script-ran'; document.title = 'ran';</script>\n"
            f'<img src="{there}/remote.gif" alt="remote">\n'
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
        )
        campaign = await campaigns.create_draft(
            conn,
            tenant_id=acme.id,
            topic_slug="newsletter",
            name="Hostile",
            subject="Hi",
            content={"format": "html", "body": hostile, "text": "", "preheader": ""},
        )
        page = await staff_page(browser, script=True)
        await sign_in(page, ws_settings.base_url, acme.tokens["marketing"])
        await page.goto(f"{ws_settings.base_url}/dashboard/t/acme/campaigns/{campaign['id']}")
        frame = page.frame_locator("#preview-frame")
        assert await frame.locator("#hello").inner_text() == "Hello Preview"
        assert await frame.locator("script").count() == 1  # it is there, and inert
        sandbox = await page.locator("#preview-frame").get_attribute("sandbox")
        assert sandbox == ""  # no allow-scripts, no allow-same-origin
        await asyncio.sleep(1.5)
        assert hits == []
        child = next(f for f in page.frames if f.url.endswith("preview.html"))
        assert await child.title() != "ran"
        await page.context.close()
    finally:
        await spy_server.close()


async def test_every_workspace_page_passes_axe(browser, server, ws_settings, acme, conn):
    """STANDARDS 62: no serious or critical axe-core violation on any workspace page."""
    base = ws_settings.base_url
    ready = await draft(conn, acme, name="Ready")
    broken = await draft(conn, acme, name="Broken", text="# Hello\n\n{{ name }\n")
    sending = await draft(conn, acme, name="Sending")
    await campaigns.start(conn, ws_settings, acme.id, sending["id"])
    page = await staff_page(browser, script=True)
    await page.goto(f"{base}/dashboard")
    await assert_accessible(page)  # the sign-in form
    await sign_in(page, base, acme.tokens["marketing"])
    pages = [
        "/dashboard",
        "/dashboard/t/acme/campaigns",
        "/dashboard/t/acme/campaigns/new",
        f"/dashboard/t/acme/campaigns/{ready['id']}",
        f"/dashboard/t/acme/campaigns/{ready['id']}/edit",
        f"/dashboard/t/acme/campaigns/{broken['id']}",
        f"/dashboard/t/acme/campaigns/{sending['id']}",
        "/dashboard/t/acme/wording",
    ]
    for path in pages:
        await page.goto(base + path)
        await assert_accessible(page)
    # Reflow (WCAG 1.4.10): at 320 CSS px nothing scrolls sideways.
    await page.set_viewport_size({"width": 320, "height": 640})
    for path in pages:
        await page.goto(base + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320, (path, width)
    await page.set_viewport_size({"width": 1280, "height": 800})
    # A refused form and a refused action, with their error messages.
    await page.goto(f"{base}/dashboard/t/acme/campaigns/new")
    await page.get_by_label("Campaign name").fill("x")
    await page.get_by_label("Subject", exact=True).fill("y")
    await page.get_by_label("Body", exact=True).fill(" ")
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_selector("#form-error")
    await assert_accessible(page)
    await page.goto(f"{base}/dashboard/t/acme/campaigns/{broken['id']}")
    await page.get_by_role("button", name="Send now").click()
    await page.wait_for_selector("#action-error")
    await assert_accessible(page)
    # The wording page: saved (with its Clear button), and refused next to its field.
    await page.goto(f"{base}/dashboard/t/acme/wording")
    await page.get_by_label("Greeting in Deutsch").fill("Guten Tag,")
    await page.get_by_role("button", name="Save greeting in Deutsch").click()
    await page.wait_for_selector("#notice")
    await assert_accessible(page)
    await page.get_by_label("Footer reason in Français").fill("<b>Bonjour</b>")
    await page.get_by_role("button", name="Save footer reason in Français").click()
    await page.wait_for_selector("#footer_reason-fr-error")
    assert await page.get_by_label("Footer reason in Français").get_attribute("aria-invalid") == (
        "true"
    )
    await assert_accessible(page)
    await page.context.close()


async def tab_to(page: Page, element_id: str, limit: int = 60) -> None:
    """Press Tab until the element with ``element_id`` has the focus (bounded)."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement && document.activeElement.id") == (
            element_id
        ):
            return
    raise AssertionError(f"#{element_id} never got the focus by Tab")


async def tab_to_named(page: Page, name: str, limit: int = 60) -> None:
    for _ in range(limit):
        await page.keyboard.press("Tab")
        text = await page.evaluate(
            "document.activeElement && document.activeElement.textContent.trim()"
        )
        if text == name:
            return
    raise AssertionError(f"{name!r} never got the focus by Tab")


async def test_the_editor_flow_works_by_keyboard_alone(browser, server, ws_settings, acme, conn):
    """STANDARDS 62 (2.1.1, 2.4.7): from the campaign list to a saved, sent test, by keys."""
    base = ws_settings.base_url
    page = await staff_page(browser, script=True)
    await sign_in(page, base, acme.tokens["marketing"])
    await page.goto(f"{base}/dashboard/t/acme/campaigns")
    await tab_to(page, "new-campaign")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#editor")
    await tab_to(page, "name")
    await page.keyboard.type("By keyboard")
    await page.keyboard.press("Tab")  # the topic: the first (only) one is chosen
    await page.keyboard.press("Tab")
    await page.keyboard.type("Typed subject")
    await tab_to(page, "body")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("# Hi {{ name }}\n\n[Unsubscribe]({{ unsubscribe_url }})\n")
    # The focused control is visibly outlined (2.4.7).
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    await tab_to_named(page, "Save")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notice")
    assert await page.locator("h1").inner_text() == "By keyboard"
    assert await page.locator("#ready").count() == 1
    await tab_to(page, "test-to")
    await page.keyboard.type("me@staff.example")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notice")
    assert await page.locator("#notice").inner_text() == (
        "Test message queued; it arrives within a few seconds."
    )
    assert len(await deliveries(conn)) == 1
    await page.context.close()


async def test_the_axe_harness_reports_a_serious_violation(browser):
    """The harness itself: a form field without a label is a critical violation it catches."""
    page = await staff_page(browser, script=True)
    await page.set_content('<html lang="en"><title>t</title><main><input></main></html>')
    found = await violations(page)
    assert [v["id"] for v in found] == ["label"]
    await page.context.close()
