"""Staff single sign-on (issue 24 item 5) through the real app, real Postgres and a real OpenID
Connect provider on loopback: the first sign-in links an account by a verified email, later
ones by subject only; an unverified or unknown address is refused and nothing is linked; no
account is created; Optout's TOTP is still asked unless the provider's amr counts."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import logging
import re
from base64 import urlsafe_b64encode
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pyotp
import pytest

from mailer import staff_accounts, totp
from mailer.config import load_settings
from mailer.db import rows
from mailer.errors import ConfigError
from mailer.passwords import Hasher
from tests.support.api_world import sending_settings
from tests.support.oidc import CLIENT_SECRET, loopback_provider
from tests.support.staff import person, staff_probes
from tests.support.web import seed
from unsubscribe_web.app import create_app
from unsubscribe_web.keys import SECRET_BOX

EMAIL = "ada@acme.example"


@pytest.fixture
def provider():
    with loopback_provider() as running:
        yield running


def over_http(settings):
    """The test client speaks plain http, so the cookies must not be Secure-only."""
    return dataclasses.replace(sending_settings(settings), base_url="http://127.0.0.1:8080")


@pytest.fixture
def sso_settings(settings, provider):
    return provider.settings_for(over_http(settings))


@pytest.fixture
async def client(aiohttp_client, sso_settings):
    return await aiohttp_client(create_app(sso_settings))


@pytest.fixture
async def ada(conn):
    """A marketing person of acme, invited (no password yet)."""
    world = await seed(conn, subscribers=1, slug="acme")
    await staff_accounts.invite(
        conn,
        email=EMAIL,
        name="Ada",
        role="marketing",
        tenant_id=world.tenant,
        installation_admin=False,
        valid_seconds=3600,
        actor="test",
    )
    return world


async def provider_url(client) -> str:
    """Our sign-in button: a page that moves on to the provider (and links to it)."""
    start = await client.post("/dashboard/login/sso", allow_redirects=False)
    assert start.status == 200, await start.text()
    found = re.search(r'<a href="([^"]+)" id="continue"', await start.text())
    assert found is not None
    return html.unescape(found.group(1))


async def sign_in_at_provider(client, subject: str):
    """The browser's trip: our sign-in button, the provider's form (the person picks
    ``subject``), back to our callback. Returns the callback's response."""
    authorize = await provider_url(client)
    async with (
        aiohttp.ClientSession() as browser,
        browser.post(authorize, data={"sub": subject}, allow_redirects=False) as answer,
    ):
        assert answer.status == 302, await answer.text()
        back = urlsplit(answer.headers["Location"])
    return await client.get(f"{back.path}?{back.query}", allow_redirects=False)


async def dashboard_as(client):
    page = await client.get("/dashboard")
    assert page.status == 200
    return await page.text()


async def still_signed_out(client) -> bool:
    """The dashboard shows its sign-in form, not a workspace."""
    page = await client.get("/dashboard")
    text = await page.text()
    return (
        page.status == 200 and "Sign in with single sign-on" in text and "Signed in as" not in text
    )


async def account_named(conn, email: str):
    found = await staff_accounts.by_email(conn, email)
    assert found is not None
    return found


async def test_first_sign_in_links_by_verified_email_then_by_subject_only(
    client, provider, ada, conn
):
    """The invited account is linked and signed in; after the provider changes the email, the
    same subject still signs in as the same account, and the new address links nothing."""
    provider.set_person("ada-sub", email=EMAIL, email_verified=True)
    back = await sign_in_at_provider(client, "ada-sub")
    assert back.status == 200
    assert "Continue to the staff dashboard" in await back.text()
    assert "acme" in await dashboard_as(client)
    account = await account_named(conn, EMAIL)
    assert account["status"] == "active"

    await client.post("/dashboard/logout")
    client.session.cookie_jar.clear()
    provider.set_person("ada-sub", email="ada.new@elsewhere.example", email_verified=True)
    again = await sign_in_at_provider(client, "ada-sub")
    assert again.status == 200
    assert "acme" in await dashboard_as(client)
    assert await staff_accounts.by_email(conn, "ada.new@elsewhere.example") is None
    assert (await account_named(conn, EMAIL))["id"] == account["id"]
    links = await rows(staff_probes().sso_links(conn, account_id=account["id"]))
    assert [(link["subject"], link["linked_email"]) for link in links] == [("ada-sub", EMAIL)]


