"""The one-click endpoint and the landing page, driven through the real app on real Postgres."""

from __future__ import annotations

import re

import aiohttp
import pytest

from mailer.db import rows
from mailer.tokens import LinkClaims, Purpose
from tests.conftest import probes
from tests.support.web import seed
from unsubscribe_web.app import create_app

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=2)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def state(conn, world, subscriber, topic="news"):
    return await probes().subscription_state(
        conn, subscriber_id=subscriber, topic_id=world.topics[topic]
    )


async def events(conn, subscriber):
    return [dict(r) for r in await rows(probes().events_of(conn, subscriber_id=subscriber))]


def assert_no_redirect_or_cookie(response):
    assert not 300 <= response.status < 400
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers


async def test_one_click_urlencoded_unsubscribes_without_cookies(client, conn, world):
    """STANDARDS 8, 11, 5: Gmail's urlencoded POST, no cookie, auth, Origin or Referer."""
    ada, bob = world.subscribers
    response = await client.post(
        f"/u/{world.one_click(ada)}", data=ONE_CLICK, skip_auto_headers=["User-Agent"]
    )
    assert response.status == 200
    assert_no_redirect_or_cookie(response)
    assert "You are unsubscribed" in await response.text()
    assert await state(conn, world, ada) == "unsubscribed"
    # Only that recipient's subscription to that list changed.
    assert await state(conn, world, ada, "offers") == "confirmed"
    assert await state(conn, world, bob) == "confirmed"
    unsubscribes = [e for e in await events(conn, ada) if e["action"] == "unsubscribe"]
    assert [(e["source"], e["topic_id"]) for e in unsubscribes] == [
        ("one_click", world.topics["news"])
    ]
    proof = await probes().evidence(conn, id=unsubscribes[0]["evidence_id"])
    assert str(proof["ip"]) == "127.0.0.1" and proof["user_agent"] is None
    assert proof["detail"] == {"channel": "one_click"}


async def test_one_click_multipart_unsubscribes(client, conn, world):
    """STANDARDS 9: the multipart/form-data encoding RFC 8058 prefers."""
    form = aiohttp.FormData()
    form.add_field("List-Unsubscribe", "One-Click")
    form.add_field("extra", "x", filename="x.txt", content_type="text/plain")
    ada = world.subscribers[0]
    response = await client.post(f"/u/{world.one_click(ada)}", data=form)
    assert response.status == 200
    assert_no_redirect_or_cookie(response)
    assert await state(conn, world, ada) == "unsubscribed"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", None),
        (b"", "application/x-www-form-urlencoded"),
        (b"\x00\xffjunk", "text/plain"),
        (b"--broken", "multipart/form-data; boundary=zz"),
    ],
)
async def test_one_click_any_body_unsubscribes(client, conn, world, body, content_type):
    """RFC 8058: an empty or odd body is logged, not refused."""
    headers = {"Content-Type": content_type} if content_type else {}
    ada = world.subscribers[0]
    response = await client.post(f"/u/{world.one_click(ada)}", data=body, headers=headers)
    assert response.status == 200
    assert await state(conn, world, ada) == "unsubscribed"


async def test_repeat_post_is_idempotent(client, conn, world):
    """STANDARDS 13: both 200, one ledger row, unsubscribed_at unchanged."""
    ada = world.subscribers[0]
    url = f"/u/{world.one_click(ada)}"
    first = await client.post(url, data=ONE_CLICK)
    before = await probes().web_state(conn)
    second = await client.post(url, data=ONE_CLICK)
    assert (first.status, second.status) == (200, 200)
    assert_no_redirect_or_cookie(second)
    after = await probes().web_state(conn)
    assert after["events"] == before["events"]
    assert after["subscriptions"] == before["subscriptions"]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_get_and_head_change_nothing(client, conn, world, method):
    """STANDARDS 15, 16: scanners fetch every link; every table is the same afterwards."""
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    for _ in range(3):
        response = await client.request(method, f"/u/{world.one_click(ada)}")
        assert response.status == 200
    assert await probes().web_state(conn) == before
    assert await state(conn, world, ada) == "confirmed"


