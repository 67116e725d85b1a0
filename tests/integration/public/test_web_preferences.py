"""The preference centre: state shown, each change one ledger row, CSRF bound to the link,
and no data revealed or destroyed from the never-expiring link."""

from __future__ import annotations

import re

import pytest

from mailer.db import rows
from tests.conftest import probes
from tests.support.web import seed
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=2)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def events(conn, subscriber):
    return [dict(r) for r in await rows(probes().events_of(conn, subscriber_id=subscriber))]


async def open_page(client, token):
    response = await client.get(f"/p/{token}")
    assert response.status == 200
    page = await response.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    return page, csrf.group(1)


def form(csrf, **fields):
    return {"csrf": csrf, **fields}


async def test_page_lists_every_topic_with_its_state(client, conn, world):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    page, _ = await open_page(client, world.preferences(ada))
    for topic, checked in (("news", True), ("offers", True), ("notices", False)):
        box = re.search(rf'name="topic-{world.topics[topic]}" value="on"( checked)?', page)
        assert box and bool(box.group(1)) == checked, topic
    assert "Unsubscribe from all marketing" in page
    assert 'name="partner"' in page
    assert "person0@example.org" not in page
    assert await probes().web_state(conn) == before  # GET changes nothing


async def test_each_change_writes_one_ledger_row(client, conn, world):
    ada = world.subscribers[0]
    token = world.preferences(ada)
    _, csrf = await open_page(client, token)
    start = len(await events(conn, ada))
    # Untick offers, tick notices, grant partner sharing, set a name: three consent changes.
    data = form(
        csrf,
        action="save",
        name="Ada",
        partner="on",
        **{f"topic-{world.topics['news']}": "on", f"topic-{world.topics['notices']}": "on"},
    )
    response = await client.post(f"/p/{token}", data=data, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == f"/p/{token}?done=saved"
    new = (await events(conn, ada))[start:]
    assert sorted((e["action"], e["source"]) for e in new) == [
        ("partner_grant", "preference_centre"),
        ("subscribe", "preference_centre"),  # notices: never joined before
        ("unsubscribe", "preference_centre"),
    ]
    assert all(e["evidence_id"] is not None for e in new)
    page, _ = await open_page(client, token)
    assert re.search(rf'name="topic-{world.topics["offers"]}" value="on">', page)
    assert re.search(rf'name="topic-{world.topics["notices"]}" value="on" checked', page)
    assert 'value="Ada"' in page
    # Saving the same choices again writes nothing.
    response = await client.post(f"/p/{token}", data=data, allow_redirects=False)
    assert response.status == 303
    assert len(await events(conn, ada)) == start + 3


async def test_unsubscribe_from_all_marketing(client, conn, world):
    """STANDARDS 31: the menu includes "all"; every marketing list is left."""
    ada = world.subscribers[0]
    token = world.preferences(ada)
    _, csrf = await open_page(client, token)
    response = await client.post(f"/p/{token}", data=form(csrf, action="unsubscribe_all"))
    assert response.status == 200
    assert "unsubscribed from all marketing" in await response.text()
    for topic in ("news", "offers"):
        assert (
            await probes().subscription_state(conn, subscriber_id=ada, topic_id=world.topics[topic])
            == "unsubscribed"
        )
    assert (await events(conn, ada))[-1]["action"] == "unsubscribe_all"


@pytest.mark.parametrize("csrf", [None, "", "A" * 24, "wrong"])
async def test_missing_or_wrong_csrf_changes_nothing(client, conn, world, csrf):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    data = {"action": "unsubscribe_all"}
    if csrf is not None:
        data["csrf"] = csrf
    response = await client.post(f"/p/{world.preferences(ada)}", data=data)
    assert response.status == 403
    assert "could not be verified" in await response.text()
    assert await probes().web_state(conn) == before


async def test_csrf_token_is_bound_to_its_link(client, conn, world):
    ada, bob = world.subscribers
    _, ada_csrf = await open_page(client, world.preferences(ada))
    before = await probes().web_state(conn)
    response = await client.post(
        f"/p/{world.preferences(bob)}", data=form(ada_csrf, action="unsubscribe_all")
    )
    assert response.status == 403
    assert await probes().web_state(conn) == before


async def test_data_request_mails_a_one_hour_link_and_shows_nothing(client, conn, world):
    """DESIGN G5: the preference link alone cannot download or erase data; it queues a mail
    with a single-use, one-hour link to the subscriber's own address."""
    ada = world.subscribers[0]
    token = world.preferences(ada)
    _, csrf = await open_page(client, token)
    before = await probes().web_state(conn)
    response = await client.post(f"/p/{token}", data=form(csrf, action="data_link"))
    page = await response.text()
    assert response.status == 200 and "We sent a link to your address" in page
    assert "person0@example.org" not in page and "/d/" not in page
    queued = await rows(probes().transactional_deliveries(conn))
    assert len(queued) == 1
    assert queued[0]["recipient"] == "person0@example.org"
    assert queued[0]["template"] == "data_access"
    assert queued[0]["payload"]["access_url"].startswith("https://optout.test/d/")
    after = await probes().web_state(conn)
    assert after["subscribers"] == before["subscribers"]
    assert after["subscriptions"] == before["subscriptions"]
    link = after["action_links"][0]
    assert link["purpose"] == "access" and link["used_at"] is None
    # No route of the preference link exports or erases anything.
    for path in ("export", "download", "erase", "delete"):
        response = await client.get(f"/p/{token}/{path}")
        assert response.status == 404
    response = await client.post(f"/p/{token}", data=form(csrf, action="erase"))
    assert response.status == 400
    assert (await probes().web_state(conn))["subscribers"] == before["subscribers"]


async def test_bad_preference_tokens_are_refused(client, world):
    ada = world.subscribers[0]
    for token in (world.one_click(ada), world.preferences(ada)[:-2], "abc"):
        response = await client.get(f"/p/{token}")
        assert response.status in (400, 404)