async def test_an_unverified_email_is_refused_and_links_nothing(client, provider, ada, conn):
    provider.set_person("mallory", email=EMAIL, email_verified=False)
    back = await sign_in_at_provider(client, "mallory")
    assert back.status == 401
    assert "has not verified that email address" in await back.text()
    assert "optout_staff" not in {cookie.key for cookie in client.session.cookie_jar}
    account = await account_named(conn, EMAIL)
    assert account["status"] == "invited"
    assert await rows(staff_probes().sso_links(conn, account_id=account["id"])) == []


async def test_an_unknown_email_is_refused_and_no_account_is_created(client, provider, ada, conn):
    before = await staff_probes().count_accounts(conn)
    provider.set_person("stranger", email="stranger@nowhere.example", email_verified=True)
    back = await sign_in_at_provider(client, "stranger")
    assert back.status == 401
    assert "does not match an Optout staff account" in await back.text()
    assert await staff_probes().count_accounts(conn) == before
    assert await still_signed_out(client)


async def test_a_second_subject_with_the_same_email_cannot_take_a_linked_account(
    client, provider, ada
):
    provider.set_person("ada-sub", email=EMAIL, email_verified=True)
    assert (await sign_in_at_provider(client, "ada-sub")).status == 200
    client.session.cookie_jar.clear()
    provider.set_person("impostor", email=EMAIL, email_verified=True)
    assert (await sign_in_at_provider(client, "impostor")).status == 401


async def test_a_replayed_or_forged_callback_is_refused(client, provider, ada):
    """The sign-in under way is used once; a callback with another state, or none of our
    cookie, signs no one in."""
    provider.set_person("ada-sub", email=EMAIL, email_verified=True)
    authorize = await provider_url(client)
    async with (
        aiohttp.ClientSession() as browser,
        browser.post(authorize, data={"sub": "ada-sub"}, allow_redirects=False) as answer,
    ):
        back = urlsplit(answer.headers["Location"])
    query = parse_qs(back.query)
    # Another browser (no transaction cookie) given this answer, as in a login CSRF: refused.
    held = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    client.session.cookie_jar.clear()
    elsewhere = await client.get(f"{back.path}?{back.query}")
    assert elsewhere.status == 401
    assert "optout_staff" not in {cookie.key for cookie in client.session.cookie_jar}
    client.session.cookie_jar.update_cookies(held, client.make_url("/"))
    forged = await client.get(
        back.path, params={"code": query["code"][0], "state": "not the state"}
    )
    assert forged.status == 401
    # The forged try spent the transaction: the genuine answer after it is refused too.
    replay = await client.get(f"{back.path}?{back.query}")
    assert replay.status == 401
    assert "took too long or was already used" in await replay.text()


