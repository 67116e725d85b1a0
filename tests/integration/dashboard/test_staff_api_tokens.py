"""API tokens made by a person (issue 24, item 9): named, expiring, with the person's role where
they make it, shown once, listed with their last use, revocable; a role change revokes them."""

from __future__ import annotations

import re

import pytest

from mailer import staff_accounts
from tests.support.api_world import bearer, sending_settings
from tests.support.staff import account_for
from tests.support.workspace import Tenant, csrf_of, ready_tenant, sign_in
from unsubscribe_web.app import create_app


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


@pytest.fixture
async def acme(conn, settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, settings, tmp_path, "acme", people=1)


async def test_a_person_makes_a_named_expiring_token_seen_once(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["marketing"])
    page = await (await client.get("/dashboard/account", headers=cookie)).text()
    made = await client.post(
        "/dashboard/account/tokens",
        data={"csrf": csrf_of(page), "name": "crm sync", "tenant": "acme", "days": "30"},
        headers=cookie,
    )
    text = await made.text()
    assert made.status == 200, text
    found = re.search(r'<code id="token-secret">(optout_[^<]+)</code>', text)
    assert found
    secret = found.group(1)
    me = await client.get("/api/v1/me", headers=bearer(secret))
    assert me.status == 200 and (await me.json())["role"] == "marketing"
    listed = await (await client.get("/dashboard/account", headers=cookie)).text()
    assert secret not in listed and "crm sync" in listed
    row = re.search(r'<tr id="token-\d+">(.*?)</tr>', listed, re.S)
    assert row and "marketing" in row.group(1) and "UTC" in row.group(1)  # last used: now

    # Refused: no name, an expiry past a year, another tenant.
    for data in ({"name": "", "days": "30"}, {"name": "x", "days": "9999"}):
        bad = await client.post(
            "/dashboard/account/tokens",
            data={"csrf": csrf_of(page), "tenant": "acme"} | data,
            headers=cookie,
        )
        assert bad.status == 400
    elsewhere = await client.post(
        "/dashboard/account/tokens",
        data={"csrf": csrf_of(page), "name": "x", "tenant": "beta", "days": "3"},
        headers=cookie,
    )
    assert elsewhere.status == 404

    # A change of the person's role revokes what they made.
    account = await account_for(conn, "marketing", acme.id)
    await staff_accounts.set_role(conn, account, tenant_id=acme.id, role="client", actor="test")
    assert (await client.get("/api/v1/me", headers=bearer(secret))).status == 401
