"""Issue 24's acceptance flow in Chromium: an admin invites a marketing person; the person sets
a password from the invitation link, enrols two-factor with a code the test computes, signs
out, signs in with password and code, and sends a campaign; the audit log names that person on
each step. Every new page passes axe and works by keyboard."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import time
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import Page

from mailer import staff_accounts
from mailer.config import Settings
from mailer.db import create_pool
from mailer.passwords import Hasher
from mailer.sending.worker import Worker
from mailer.totp import STEP
from tests.browser.test_workspace_browser import (
    AUDIENCE,
    running_worker,
    staff_page,
    wait_until,
)
from tests.support.axe import assert_accessible
from tests.support.mailer_env import mail_settings
from tests.support.staff import account_for, person, staff_probes
from tests.support.workspace import BODY, Tenant, ready_tenant

PASSWORD = "blue tractors sing at dawn"
EMAIL = "mia@acme.example"
STAFF_SENDER = "optout@install.example"


@pytest.fixture
async def ws_settings(web_settings: Settings, smtp_sink) -> Settings:
    """Sign-in by account only (no token sign-in), mail (staff mail too) to the loopback SMTP
    sink."""
    staff = dataclasses.replace(web_settings.staff, token_signin=False, mail_from=STAFF_SENDER)
    return mail_settings(dataclasses.replace(web_settings, staff=staff), smtp_sink.port)


@pytest.fixture
async def served_settings(ws_settings: Settings) -> Settings:
    """The app serves with the account sign-in settings (conftest's ``server``)."""
    return ws_settings


@pytest.fixture
async def acme(conn, ws_settings: Settings, tmp_path: Path) -> Tenant:
    return await ready_tenant(conn, ws_settings, tmp_path, "acme", people=AUDIENCE)


async def send_staff_mail(db_dsn: str, settings: Settings) -> None:
    """The worker sends what is queued (staff mail included) to the SMTP sink, then stops."""
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, settings).run(until_idle=True)
    finally:
        await pool.close()


async def password_form(page: Page, password: str) -> None:
    await page.get_by_label("New password").fill(password)
    await page.get_by_label("The same password again").fill(password)
    await page.get_by_role("button", name="Set password").click()


