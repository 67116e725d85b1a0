"""The staff dashboard (/dashboard) through the real app on real Postgres: signing in with an
API token, who may see which tenant, and what the page shows after real opt-outs and sends."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from http.cookies import SimpleCookie

import pytest

from mailer import api_tokens
from mailer.db import queries
from mailer.rights import policy, privacy
from mailer.sending import campaigns
from tests.conftest import TEST_HASH_KEY, probes
from tests.support.api_world import CONTENT, sending_settings
from tests.support.web import World, seed
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.views import SIGN_INS_PER_IP
from unsubscribe_web.dashboard.workspace import COOKIE

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


async def sign_in(client, secret: str) -> dict[str, str]:
    """Post the login form; return the Cookie header the browser would send from then on.
    (The cookie is Secure and the test server is plain http, so it is passed by hand.)"""
    response = await client.post("/dashboard/login", data={"token": secret}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/dashboard"
    morsel = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
    client.session.cookie_jar.clear()
    return {"Cookie": f"{COOKIE}={morsel.value}"}


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


async def test_without_a_session_the_dashboard_is_only_a_login_form(client, acme, conn):
    await new_campaign(conn, acme, "Spring")
    response = await client.get("/dashboard")
    html = await response.text()
    assert response.status == 200
    assert LOGIN_FORM in html and 'type="password" name="token"' in html
    for data in ("Acme News", "Spring", "campaigns", "unsubscribes", "policy-current"):
        assert data not in html
    assert "Set-Cookie" not in response.headers
    # Signing in is a POST only: a GET with the token in the URL is not accepted.
    assert (await client.get("/dashboard/login?token=x")).status == 405


async def test_a_form_on_another_site_cannot_sign_a_browser_in(client, acme, conn):
    """Login CSRF: a browser posting another site's form says so (Sec-Fetch-Site, Origin);
    refused, no cookie. The dashboard's own form works, with Origin "null" as our
    no-referrer policy makes browsers send it."""
    secret = await token(conn, "marketing", acme)
    for headers in (
        {"Sec-Fetch-Site": "cross-site", "Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ):
        response = await client.post(
            "/dashboard/login", data={"token": secret}, headers=headers, allow_redirects=False
        )
        assert response.status == 403 and "Set-Cookie" not in response.headers
    own = f"http://{client.server.host}:{client.server.port}"
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": "null"}, {"Origin": own}):
        response = await client.post(
            "/dashboard/login", data={"token": secret}, headers=headers, allow_redirects=False
        )
        assert response.status == 303 and COOKIE in response.headers["Set-Cookie"]


async def test_sign_in_attempts_are_limited_per_address(client, acme, conn):
    secret = await token(conn, "marketing", acme)
    for _ in range(SIGN_INS_PER_IP.count):
        response = await client.post("/dashboard/login", data={"token": "optout_wrong"})
        assert response.status == 401
    # Over the limit even the right token waits: the answer says so and sets nothing.
    response = await client.post("/dashboard/login", data={"token": secret}, allow_redirects=False)
    assert response.status == 429 and "Set-Cookie" not in response.headers
    assert "Too many sign-in attempts" in await response.text()


async def test_sign_in_keeps_the_token_in_a_strict_httponly_cookie(client, acme, conn):
    secret = await token(conn, "marketing", acme)
    response = await client.post("/dashboard/login", data={"token": secret}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    morsel = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
    assert morsel.value == secret
    assert morsel["httponly"] and morsel["secure"]  # BASE_URL is https
    assert morsel["samesite"] == "Strict" and morsel["path"] == "/dashboard"
    assert not morsel["max-age"] and not morsel["expires"]  # a browser-session cookie
    client.session.cookie_jar.clear()
    response = await client.get("/dashboard", headers={"Cookie": f"{COOKIE}={secret}"})
    html = await response.text()
    assert response.status == 200
    assert "Staff dashboard: Acme News" in html
    assert "Signed in with a token of role marketing" in html
    # The security middleware's headers apply; the page needs no script and no inline style.
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in html and " style=" not in html
    css = await client.get("/static/dashboard.css")
    assert css.status == 200 and css.content_type == "text/css"


@pytest.mark.parametrize("given", ["optout_not-a-real-token", "", "x" * 300])
async def test_a_wrong_token_gets_401_and_the_form_again(client, acme, conn, given):
    expired = await api_tokens.create_token(
        conn,
        role="marketing",
        tenant_id=acme.tenant,
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    )
    answers = []
    for secret in (given, expired.secret):
        response = await client.post(
            "/dashboard/login", data={"token": secret}, allow_redirects=False
        )
        html = await response.text()
        assert response.status == 401
        assert "Set-Cookie" not in response.headers
        assert LOGIN_FORM in html and "That token is not valid." in html
        assert "Acme" not in html and "expired" not in html
        answers.append(html)
    # Unknown and expired look the same: nothing about the token is revealed.
    assert answers[0] == answers[1]


async def test_a_client_token_sees_its_own_tenant_read_only(client, acme, beta, conn):
    """Issue 16: a role sees what its API rights allow; a client token only its own tenant,
    and no form that changes anything."""
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


async def test_a_revoked_or_expired_token_sends_the_next_request_back_to_login(client, acme, conn):
    revoked = await api_tokens.create_token(conn, role="compliance", tenant_id=acme.tenant)
    expiring = await api_tokens.create_token(conn, role="marketing", tenant_id=acme.tenant)
    for made, end in ((revoked, api_tokens.revoke_token), (expiring, api_tokens.expire_token)):
        cookie = await sign_in(client, made.secret)
        assert "Staff dashboard: Acme News" in await page(client, cookie)
        await end(conn, made.id)
        response = await client.get("/dashboard", headers=cookie)
        html = await response.text()
        assert response.status == 401
        assert LOGIN_FORM in html and "Acme News" not in html
        cleared = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
        assert cleared.value == "" and cleared["path"] == "/dashboard"
        assert cleared["max-age"] == "0"


async def test_sign_out_clears_the_cookie(client, acme, conn):
    cookie = await sign_in(client, await token(conn, "marketing", acme))
    response = await client.post("/dashboard/logout", headers=cookie, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    cleared = SimpleCookie(response.headers["Set-Cookie"])[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert cleared["path"] == "/dashboard"


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
