"""Staff help themselves (issue 24, where it is silent): "forgot your password" mails a reset
link to an active account, answers the same for any address, and cannot be used to flood an
inbox; and every sign-in and sign-out is in the audit log, naming the account and the method."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest

from mailer.passwords import Hasher
from tests.support.api_world import sending_settings
from tests.support.staff import person, staff_probes
from tests.support.web import seed
from tests.support.workspace import session_cookie
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.accounts import FORGOT_PER_ADDRESS, RESET_SENT

PASSWORD = "correct horse battery staple"
EMAIL = "ada@acme.example"
SENDER = "optout@install.example"


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


@pytest.fixture
async def client(aiohttp_client, settings):
    staff = dataclasses.replace(settings.staff, mail_from=SENDER)
    return await aiohttp_client(
        create_app(dataclasses.replace(sending_settings(settings), staff=staff))
    )


async def ask(client, email: str, ip: str = "198.51.100.7"):
    return await client.post(
        "/dashboard/forgot", data={"email": email}, headers={"X-Forwarded-For": ip}
    )


async def mails(conn) -> list[Any]:
    return [r async for r in staff_probes().staff_mail_rows(conn)]


async def test_forgot_password_mails_a_link_that_sets_a_new_password(client, ada, conn):
    page = await client.get("/dashboard")
    assert 'href="/dashboard/forgot"' in await page.text()
    form = await client.get("/dashboard/forgot")
    assert form.status == 200 and "Mail me a reset link" in await form.text()

    answer = await ask(client, EMAIL.upper())
    assert answer.status == 200 and RESET_SENT in await answer.text()
    [queued] = await mails(conn)
    assert queued["recipient"] == EMAIL and queued["template"] == "staff_reset"
    payload = queued["payload"]
    url = (json.loads(payload) if isinstance(payload, str) else payload)["url"]
    path = re.sub(r"^https?://[^/]+", "", url)

    new = "a fresh passphrase for ada"
    done = await client.post(path, data={"password": new, "password_again": new})
    assert done.status == 200 and "Your password is set" in await done.text()
    signed = await client.post(
        "/dashboard/login", data={"email": EMAIL, "password": new}, allow_redirects=False
    )
    assert signed.status == 303


async def test_the_answer_is_the_same_for_unknown_addresses_and_an_inbox_is_not_flooded(
    client, ada, conn
):
    known = await ask(client, EMAIL)
    unknown = await ask(client, "nobody@acme.example")
    assert (known.status, await known.text()) == (unknown.status, await unknown.text())
    assert len(await mails(conn)) == 1  # only the real account got mail

    # Past the per-address limit the answer does not change, but no more mail goes out, even
    # when the requests come from many addresses.
    for n in range(FORGOT_PER_ADDRESS.count + 2):
        again = await ask(client, EMAIL, ip=f"192.0.2.{n + 1}")
        assert again.status == 200 and RESET_SENT in await again.text()
    assert len(await mails(conn)) == FORGOT_PER_ADDRESS.count


async def test_forgot_password_is_refused_from_another_site_and_without_staff_mail(
    aiohttp_client, settings, ada, conn
):
    client = await aiohttp_client(create_app(sending_settings(settings)))  # no staff sender
    page = await client.get("/dashboard/forgot")
    text = await page.text()
    assert "sends no staff mail" in text and 'name="email"' not in text
    assert (await ask(client, EMAIL)).status == 503
    assert await mails(conn) == []

    mailing = dataclasses.replace(settings.staff, mail_from=SENDER)
    client = await aiohttp_client(
        create_app(dataclasses.replace(sending_settings(settings), staff=mailing))
    )
    cross = await client.post(
        "/dashboard/forgot",
        data={"email": EMAIL},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status == 403
    assert await mails(conn) == []


async def test_sign_ins_and_sign_outs_are_audited_with_the_account_and_method(client, ada, conn):
    signed = await client.post(
        "/dashboard/login", data={"email": EMAIL, "password": PASSWORD}, allow_redirects=False
    )
    assert signed.status == 303
    wrong = await client.post(
        "/dashboard/login", data={"email": EMAIL, "password": "not the password"}
    )
    assert wrong.status == 401
    cookie = session_cookie(signed.headers["Set-Cookie"])
    assert (await client.get("/dashboard", headers=cookie)).status == 200
    out = await client.post("/dashboard/logout", headers=cookie, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/dashboard", headers=cookie)).status == 401
    lines = [
        (r["action"], r["actor"], r["target_id"], r["detail"])
        for r in [r async for r in staff_probes().audit_rows(conn)]
        if r["action"].startswith("staff.sign")
    ]
    assert [line[:3] for line in lines] == [
        ("staff.sign_in", f"account:{ada}:self", ada),
        ("staff.sign_out", f"account:{ada}:self", ada),
    ]
    assert lines[0][3] == {"method": "password"}
