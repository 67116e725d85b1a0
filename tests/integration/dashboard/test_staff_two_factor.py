"""Two-factor sign-in and the person's own sessions (issue 24, items 3, 4 and 6) through the
real app on real Postgres: enrolment with a code the test computes, a code's time step used
once only, recovery codes once each, the waiting session opening nothing, and a password change
ending the other sessions."""

from __future__ import annotations

import dataclasses
import re
import time

import pyotp
import pytest

from mailer import staff_accounts
from mailer.config import StaffSettings
from mailer.passwords import Hasher
from mailer.totp import STEP
from tests.support.api_world import sending_settings
from tests.support.staff import person, staff_probes
from tests.support.web import seed
from tests.support.workspace import csrf_of, session_cookie
from unsubscribe_web.app import create_app

PASSWORD = "correct horse battery staple"
EMAIL = "ada@acme.example"


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


@pytest.fixture
async def ada(conn) -> int:
    world = await seed(conn, subscribers=1, slug="acme")
    return await person(
        conn,
        Hasher(),
        email=EMAIL,
        password=PASSWORD,
        role="marketing",
        tenant_id=world.tenant,
        name="Ada",
    )


def found(pattern: str, html: str) -> str:
    match = re.search(pattern, html)
    assert match, pattern
    return match.group(1)


async def password_step(client, password: str = PASSWORD):
    response = await client.post(
        "/dashboard/login",
        data={"email": EMAIL, "password": password},
        allow_redirects=False,
    )
    client.session.cookie_jar.clear()
    return response


async def sign_in(client) -> dict[str, str]:
    response = await password_step(client)
    assert response.status == 303 and response.headers["Location"] == "/dashboard"
    return session_cookie(response.headers["Set-Cookie"])


async def code_step(client, cookie: dict[str, str], code: str):
    response = await client.post(
        "/dashboard/login/code", data={"code": code}, headers=cookie, allow_redirects=False
    )
    client.session.cookie_jar.clear()
    return response


async def enrol(
    client, cookie: dict[str, str]
) -> tuple[pyotp.TOTP, list[str], dict[str, str], str]:
    page = await client.get("/dashboard/account", headers=cookie)
    html = await page.text()
    assert page.status == 200 and "<svg" in html  # the QR code, drawn here
    secret = found(r'<code id="totp-secret">([A-Z2-7]+)</code>', html)
    sealed = found(r'name="sealed" value="([^"]+)"', html)
    assert secret not in sealed
    totp = pyotp.TOTP(secret)
    used = totp.now()
    response = await client.post(
        "/dashboard/account/totp",
        data={"csrf": csrf_of(html), "sealed": sealed, "code": used},
        headers=cookie,
        allow_redirects=False,
    )
    text = await response.text()
    assert response.status == 200, text
    codes = re.findall(r"<li><code>([0-9a-f]{5}-[0-9a-f]{5})</code></li>", text)
    client.session.cookie_jar.clear()
    return totp, codes, session_cookie(response.headers["Set-Cookie"]), used


async def test_totp_codes_are_used_once_and_recovery_codes_once_each(client, ada, conn):
    first = await sign_in(client)
    totp, codes, enrolled, used = await enrol(client, first)
    assert len(codes) == 10 and len(set(codes)) == 10
    # A new session id on a new second factor: the one from before enrolment has ended.
    assert enrolled != first
    assert (await client.get("/dashboard", headers=first)).status == 401
    assert (await client.get("/dashboard", headers=enrolled)).status == 200

    # The password alone now leads to the code form; that waiting session opens nothing.
    waiting = await password_step(client)
    assert waiting.status == 303 and waiting.headers["Location"] == "/dashboard/login/code"
    pending = session_cookie(waiting.headers["Set-Cookie"])
    assert (await client.get("/dashboard", headers=pending)).status == 401
    denied = await client.get("/dashboard/t/acme/campaigns", headers=pending, allow_redirects=False)
    assert denied.status == 303
    # The code the enrolment used is refused now; the next step's code works.
    assert (await code_step(client, pending, used)).status == 401
    later = totp.at(time.time() + STEP)
    signed = await code_step(client, pending, later)
    assert signed.status == 303 and signed.headers["Location"] == "/dashboard"
    cookie = session_cookie(signed.headers["Set-Cookie"])
    assert cookie != pending
    home = await client.get("/dashboard", headers=cookie)
    assert home.status == 200 and "Signed in as Ada" in await home.text()

    # The same code again, on a new sign-in: refused (an accepted step never comes back).
    again = session_cookie((await password_step(client)).headers["Set-Cookie"])
    refused = await code_step(client, again, later)
    assert refused.status == 401 and "not right (or was used already)" in await refused.text()
    # Recovery codes work once each.
    assert (await code_step(client, again, codes[0])).status == 303
    again = session_cookie((await password_step(client)).headers["Set-Cookie"])
    assert (await code_step(client, again, codes[0])).status == 401
    assert (await code_step(client, again, codes[1].upper())).status == 303
    # The audit names how each sign-in was completed (refused codes sign nobody in).
    methods = [
        (r["actor"], r["detail"]["method"])
        async for r in staff_probes().audit_rows(conn)
        if r["action"] == "staff.sign_in"
    ]
    assert methods == [
        (f"account:{ada}:self", method)
        for method in ("password", "authenticator_code", "recovery_code", "recovery_code")
    ]