async def test_the_request_carries_pkce_s256_and_a_nonce(client, provider, ada, conn):
    query = parse_qs(urlsplit(await provider_url(client)).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["nonce"][0] and query["state"][0]
    pending = await staff_probes().sso_pending(conn, state=query["state"][0])
    challenge = urlsafe_b64encode(hashlib.sha256(pending["verifier"].encode()).digest())
    assert query["code_challenge"] == [challenge.decode().rstrip("=")]
    assert pending["nonce"] == query["nonce"][0]


async def test_an_account_with_totp_is_still_asked_for_its_code(client, provider, conn, caplog):
    world = await seed(conn, subscribers=1, slug="acme")
    account_id = await person(
        conn,
        Hasher(),
        email=EMAIL,
        password="a long enough password",
        role="marketing",
        tenant_id=world.tenant,
    )
    secret = pyotp.random_base32()
    await totp.enrol(
        conn,
        client.app[SECRET_BOX],
        account_id,
        secret,
        pyotp.TOTP(secret).now(),
        keep_session=None,
    )
    provider.set_person("ada-sub", email=EMAIL, email_verified=True)
    caplog.set_level(logging.DEBUG)
    back = await sign_in_at_provider(client, "ada-sub")
    assert back.status == 200
    body = await back.text()
    assert "/dashboard/login/code" in body
    code = await client.get("/dashboard/login/code")
    assert code.status == 200
    # Until the code is given, the workspace stays shut.
    assert (await client.get("/dashboard")).status == 401
    assert CLIENT_SECRET not in caplog.text


async def test_provider_amr_named_by_the_setting_counts_as_the_second_factor(
    aiohttp_client, settings, provider, conn
):
    app = create_app(provider.settings_for(over_http(settings), second_factor=frozenset({"mfa"})))
    client = await aiohttp_client(app)
    world = await seed(conn, subscribers=1, slug="acme")
    account_id = await person(
        conn,
        Hasher(),
        email=EMAIL,
        password="a long enough password",
        role="marketing",
        tenant_id=world.tenant,
    )
    secret = pyotp.random_base32()
    await totp.enrol(
        conn, app[SECRET_BOX], account_id, secret, pyotp.TOTP(secret).now(), keep_session=None
    )
    provider.set_person("ada-sub", email=EMAIL, email_verified=True, amr=["pwd", "mfa"])
    back = await sign_in_at_provider(client, "ada-sub")
    assert back.status == 200
    assert "acme" in await dashboard_as(client)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPTOUT_OIDC_ISSUER": "https://id.example"}, "go together"),
        (
            {
                "OPTOUT_OIDC_ISSUER": "http://id.example",
                "OPTOUT_OIDC_CLIENT_ID": "c",
                "OPTOUT_OIDC_CLIENT_SECRET": "s",
            },
            "must use https://",
        ),
        (
            {
                "OPTOUT_OIDC_ISSUER": "http://localhost:9000",
                "OPTOUT_OIDC_CLIENT_ID": "c",
                "OPTOUT_OIDC_CLIENT_SECRET": "s",
            },
            "OPTOUT_OIDC_ALLOW_HTTP_LOOPBACK=1",
        ),
    ],
)
def test_bad_issuer_settings_are_refused_with_one_line(env, message, tmp_path):
    base = {
        "OPTOUT_DATA_DIR": str(tmp_path / "data"),
        "OPTOUT_JOURNAL_DIR": str(tmp_path / "journal"),
        "OPTOUT_SECRET_KEYS": "k1:" + "x" * 40,
        "OPTOUT_HASH_KEY": "y" * 40,
    }
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings({**base, **env})
    assert "\n" not in str(raised.value)


def test_an_http_issuer_on_loopback_with_the_development_setting_is_taken(tmp_path):
    settings = load_settings(
        {
            "OPTOUT_DATA_DIR": str(tmp_path / "data"),
            "OPTOUT_JOURNAL_DIR": str(tmp_path / "journal"),
            "OPTOUT_SECRET_KEYS": "k1:" + "x" * 40,
            "OPTOUT_HASH_KEY": "y" * 40,
            "OPTOUT_OIDC_ISSUER": "http://localhost:9000/",
            "OPTOUT_OIDC_CLIENT_ID": "c",
            "OPTOUT_OIDC_CLIENT_SECRET": "the secret",
            "OPTOUT_OIDC_ALLOW_HTTP_LOOPBACK": "1",
            "OPTOUT_OIDC_SECOND_FACTOR": "mfa, hwk",
        }
    )
    oidc = settings.staff.oidc
    assert oidc is not None and oidc.issuer == "http://localhost:9000"
    assert oidc.second_factor == {"mfa", "hwk"}
    assert "the secret" not in repr(settings)


async def test_a_disabled_account_cannot_sign_in_through_the_provider(client, provider, ada, conn):
    provider.set_person("ada-sub", email=EMAIL, email_verified=True)
    assert (await sign_in_at_provider(client, "ada-sub")).status == 200
    client.session.cookie_jar.clear()
    await staff_accounts.disable(conn, (await account_named(conn, EMAIL))["id"], actor="test")
    refused = await sign_in_at_provider(client, "ada-sub")
    assert refused.status == 401
    assert await still_signed_out(client)


async def test_a_start_posted_from_another_site_is_refused(client, provider, ada, conn):
    refused = await client.post("/dashboard/login/sso", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status == 403
    assert "optout_sso" not in {cookie.key for cookie in client.session.cookie_jar}


async def test_without_an_issuer_there_is_no_single_sign_on(aiohttp_client, settings, conn):
    client = await aiohttp_client(create_app(over_http(settings)))
    page = await client.get("/dashboard")
    assert page.status == 200
    assert "Sign in with single sign-on" not in await page.text()
    assert (await client.post("/dashboard/login/sso")).status == 404
    assert (await client.get("/dashboard/login/sso/callback?code=x&state=y")).status == 404
