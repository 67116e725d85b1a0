"""Issue 24 item 5 in Chromium: staff sign in through a real OpenID Connect provider run on
``localhost`` while Optout runs on 127.0.0.1, two sites, so a cookie that the trip would lose
(the Lax transaction cookie going out, the Strict session cookie coming back) shows. The
person lands with the role Optout gave; an unverified or unknown address is refused; after
the provider changes the address, the same subject still signs in as the same person."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from playwright.async_api import Page

from mailer import staff_accounts
from mailer.config import Settings
from tests.browser.test_workspace_browser import staff_page
from tests.support.axe import assert_accessible
from tests.support.oidc import LoopbackProvider, loopback_provider
from tests.support.web import seed

EMAIL = "mia@acme.example"


@pytest.fixture
def provider() -> Iterator[LoopbackProvider]:
    with loopback_provider() as running:
        yield running


@pytest.fixture
async def sso_settings(web_settings: Settings, provider: LoopbackProvider) -> Settings:
    """Sign-in by account only (no token sign-in), single sign-on through the provider."""
    staff = dataclasses.replace(web_settings.staff, token_signin=False)
    return provider.settings_for(dataclasses.replace(web_settings, staff=staff))


@pytest.fixture
async def served_settings(sso_settings: Settings) -> Settings:
    """The app serves with the single sign-on settings (conftest's ``server``)."""
    return sso_settings


async def sign_in_by_provider(page: Page, base: str, subject: str) -> None:
    """Our button, then the provider's own form (the person is ``subject`` there)."""
    await page.goto(f"{base}/dashboard")
    await page.get_by_role("button", name="Sign in with single sign-on").click()
    await page.wait_for_url("http://localhost:*/**")
    await page.get_by_placeholder("sub").fill(subject)
    await page.get_by_role("button", name="Authorize").click()


async def test_staff_sign_in_through_the_provider_lands_with_optouts_role(
    browser, server, sso_settings: Settings, provider: LoopbackProvider, conn
):
    base = sso_settings.base_url
    world = await seed(conn, subscribers=1, slug="acme")
    await staff_accounts.invite(
        conn,
        email=EMAIL,
        name="Mia Marketing",
        role="marketing",
        tenant_id=world.tenant,
        installation_admin=False,
        valid_seconds=3600,
        actor="test",
    )
    page = await staff_page(browser, script=True)

    # The provider has not verified the address: refused, nothing linked, no session.
    provider.set_person("mia-at-idp", email=EMAIL, email_verified=False)
    await page.goto(f"{base}/dashboard")
    await assert_accessible(page)
    await sign_in_by_provider(page, base, "mia-at-idp")
    await page.wait_for_selector("#login-error")
    assert "has not verified" in await page.locator("#login-error").inner_text()
    await assert_accessible(page)

    # An address with no staff account: refused, and no account is made.
    provider.set_person("stranger", email="stranger@nowhere.example", email_verified=True)
    await sign_in_by_provider(page, base, "stranger")
    await page.wait_for_selector("#login-error")
    assert "does not match" in await page.locator("#login-error").inner_text()
    assert await staff_accounts.by_email(conn, "stranger@nowhere.example") is None

    # Verified: linked, and the workspace opens with the role Optout gave (not the provider's).
    provider.set_person("mia-at-idp", email=EMAIL, email_verified=True, roles=["admin"])
    await sign_in_by_provider(page, base, "mia-at-idp")
    await page.wait_for_selector("nav")
    main = await page.locator("main").inner_text()
    assert "Signed in as Mia Marketing (marketing)" in main
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_selector("#login")

    # The provider changes her address: the subject alone still signs her in as herself.
    provider.set_person("mia-at-idp", email="mia@new-name.example", email_verified=True)
    await sign_in_by_provider(page, base, "mia-at-idp")
    await page.wait_for_selector("nav")
    assert "Signed in as Mia Marketing (marketing)" in await page.locator("main").inner_text()
    await page.context.close()