async def sign_in(page: Page, base: str, email: str, password: str) -> None:
    await page.goto(f"{base}/dashboard")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_an_invited_marketer_sets_a_password_enrols_totp_and_sends_a_campaign(
    browser,
    server,
    ws_settings: Settings,
    acme: Tenant,
    conn,
    db_dsn,
    smtp_sink,
):
    base = ws_settings.base_url
    admin = await account_for(conn, "admin", None, name="Ines Admin")
    await staff_accounts.invite(
        conn,
        email=EMAIL,
        name="Mia Marketing",
        role="marketing",
        tenant_id=acme.id,
        valid_seconds=ws_settings.staff.invite_seconds,
        actor=f"account:{admin}:admin",
        mail_base_url=base,
    )
    # The invitation mail goes through the worker to the SMTP sink; its link is all Mia has.
    await send_staff_mail(db_dsn, ws_settings)
    [invitation] = await smtp_sink.wait_for(1, timeout=20)
    assert invitation.mail_from == STAFF_SENDER and invitation.rcpt_tos == (EMAIL,)
    mail = email.message_from_bytes(invitation.data, policy=email.policy.default)
    [link] = re.findall(re.escape(base) + r"/dashboard/invitation/\S+", mail.get_content())
    page = await staff_page(browser, script=True)

    # The invitation: choose a password (a common one is refused first).
    await page.goto(link)
    assert await page.locator("#account-email").inner_text() == EMAIL
    await assert_accessible(page)
    await password_form(page, "qwerty123456")
    assert "common passwords" in await page.locator("#password-error").inner_text()
    await password_form(page, PASSWORD)
    await page.wait_for_selector("#password-set")
    await assert_accessible(page)

    # Sign in (the form by keyboard alone), then enrol two-factor on the own page.
    await page.goto(f"{base}/dashboard")
    await assert_accessible(page)
    await page.get_by_label("Email address").focus()
    await page.keyboard.type(EMAIL)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("nav")
    assert "Signed in as Mia Marketing (marketing)" in await page.locator("main").inner_text()
    await page.get_by_role("link", name="Your account").click()
    await page.wait_for_selector("#totp-qr svg")
    await assert_accessible(page)
    totp = pyotp.TOTP(await page.locator("#totp-secret").inner_text())
    await page.get_by_label("Code from your app").fill(totp.now())
    await page.get_by_role("button", name="Turn on two-factor sign-in").click()
    codes = await page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    await assert_accessible(page)
    await page.get_by_role("link", name="Back to your account").click()
    assert "Two-factor sign-in is on" in await page.locator("#totp-on").inner_text()
    await page.get_by_role("button", name="Sign out").click()

    # Sign in again: password, then the next step's code.
    await sign_in(page, base, EMAIL, PASSWORD)
    await page.wait_for_selector("#code-form")
    await assert_accessible(page)
    await page.get_by_label("The 6-digit code").fill(totp.at(time.time() + STEP))
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_selector("nav")

    # Send a campaign.
    await page.get_by_role("link", name="Campaigns").click()
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Campaign name").fill("Spring")
    await page.get_by_label("Topic").select_option("newsletter")
    await page.get_by_label("Subject", exact=True).fill("Spring news")
    await page.get_by_label("Markdown").check()
    await page.get_by_label("Body", exact=True).fill(BODY)
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_selector("#notice")
    async with running_worker(db_dsn, ws_settings):
        await page.get_by_role("button", name="Send now").click()
        await page.wait_for_selector("#notice")
        await wait_until(page, "document.getElementById('status').textContent === 'done'", 60)
    await smtp_sink.wait_for(1 + AUDIENCE, timeout=20)  # the invitation, then the campaign
    await page.context.close()

    # The audit log names the person on each step (and the admin on the invitation).
    lines = [dict(r) async for r in staff_probes().audit_people(conn)]
    mine = [r for r in lines if r["action"] != "token.create"]
    assert [(r["action"], r["name"]) for r in mine[:6]] == [
        ("staff.invite", "Ines Admin"),
        ("staff.password_set", "Mia Marketing"),
        ("staff.sign_in", "Mia Marketing"),
        ("staff.enrol_2fa", "Mia Marketing"),
        ("staff.sign_out", "Mia Marketing"),
        ("staff.sign_in", "Mia Marketing"),
    ]
    workspace = [r for r in mine[6:]]
    assert workspace and all(r["name"] == "Mia Marketing" for r in workspace), workspace
    assert any(re.fullmatch(r"account:\d+:marketing", r["actor"]) for r in workspace)
    assert {"create_campaign", "start_campaign"} <= {r["action"] for r in workspace}


async def test_a_person_who_forgot_the_password_gets_a_link_by_mail(
    browser, server, ws_settings: Settings, acme: Tenant, conn, db_dsn, smtp_sink
):
    """From the sign-in page, by keyboard: "Forgot your password?", the address, the mailed
    link, a new password, signed in. Both new pages pass axe."""
    base = ws_settings.base_url
    await person(
        conn, Hasher(), email=EMAIL, password=PASSWORD, role="marketing", tenant_id=acme.id
    )
    page = await staff_page(browser, script=True)
    await page.goto(f"{base}/dashboard")
    await page.get_by_role("link", name="Forgot your password?").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#forgot")
    await assert_accessible(page)
    await page.get_by_label("Email address of your staff account").focus()
    await page.keyboard.type(EMAIL)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#forgot-message")
    assert "on its way" in await page.locator("#forgot-message").inner_text()
    await assert_accessible(page)

    await send_staff_mail(db_dsn, ws_settings)
    [reset] = await smtp_sink.wait_for(1, timeout=20)
    mail = email.message_from_bytes(reset.data, policy=email.policy.default)
    [link] = re.findall(re.escape(base) + r"/dashboard/reset/\S+", mail.get_content())
    await page.goto(link)
    await password_form(page, "a brand new passphrase")
    await page.wait_for_selector("#password-set")
    await sign_in(page, base, EMAIL, "a brand new passphrase")
    await page.wait_for_selector("nav")
    await page.context.close()
