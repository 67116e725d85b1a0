"""Acceptance (issue 22): people subscribe, then leave by one-click, by mailto and by the
preference centre, are suppressed by staff and erased; a receiving server on loopback gets
each event once, in order per subscriber, signed so that the Standard Webhooks reference
library verifies it (STANDARDS 63, 64); the erased person's events carry no address."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from standardwebhooks.webhooks import Webhook

from mailer import event_endpoints
from mailer.consent import suppression_lists
from mailer.rights import erasure
from mailer.tokens import LinkClaims, Purpose
from tests.integration.events.test_delivery import drain
from tests.support.inbound_world import inbound_server, make_world, send_smtplib
from unsubscribe_web.app import create_app

PEOPLE = ("ann", "bob", "cat", "dan", "eve")


async def test_every_opt_out_reaches_the_receiver_once_in_order_and_verified(
    conn, db_dsn, pool, event_settings, receiver, aiohttp_client
):
    settings = event_settings
    world = await make_world(conn, settings)
    created = await event_endpoints.create(
        conn, settings, tenant_id=world.tenant_id, url=receiver.url, include_address=True
    )
    ids = {name: await world.person(f"{name}@example.org") for name in PEOPLE}
    client = await aiohttp_client(create_app(settings))
    keyring = settings.keyring()

    # ann: one-click (RFC 8058 POST) from her mail client.
    token = keyring.sign(
        LinkClaims.issue(Purpose.ONE_CLICK, world.tenant_id, ids["ann"], world.topic_id)
    )
    response = await client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status == 200
    # bob: a mail to the List-Unsubscribe mailto address.
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(
            inbound.port,
            "bob@example.org",
            [world.unsubscribe_address(ids["bob"])],
            b"From: bob@example.org\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n",
        )
    assert replies.data[0] == 250
    # cat: the preference centre, "unsubscribe from all".
    prefs = keyring.sign(LinkClaims.issue(Purpose.PREFERENCES, world.tenant_id, ids["cat"]))
    page = await (await client.get(f"/p/{prefs}")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    response = await client.post(
        f"/p/{prefs}", data={"csrf": csrf.group(1), "action": "unsubscribe_all"}
    )
    assert response.status == 200
    # dan: suppressed by staff; eve: erased.
    assert await suppression_lists.suppress_address(
        conn,
        hash_key=settings.hash_key,
        tenant_id=world.tenant_id,
        email="dan@example.org",
        reason="complaint",
        source="staff",
    )
    await erasure.erase_subscriber(
        conn, tenant_id=world.tenant_id, subscriber_id=ids["eve"], by="staff"
    )

    await drain(pool, settings)
    verifier = Webhook(created.secret)
    by_person: dict[int, list[dict[str, Any]]] = defaultdict(list)
    seen_ids = []
    for got in receiver.received:
        event = verifier.verify(got.body, got.headers)  # raises unless signed by our secret
        assert got.headers["webhook-id"] == event["id"]
        seen_ids.append(event["id"])
        by_person[event["data"]["subscriber_id"]].append(event)
    assert len(seen_ids) == len(set(seen_ids))  # each event once

    def story(name):
        return [
            (e["type"], e["data"].get("scope"), e["data"].get("channel"))
            for e in by_person[ids[name]]
        ]

    joined = [("subscriber.subscribed", None, "import")] * 2
    assert story("ann") == [*joined, ("subscriber.unsubscribed", "topic", "one_click")]
    assert story("bob") == [*joined, ("subscriber.unsubscribed", "topic", "mailto")]
    assert story("cat") == [
        *joined,
        ("subscriber.unsubscribed", "all_marketing", "preference_centre"),
    ]
    assert story("dan") == [*joined, ("subscriber.suppressed", None, "staff")]
    assert story("eve") == [
        *joined,
        ("subscriber.suppressed", None, "erasure"),
        ("subscriber.unsubscribed", "topic", "erasure"),
        ("subscriber.unsubscribed", "topic", "erasure"),
        ("subscriber.erased", None, None),
    ]
    # Addresses were asked for: everyone's events carry theirs, read at delivery; the erased
    # person's carry none (all of hers were delivered after the erasure).
    assert by_person[ids["ann"]][-1]["data"]["email"] == "ann@example.org"
    assert all("email" not in e["data"] for e in by_person[ids["eve"]])
    assert all(b"eve@example.org" not in r.body for r in receiver.received)
    # Nothing is left to deliver, and nothing goes twice.
    before = len(receiver.received)
    await drain(pool, settings)
    assert len(receiver.received) == before
