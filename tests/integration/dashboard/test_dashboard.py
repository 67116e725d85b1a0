"""The staff dashboard (/dashboard) through the real app on real Postgres: signing in with a
staff account (an API token only behind OPTOUT_TOKEN_SIGNIN), who may see which tenant, and
what the page shows after real opt-outs and sends."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import xml.etree.ElementTree as ET
from http.cookies import SimpleCookie

import pytest

from mailer import api_tokens, staff_accounts
from mailer.config import StaffSettings
from mailer.db import queries
from mailer.passwords import Hasher
from mailer.rights import policy, privacy
from mailer.sending import campaigns
from tests.conftest import TEST_HASH_KEY, probes
from tests.support.api_world import CONTENT, sending_settings
from tests.support.staff import person, staff_probes
from tests.support.web import World, seed
from tests.support.workspace import session_cookie, sign_in
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.accounts import SIGN_INS_PER_IP
from unsubscribe_web.dashboard.workspace import SECURE_COOKIE

SVG = "{http://www.w3.org/2000/svg}"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
LOGIN_FORM = '<form method="post" action="/dashboard/login" id="login">'


@pytest.fixture
async def acme(conn) -> World:
    return await seed(conn, subscribers=4, slug="acme")


@pytest.fixture
async def beta(conn) -> World:
    world = await seed(conn, subscribers=1, slug="beta")
    await new_campaign(conn, world, "Beta secret launch")
    return world


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


async def token(conn, role: str, world: World | None) -> str:
    tenant_id = None if role == "admin" else world.tenant if world else None
    return (await api_tokens.create_token(conn, role=role, tenant_id=tenant_id)).secret


async def new_campaign(conn, world: World, name: str):
    return await campaigns.create(
        conn,
        tenant_id=world.tenant,
        topic_slug="news",
        name=name,
        template="newsletter",
        subject="Spring news",
        content=CONTENT,
    )


async def page(client, cookie: dict[str, str], query: str = "", status: int = 200) -> str:
    response = await client.get(f"/dashboard{query}", headers=cookie)
    text: str = await response.text()
    assert response.status == status, text
    return text


def chart(html: str, figure_id: str) -> ET.Element:
    """The SVG inside <figure id=...>, parsed as XML (it must be well-formed on its own)."""
    found = re.search(rf'<figure id="{figure_id}"[^>]*>\s*(<svg.*?</svg>)', html, re.S)
    assert found, f"no chart {figure_id}"
    return ET.fromstring(found.group(1))


def bar_values(svg: ET.Element) -> dict[str, int]:
    """data-label -> data-value of every bar; the hover title must agree with both."""
    values = {}
    for rect in svg.iter(f"{SVG}rect"):
        if rect.get("class") != "bar":
            continue
        label, value = rect.get("data-label", ""), rect.get("data-value", "")
        title = rect.find(f"{SVG}title")
        assert title is not None and title.text == f"{label}: {value}"
        values[label] = int(value)
    return values


def table_rows(html: str, table_id: str) -> list[list[str]]:
    found = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert found, f"no table {table_id}"
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", found.group(1), re.S)
    ]


# --- signing in ---------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


async def marketer(conn, world: World, email: str = "mia@acme.example") -> str:
    await person(
        conn,
        Hasher(),
        email=email,
        password=PASSWORD,
        role="marketing",
        tenant_id=world.tenant,
        name="Mia Marketing",
    )
    return email


async def post_login(client, data: dict[str, str], **headers: str):
    return await client.post("/dashboard/login", data=data, headers=headers, allow_redirects=False)


async def test_without_a_session_the_dashboard_is_only_a_login_form(client, acme, conn):
    await new_campaign(conn, acme, "Spring")
    response = await client.get("/dashboard")
    html = await response.text()
    assert response.status == 200
    assert LOGIN_FORM in html
    assert 'type="email" name="email"' in html and 'type="password" name="password"' in html
    # Token sign-in is off unless OPTOUT_TOKEN_SIGNIN=1.
    assert 'name="token"' not in html
    for data in ("Acme News", "Spring", "campaigns", "unsubscribes", "policy-current"):
        assert data not in html
    assert "Set-Cookie" not in response.headers
    # Signing in is a POST only: a GET with the password in the URL is not accepted.
    assert (await client.get("/dashboard/login?password=x")).status == 405


async def test_a_form_on_another_site_cannot_sign_a_browser_in(client, acme, conn):
    """Login CSRF: a browser posting another site's form says so (Sec-Fetch-Site, Origin);
    refused, no cookie. The dashboard's own form works, with Origin "null" as our
    no-referrer policy makes browsers send it."""
    data = {"email": await marketer(conn, acme), "password": PASSWORD}
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ):
        response = await post_login(client, data, **headers)
        assert response.status == 403 and "Set-Cookie" not in response.headers
    own = f"http://{client.server.host}:{client.server.port}"
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, {"Origin": own}):
        response = await post_login(client, data, **headers)
        assert response.status == 303 and SECURE_COOKIE in response.headers["Set-Cookie"]


async def test_sign_in_attempts_are_limited_per_address(client, acme, conn):
    data = {"email": await marketer(conn, acme), "password": PASSWORD}
    for _ in range(SIGN_INS_PER_IP.count):
        response = await post_login(client, {"email": data["email"], "password": ""})
        assert response.status == 401
    # Over the limit even the right password waits: the answer says so and sets nothing.
    response = await post_login(client, data)
    assert response.status == 429 and "Set-Cookie" not in response.headers
    assert "Too many sign-in attempts" in await response.text()


async def test_sign_in_keeps_only_a_random_session_id_in_a_strict_host_cookie(client, acme, conn):
    """STANDARDS: the cookie holds a random id, never the password; __Host- (Secure, Path=/)
    under an https base URL, HttpOnly, SameSite=Strict; the database holds only its hash."""
    email = await marketer(conn, acme)
    response = await post_login(client, {"email": email.upper(), "password": PASSWORD})
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    morsel = SimpleCookie(response.headers["Set-Cookie"])[SECURE_COOKIE]
    assert PASSWORD not in morsel.value and len(morsel.value) >= 40
    assert morsel["httponly"] and morsel["secure"]  # BASE_URL is https
    assert morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["domain"]
    assert not morsel["max-age"] and not morsel["expires"]  # a browser-session cookie
    stored = [dict(r) async for r in staff_probes().session_hashes(conn)]
    assert stored == [{"id_hash": hashlib.sha256(morsel.value.encode()).digest()}]
    client.session.cookie_jar.clear()
    response = await client.get("/dashboard", headers={"Cookie": f"{SECURE_COOKIE}={morsel.value}"})
    html = await response.text()
    assert response.status == 200
    assert "Staff dashboard: Acme News" in html
    assert "Signed in as Mia Marketing (marketing)" in html
    # The security middleware's headers apply; the page needs no script and no inline style.
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in html and " style=" not in html
    css = await client.get("/static/dashboard.css")
    assert css.status == 200 and css.content_type == "text/css"


async def test_a_wrong_password_and_an_unknown_address_get_the_same_401(client, acme, conn):
    email = await marketer(conn, acme)
    answers = []
    for data in (
        {"email": email, "password": "not the password at all"},
        {"email": "nobody@acme.example", "password": "not the password at all"},
        {"email": email, "password": ""},
    ):
        response = await post_login(client, data)
        html = await response.text()
        assert response.status == 401 and "Set-Cookie" not in response.headers
        assert LOGIN_FORM in html and "Wrong email address or password." in html
        answers.append(html)
    # Nothing says whether the address has an account.
    assert answers[0] == answers[1] == answers[2]


async def test_an_api_token_signs_in_only_behind_the_upgrade_flag(
    aiohttp_client, settings, acme, conn, caplog
):
    """OPTOUT_TOKEN_SIGNIN=1 keeps the old token sign-in for one release, with a warning in
    the log; without it a token is refused like a wrong password."""
    secret = await token(conn, "marketing", acme)
    plain = await aiohttp_client(create_app(sending_settings(settings)))
    response = await post_login(plain, {"token": secret})
    assert response.status == 401 and "Set-Cookie" not in response.headers
    flagged = dataclasses.replace(
        sending_settings(settings), staff=StaffSettings(token_signin=True)
    )
    legacy = await aiohttp_client(create_app(flagged))
    form = await (await legacy.get("/dashboard")).text()
    assert 'name="token"' in form
    with caplog.at_level(logging.WARNING):
        response = await post_login(legacy, {"token": secret})
    assert response.status == 303
    assert any("OPTOUT_TOKEN_SIGNIN" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text
    cookie = session_cookie(response.headers["Set-Cookie"])
    legacy.session.cookie_jar.clear()
    assert "Signed in with a token of role marketing" in await page(legacy, cookie)


async def test_a_client_sees_its_own_tenant_read_only(client, acme, beta, conn):
    """Issue 16: a role sees what its API rights allow; a client only its own tenant, and no
    form that changes anything."""
    secret = await token(conn, "client", acme)
    cookie = await sign_in(client, secret)
    html = await page(client, cookie)
    assert "Acme News" in html and "Beta secret launch" not in html
    response = await client.get("/dashboard?tenant=beta", headers=cookie)
    assert response.status == 404
    listing = await client.get("/dashboard/t/acme/campaigns", headers=cookie)
    text = await listing.text()
    assert listing.status == 200 and "New campaign" not in text
    assert 'method="post"' not in text.replace('method="post" action="/dashboard/logout"', "")


async def test_a_disabled_account_is_sent_back_to_login_at_its_next_request(client, acme, conn):
    email = await marketer(conn, acme)
    response = await post_login(client, {"email": email, "password": PASSWORD})
    cookie = session_cookie(response.headers["Set-Cookie"])
    client.session.cookie_jar.clear()
    assert "Staff dashboard: Acme News" in await page(client, cookie)
    account = await staff_accounts.by_email(conn, email)
    assert account is not None
    await staff_accounts.disable(conn, account["id"], actor="test")
    response = await client.get("/dashboard", headers=cookie)
    html = await response.text()
    assert response.status == 401
    assert LOGIN_FORM in html and "Acme News" not in html
    cleared = SimpleCookie(response.headers["Set-Cookie"])[SECURE_COOKIE]
    assert cleared.value == "" and cleared["path"] == "/" and cleared["max-age"] == "0"
    # Nor can it sign in again, and it is told nothing more than a wrong password is.
    response = await post_login(client, {"email": email, "password": PASSWORD})
    assert response.status == 401 and "Wrong email address or password." in await response.text()
    workspace = await client.get(
        "/dashboard/t/acme/campaigns", headers=cookie, allow_redirects=False
    )
    assert workspace.status == 303


async def test_sign_out_ends_the_session_on_the_server(client, acme, conn):
    cookie = await sign_in(client, await token(conn, "marketing", acme))
    response = await client.post("/dashboard/logout", headers=cookie, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cleared = SimpleCookie(response.headers["Set-Cookie"])[SECURE_COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/"
    # A copy of the old cookie is worth nothing now.
    response = await client.get("/dashboard", headers=cookie)
    assert response.status == 401 and LOGIN_FORM in await response.text()


# --- tenants ------------------------------------------------------------------------------------


async def test_a_tenant_token_sees_only_its_own_tenant(client, acme, beta, conn):
    await new_campaign(conn, acme, "Acme spring")
    cookie = await sign_in(client, await token(conn, "marketing", acme))
    html = await page(client, cookie)
    assert "Acme spring" in html and "Beta secret launch" not in html
    assert 'id="tenant-picker"' not in html and "beta" not in html
    # Another tenant is answered word for word like a tenant that does not exist.
    other = await page(client, cookie, "?tenant=beta", status=404)
    missing = await page(client, cookie, "?tenant=no-such-tenant", status=404)
    assert other == missing and "Beta secret launch" not in other
    assert await page(client, cookie, "?tenant=NOT%20A%20SLUG", status=404) == missing
    assert "Acme spring" in await page(client, cookie, "?tenant=acme")


async def test_an_admin_picks_any_tenant(client, acme, beta, conn):
    await new_campaign(conn, acme, "Acme spring")
    cookie = await sign_in(client, await token(conn, "admin", None))
    first = await page(client, cookie)
    assert 'id="tenant-picker"' in first
    assert '<option value="acme" selected>' in first and '<option value="beta">' in first
    assert "Acme spring" in first and "Beta secret launch" not in first  # the first, by slug
    picked = await page(client, cookie, "?tenant=beta")
    assert "Beta secret launch" in picked and "Acme spring" not in picked
    assert '<option value="beta" selected>' in picked
    assert await page(client, cookie, "?tenant=gamma", status=404)


# --- what the page shows ------------------------------------------------------------------------


async def test_a_one_click_unsubscribe_shows_in_the_list_the_channels_and_todays_bar(
    client, acme, conn
):
    """STANDARDS 42: staff can see every unsubscribe request and where it came from."""
    ada = acme.subscribers[0]
    response = await client.post(f"/u/{acme.one_click(ada)}", data=ONE_CLICK)
    assert response.status == 200
    cookie = await sign_in(client, await token(conn, "marketing", acme))
    html = await page(client, cookie)
    today = dt.datetime.now(dt.UTC).date()  # the seeded tenant's time zone is UTC
    [row] = table_rows(html, "recent-unsubscribes")
    assert row[1:] == ["p***@e***.org", "Weekly news", "one_click"]
    assert row[0].startswith(today.isoformat())
    assert "person0@example.org" not in html  # only the masked address
    assert '<span class="channel">one_click</span>: 1' in html
    per_day = bar_values(chart(html, "unsubscribes-chart"))
    assert len(per_day) == 30
    assert per_day[today.isoformat()] == 1
    assert sum(per_day.values()) == 1
    assert list(per_day)[-1] == today.isoformat()  # oldest to newest, today last


async def test_a_sending_campaign_shows_progress_stats_and_sends_per_minute(
    client, acme, conn, settings
):
    spring = await new_campaign(conn, acme, "Spring <sale> & more")
    queued = await campaigns.start(conn, sending_settings(settings), acme.tenant, spring["id"])
    assert queued == 4
    deliveries = [d async for d in probes().campaign_deliveries(conn, campaign_id=spring["id"])]
    now = dt.datetime.now(dt.UTC)
    earlier = now - dt.timedelta(minutes=5)
    for delivery, when in zip(deliveries, (now, now, earlier), strict=False):
        await probes().mark_sent(conn, id=delivery["id"], sent_at=when)
    # One recipient of a sent message leaves by the one-click link afterwards.
    first = deliveries[0]["subscriber_id"]
    assert (await client.post(f"/u/{acme.one_click(first)}", data=ONE_CLICK)).status == 200

    cookie = await sign_in(client, await token(conn, "marketing", acme))
    html = await page(client, cookie)
    row = re.search(rf'<tr id="campaign-{spring["id"]}">(.*?)</tr>', html, re.S)
    assert row
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]
    assert cells[:3] == ["Spring &lt;sale&gt; &amp; more", "Weekly news", "sending"]
    assert '<progress max="4" value="3">' in row[1]
    assert "3 / 4 sent (75%), 1 queued" in cells[3]
    assert cells[4:] == ["3", "0", "0", "one_click: 1"]
    per_minute = bar_values(chart(html, "sends-chart"))
    assert len(per_minute) == 60
    assert {k: v for k, v in per_minute.items() if v} == {
        f"{earlier:%H:%M}": 1,
        f"{now:%H:%M}": 2,
    }
    assert "3 in all" in html


async def test_policy_versions_and_overdue_requests(client, acme, conn):
    now = dt.datetime.now(dt.UTC)
    tenant = await queries().tenants.get_tenant(conn, id=acme.tenant)
    await policy.publish(
        conn,
        tenant=tenant,
        body="# Privacy\n\nOld.",
        summary="First version",
        effective_at=now - dt.timedelta(days=50),
        now=now - dt.timedelta(days=90),
    )
    coming = now + dt.timedelta(days=31)
    await policy.publish(
        conn,
        tenant=tenant,
        body="# Privacy\n\nNew.",
        summary="Adds partners",
        effective_at=coming,
        now=now,
    )
    late = await privacy.create_request(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant=tenant,
        kind="access",
        email="person1@example.org",
        now=now - dt.timedelta(days=40),
        verified=True,
    )
    fresh = await privacy.create_request(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant=tenant,
        kind="erase",
        email="person2@example.org",
        now=now,
        verified=True,
    )
    cookie = await sign_in(client, await token(conn, "compliance", acme))
    html = await page(client, cookie)
    assert re.search(r'id="policy-current">Version 1 in effect since', html)
    assert f"Version 2 takes effect on {coming:%Y-%m-%d %H:%M}" in html
    assert "Adds partners" in html
    assert f'<tr id="request-{late["id"]}">' in html
    assert f'id="request-{fresh["id"]}"' not in html
    overdue = re.search(rf'<tr id="request-{late["id"]}">(.*?)</tr>', html, re.S)
    assert overdue and "<td>access</td>" in overdue[1]
    # Compliance does not read campaigns (no campaigns.read), as in the API.
    assert 'id="campaigns"' not in html
    # Marketing sees campaigns and the policy, not data requests (no requests.read).
    marketing = await page(client, await sign_in(client, await token(conn, "marketing", acme)))
    assert 'id="campaigns"' in marketing and 'id="overdue-requests"' not in marketing
    assert "Version 2 takes effect on" in marketing


async def test_reading_the_dashboard_changes_nothing(client, acme, conn):
    """STANDARDS 15: GET and HEAD never change state."""
    ada = acme.subscribers[0]
    await client.post(f"/u/{acme.one_click(ada)}", data=ONE_CLICK)
    cookie = await sign_in(client, await token(conn, "admin", None))
    before = dict(await probes().consent_table_counts(conn))
    for _ in range(2):
        await page(client, cookie)
        assert (await client.head("/dashboard", headers=cookie)).status == 200
    assert dict(await probes().consent_table_counts(conn)) == before
