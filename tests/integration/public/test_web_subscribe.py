"""Sign-up (double opt-in) and confirmation: the box unticked, consent recorded, the answer the
same for every address, a GET never confirms."""

from __future__ import annotations

import re

import pytest

from mailer.db import rows
from tests.conftest import probes
from tests.support.web import seed
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=1)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


SIGNUP = "/s/acme/news"


def confirm_path(delivery):
    url = delivery["payload"]["confirm_url"]
    assert url.startswith("https://optout.test/c/")
    return url.removeprefix("https://optout.test")


async def queued(conn):
    return await rows(probes().transactional_deliveries(conn))


async def test_form_shows_unticked_age_box_and_consent_text(client, conn, world):
    """STANDARDS 35: the box is not pre-ticked; the consent text names the policy version."""
    before = await probes().web_state(conn)
    response = await client.get(SIGNUP)
    page = await response.text()
    assert response.status == 200
    box = re.search(r'<input type="checkbox" name="age"[^>]*>', page)
    assert box and "checked" not in box.group(0)
    assert "I am over 13" in page
    assert "Privacy policy version" in page
    assert await probes().web_state(conn) == before


async def test_sign_up_then_confirm_by_post_only(client, conn, world):
    """STANDARDS 19, 35: a GET on the confirm link does not confirm; the POST does; the
    evidence keeps IP, user agent and the consent text shown."""
    response = await client.post(
        SIGNUP,
        data={"email": "New.Person@Example.org", "name": "New", "age": "yes"},
        headers={"User-Agent": "TestBrowser/1"},
    )
    assert response.status == 200
    assert "Check your inbox" in await response.text()
    [delivery] = await queued(conn)
    assert delivery["recipient"] == "New.Person@Example.org"
    assert delivery["template"] == "confirm"
    assert delivery["payload"]["list_name"] == "Weekly news"
    subscriber = delivery["subscriber_id"]
    topic = world.topics["news"]
    assert await probes().subscription_state(conn, subscriber_id=subscriber, topic_id=topic) == (
        "pending"
    )
    [event] = await rows(probes().events_of(conn, subscriber_id=subscriber))
    evidence = await probes().evidence(conn, id=event["evidence_id"])
    assert evidence["user_agent"] == "TestBrowser/1"
    assert "I agree that Acme may send me" in evidence["form_text"]
    assert evidence["detail"]["form"] == SIGNUP

    path = confirm_path(delivery)
    before = await probes().web_state(conn)
    for method in ("GET", "HEAD", "GET"):
        page = await client.request(method, path)
        assert page.status == 200
    assert await probes().web_state(conn) == before
    assert "Confirm my subscription" in await (await client.get(path)).text()

    response = await client.post(path)
    assert response.status == 200
    assert "You are subscribed" in await response.text()
    assert await probes().subscription_state(conn, subscriber_id=subscriber, topic_id=topic) == (
        "confirmed"
    )
    actions = [e["action"] for e in await rows(probes().events_of(conn, subscriber_id=subscriber))]
    assert actions == ["subscribe", "confirm"]
    # A second POST (a double click) changes nothing.
    assert (await client.post(path)).status == 200
    assert len(await rows(probes().events_of(conn, subscriber_id=subscriber))) == 2


async def test_answer_is_the_same_for_new_and_existing_addresses(client, conn, world):
    new = await client.post(SIGNUP, data={"email": "fresh@example.org", "age": "yes"})
    existing = await client.post(SIGNUP, data={"email": "person0@example.org", "age": "yes"})
    assert new.status == existing.status == 200
    assert await new.text() == await existing.text()
    # The confirmed subscriber gets no second confirmation; the new one does.
    assert [d["recipient"] for d in await queued(conn)] == ["fresh@example.org"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "someone@example.org"}, "confirm that you are over 13"),
        ({"email": "someone@example.org", "age": "on"}, "confirm that you are over 13"),
        ({"email": "not an address", "age": "yes"}, "valid email address"),
        ({"email": "a@b.c\r\nBcc: x@y.z", "age": "yes"}, "valid email address"),
    ],
)
async def test_bad_sign_ups_change_nothing(client, conn, world, data, message):
    before = await probes().web_state(conn)
    response = await client.post(SIGNUP, data=data)
    assert response.status == 400
    assert message in await response.text()
    assert await probes().web_state(conn) == before


async def test_unknown_tenant_or_topic_is_404(client):
    for path in ("/s/nobody/news", "/s/acme/nothing", "/s/ACME/news"):
        assert (await client.get(path)).status == 404
        assert (await client.post(path, data={"email": "a@b.org", "age": "yes"})).status == 404


async def test_rate_limits(client, conn, world):
    """Per address: later sign-ups are answered the same but send nothing more. Per IP: 429."""
    for _ in range(5):
        response = await client.post(SIGNUP, data={"email": "again@example.org", "age": "yes"})
        assert response.status == 200
    assert len(await queued(conn)) == 3
    statuses = []
    for n in range(20):
        response = await client.post(SIGNUP, data={"email": f"p{n}@example.org", "age": "yes"})
        statuses.append(response.status)
    assert statuses[:15] == [200] * 15
    assert statuses[-1] == 429


async def test_confirm_tokens_are_checked(client, conn, world):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    for token in (world.one_click(ada), world.preferences(ada), "Zm9v" * 8):
        assert (await client.post(f"/c/{token}")).status == 400
    assert await probes().web_state(conn) == before