async def test_a_reset_second_factor_ends_sessions_and_sign_in_needs_only_the_password(
    client, ada, conn
):
    *_, cookie, _used = await enrol(client, await sign_in(client))
    await staff_accounts.reset_second_factor(conn, ada, actor="test")
    assert (await client.get("/dashboard", headers=cookie)).status == 401
    assert (await password_step(client)).headers["Location"] == "/dashboard"


async def test_a_password_change_ends_the_other_sessions(client, ada, conn):
    here, there = await sign_in(client), await sign_in(client)
    page = await (await client.get("/dashboard/account", headers=here)).text()
    assert page.count("End session") == 1  # the other one; this one says "this one"
    new = "an entirely new passphrase"
    wrong = await client.post(
        "/dashboard/account/password",
        data={
            "csrf": csrf_of(page),
            "current_password": "not my password",
            "new_password": new,
            "new_password_again": new,
        },
        headers=here,
        allow_redirects=False,
    )
    assert wrong.status == 403
    assert (await client.get("/dashboard", headers=there)).status == 200
    changed = await client.post(
        "/dashboard/account/password",
        data={
            "csrf": csrf_of(page),
            "current_password": PASSWORD,
            "new_password": new,
            "new_password_again": new,
        },
        headers=here,
        allow_redirects=False,
    )
    assert changed.status == 303
    assert (await client.get("/dashboard", headers=here)).status == 200
    assert (await client.get("/dashboard", headers=there)).status == 401
    assert (await password_step(client)).status == 401
    assert (await password_step(client, new)).status == 303


async def test_a_person_ends_one_of_their_sessions(client, ada):
    here, there = await sign_in(client), await sign_in(client)
    page = await (await client.get("/dashboard/account", headers=here)).text()
    other_id = found(r'action="/dashboard/account/sessions/(\d+)/end"', page)
    ended = await client.post(
        f"/dashboard/account/sessions/{other_id}/end",
        data={"csrf": csrf_of(page)},
        headers=here,
        allow_redirects=False,
    )
    assert ended.status == 303
    assert (await client.get("/dashboard", headers=there)).status == 401
    assert (await client.get("/dashboard", headers=here)).status == 200
    # Without the CSRF value nothing ends.
    refused = await client.post(
        f"/dashboard/account/sessions/{other_id}/end", headers=here, allow_redirects=False
    )
    assert refused.status == 403


async def test_required_two_factor_sends_admins_to_enrol_first(aiohttp_client, settings, conn):
    """OPTOUT_STAFF_TOTP_REQUIRED: an admin or compliance person without two-factor is sent to
    their own page to enrol; a marketer is not held up."""
    required = dataclasses.replace(settings, staff=StaffSettings(totp_required=True))
    client = await aiohttp_client(create_app(sending_settings(required)))
    world = await seed(conn, subscribers=1, slug="acme")
    for email, role in (("c@acme.example", "compliance"), ("m@acme.example", "marketing")):
        await person(
            conn, Hasher(), email=email, password=PASSWORD, role=role, tenant_id=world.tenant
        )
    signed = {}
    for email in ("c@acme.example", "m@acme.example"):
        response = await client.post(
            "/dashboard/login", data={"email": email, "password": PASSWORD}, allow_redirects=False
        )
        signed[email] = session_cookie(response.headers["Set-Cookie"])
        client.session.cookie_jar.clear()
    held = await client.get("/dashboard", headers=signed["c@acme.example"], allow_redirects=False)
    assert held.status == 303
    assert held.headers["Location"] == "/dashboard/account?enrol=required"
    page = await client.get(held.headers["Location"], headers=signed["c@acme.example"])
    assert "requires two-factor sign-in for your role" in await page.text()
    assert (await client.get("/dashboard", headers=signed["m@acme.example"])).status == 200
