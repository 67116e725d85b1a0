"""The self-service pages behind the single-use data link, through the real app: GET changes
nothing, the link works once, download, correct, change address (confirmed from the new
mailbox), delete with a POST confirmation."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from mailer import tenants
from mailer.consent import writer as consent
from mailer.rights import privacy
from tests.conftest import TEST_HASH_KEY, probes
from unsubscribe_web.app import create_app

EMAIL = "ada@example.org"


@pytest.fixture
async def person(conn):
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    result = await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=tenant["id"],
        topic_id=topic["id"],
        email=EMAIL,
        name="Ada",
        age_attested=True,
        source="import",
        confirmed=True,
        lawful_basis="consent",
    )
    return {"tenant": tenant["id"], "subscriber": result.subscriber_id}


async def mailed_link(conn, recipient):
    [*_, delivery] = [d async for d in probes().transactional_to(conn, recipient=recipient)]
    url = delivery["payload"].get("access_url") or delivery["payload"]["confirm_url"]
    assert url.startswith("https://optout.test/d/")
    return url.removeprefix("https://optout.test"), delivery


async def test_the_data_link_opens_download_correct_and_delete(
    conn, settings, person, aiohttp_client
):
    """STANDARDS 15, 39, 40: GET and HEAD change nothing; the link works once."""
    await privacy.send_data_link(
        conn, settings, tenant_id=person["tenant"], subscriber_id=person["subscriber"]
    )
    path, delivery = await mailed_link(conn, EMAIL)
    assert delivery["template"] == "data_access"
    client = await aiohttp_client(create_app(settings))

    for method in (client.get, client.head):
        response = await method(path)
        assert response.status == 200
    link_id = int((await rows_of_links(conn))[0]["id"])
    assert (await probes().link_row(conn, id=link_id))["used_at"] is None

    response = await client.post(path, allow_redirects=False)
    assert response.status == 303
    session = response.headers["Location"]
    assert session.startswith("/data/")
    again = await client.post(path, allow_redirects=False)
    assert again.status == 400
    assert "already used" in await again.text()

    page = await (await client.get(session)).text()
    assert EMAIL in page

    response = await client.post(session + "/download")
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(await response.text())
    assert data["profile"]["email"] == EMAIL
    assert {"subscriptions", "consent_history", "deliveries", "bounces", "requests"} <= set(data)
    assert data["subscriptions"][0]["slug"] == "news"

    response = await client.post(
        session + "/name", data={"name": "Ada King"}, allow_redirects=False
    )
    assert response.status == 303
    assert "Ada King" in await (await client.get(session)).text()

    response = await client.get(session + "/delete")
    assert response.status == 200
    assert 'method="post"' in await response.text()
    row = await probes().subscriber_row(conn, id=person["subscriber"])
    assert row["status"] == "active"
    response = await client.post(session + "/delete")
    assert response.status == 200
    assert "Your data is deleted" in await response.text()
    row = await probes().subscriber_row(conn, id=person["subscriber"])
    assert (row["status"], row["email"]) == ("erased", None)
    assert (await client.get(session)).status == 400  # the session ends with the person


async def rows_of_links(conn):
    return [r async for r in probes().all_links(conn)]


async def test_a_new_address_changes_only_once_confirmed_from_that_mailbox(
    conn, settings, person, aiohttp_client
):
    """STANDARDS 39: an email change needs re-verification."""
    await privacy.send_data_link(
        conn, settings, tenant_id=person["tenant"], subscriber_id=person["subscriber"]
    )
    path, _ = await mailed_link(conn, EMAIL)
    client = await aiohttp_client(create_app(settings))
    session = (await client.post(path, allow_redirects=False)).headers["Location"]

    bad = await client.post(session + "/address", data={"email": "not an address"})
    assert bad.status == 400
    response = await client.post(session + "/address", data={"email": "ada.new@example.org"})
    assert response.status == 200
    assert "Check your new mailbox" in await response.text()
    row = await probes().subscriber_row(conn, id=person["subscriber"])
    assert row["email"] == EMAIL  # not yet

    confirm_path, delivery = await mailed_link(conn, "ada.new@example.org")
    assert delivery["template"] == "confirm_address"
    assert (await client.get(confirm_path)).status == 200
    response = await client.post(confirm_path)
    assert response.status == 200
    assert "ada.new@example.org" in await response.text()
    row = await probes().subscriber_row(conn, id=person["subscriber"])
    assert row["email"] == "ada.new@example.org"


async def test_an_expired_or_forged_link_shows_an_error_and_changes_nothing(
    conn, settings, person, aiohttp_client
):
    """STANDARDS 6"""
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    token = await privacy.create_data_link(
        conn,
        settings.keyring(),
        tenant_id=person["tenant"],
        subscriber_id=person["subscriber"],
        purpose="access",
        now=old,
    )
    client = await aiohttp_client(create_app(settings))
    assert (await client.get(f"/d/{token}")).status == 400
    assert (await client.post(f"/d/{token}")).status == 400
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert (await client.post(f"/d/{forged}")).status == 400
    assert (await client.get(f"/data/{token}")).status == 400  # a mail token is no session
    [link] = await rows_of_links(conn)
    assert (await probes().link_row(conn, id=link["id"]))["used_at"] is None


async def test_a_request_is_verified_by_the_link_mailed_to_that_address(
    conn, settings, person, aiohttp_client
):
    """STANDARDS 38: nothing runs before the address is verified (GDPR Art. 12(6))."""
    tenant = await tenants.get_tenant(conn, "acme")
    now = dt.datetime.now(dt.UTC)
    row = await privacy.create_request(
        conn, hash_key=TEST_HASH_KEY, tenant=tenant, kind="erase", email=EMAIL, now=now
    )
    ghost = await privacy.create_request(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant=tenant,
        kind="erase",
        email="ghost@example.org",
        now=now,
    )
    assert await privacy.send_verification(
        conn, settings, tenant_id=tenant["id"], request_id=row["id"]
    )
    assert not await privacy.send_verification(
        conn, settings, tenant_id=tenant["id"], request_id=ghost["id"]
    )
    assert [d async for d in probes().transactional_to(conn, recipient="ghost@example.org")] == []
    path, delivery = await mailed_link(conn, EMAIL)
    assert delivery["template"] == "verify_request"
    assert delivery["payload"]["what"] == "the deletion of your data"

    client = await aiohttp_client(create_app(settings))
    response = await client.get(path)
    assert "Confirm your request" in await response.text()
    assert (await probes().request_row(conn, id=row["id"]))["status"] == "awaiting_verification"
    response = await client.post(path)
    assert "your request is confirmed" in await response.text()
    verified = await probes().request_row(conn, id=row["id"])
    assert verified["status"] == "open" and verified["verified_at"] is not None
    # Verified is not done: the erasure itself is staff's next step, and nothing is erased yet.
    assert (await probes().subscriber_row(conn, id=person["subscriber"]))["status"] == "active"