async def test_landing_page_offers_one_button_and_masks_the_address(client, world):
    """STANDARDS 12, 17, 18, 30: a form POSTing to the same URL, one submit button, no
    script, no meta refresh, sender and topic named, the address masked."""
    ada = world.subscribers[0]
    path = f"/u/{world.one_click(ada)}"
    response = await client.get(path)
    page = await response.text()
    assert re.search(rf'<form method="post" action="{re.escape(path)}">', page)
    assert page.count('type="submit"') == 1
    assert "<script" not in page.lower() and "http-equiv" not in page.lower()
    assert "Acme" in page and "Weekly news" in page
    assert "person0@example.org" not in page and "p***@e***.org" in page
    assert re.search(r'href="/p/[A-Za-z0-9_-]+"', page)
    assert "noindex" in response.headers["X-Robots-Tag"]


async def test_landing_button_then_undo(client, conn, world):
    """Item 5: after the button, a confirmation with an undo that re-subscribes (source undo)."""
    ada = world.subscribers[0]
    response = await client.post(f"/u/{world.one_click(ada)}", data={"via": "page"})
    page = await response.text()
    assert response.status == 200 and "You are unsubscribed" in page
    undo = re.search(r'<form method="post" action="(/undo/[A-Za-z0-9_-]+)">', page)
    assert undo
    assert await state(conn, world, ada) == "unsubscribed"
    response = await client.post(undo.group(1))
    assert response.status == 200
    assert "You are subscribed again" in await response.text()
    assert await state(conn, world, ada) == "confirmed"
    log = [(e["action"], e["source"]) for e in await events(conn, ada)][-2:]
    assert log == [("unsubscribe", "landing_page"), ("resubscribe", "undo")]
    # Undo twice: nothing more happens.
    again = await client.post(undo.group(1))
    assert again.status == 200
    assert len(await events(conn, ada)) == 4  # two imports, unsubscribe, resubscribe


async def test_undo_link_expires_after_30_days(world):
    claims = LinkClaims.issue(Purpose.UNDO, world.tenant, 1, 1, now=0)
    assert claims.expires_at == 30 * 86_400


def flipped(token: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    char = token[at]
    return token[:at] + alphabet[(alphabet.index(char) + 1) % 64] + token[at + 1 :]


async def test_bad_tokens_get_a_clear_4xx_and_change_nothing(client, conn, world):
    """STANDARDS 6, 10: flipped, truncated, wrong-purpose or foreign tokens: 4xx, no redirect,
    nothing changed."""
    ada = world.subscribers[0]
    good = world.one_click(ada)
    bad = [
        flipped(good, 3),
        flipped(good, len(good) // 2),
        good[:-1],
        good[:-4],
        good + "A",
        "x" * 40,
        world.preferences(ada),  # a preference token cannot unsubscribe
        world.keyring.sign(LinkClaims.issue(Purpose.CONFIRM, world.tenant, ada, 1)),
    ]
    before = await probes().web_state(conn)
    for token in bad:
        for method in ("GET", "POST"):
            response = await client.request(method, f"/u/{token}", data=ONE_CLICK)
            assert 400 <= response.status < 500, token
            assert_no_redirect_or_cookie(response)
            assert "not valid" in await response.text()
    assert await probes().web_state(conn) == before


async def test_oversized_body_is_refused_and_changes_nothing(client, conn, world):
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    response = await client.post(
        f"/u/{world.one_click(ada)}",
        data=b"List-Unsubscribe=One-Click&pad=" + b"x" * 200_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 413
    assert "too large" in await response.text()
    assert await probes().web_state(conn) == before


async def test_unknown_topic_in_a_genuine_token_is_404(client, conn, world):
    ada = world.subscribers[0]
    token = world.keyring.sign(LinkClaims.issue(Purpose.ONE_CLICK, world.tenant, ada, 999_999))
    before = await probes().web_state(conn)
    response = await client.post(f"/u/{token}", data=ONE_CLICK)
    assert response.status == 404
    assert await probes().web_state(conn) == before


async def test_every_one_character_change_is_refused(client, conn, world):
    """STANDARDS 6: whichever character of a genuine token changes, the endpoint refuses it
    and nothing changes."""
    ada = world.subscribers[0]
    good = world.one_click(ada)
    before = await probes().web_state(conn)
    for at in range(len(good)):
        response = await client.post(f"/u/{flipped(good, at)}", data=ONE_CLICK)
        assert response.status == 400, at
    assert await probes().web_state(conn) == before
    assert (await client.post(f"/u/{good}", data=ONE_CLICK)).status == 200
