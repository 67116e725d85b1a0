"""Event delivery (issue 22, items 5 and 6): signed per Standard Webhooks and verified with
the reference library, at least once, in order per subscriber, retried, abandoned after the
window, redelivered on request; the secret shown once and stored sealed."""

from __future__ import annotations

import asyncio
import dataclasses

from standardwebhooks.webhooks import Webhook

from mailer import event_endpoints
from mailer.consent import writer as consent
from mailer.event_delivery import Sender
from tests.integration.events.conftest import subscribe


async def drain(pool, settings, rounds: int = 50) -> None:
    """Run the sender until nothing is due (bounded)."""
    async with Sender(pool, settings) as sender:
        for _ in range(rounds):
            if await sender.run_once() == 0:
                return


async def test_events_arrive_signed_once_and_in_order(conn, pool, event_settings, receiver, world):
    """STANDARDS 63: the reference library verifies every delivery's signature."""
    created = await event_endpoints.create(
        conn, event_settings, tenant_id=world["tenant"], url=receiver.url
    )
    assert created.secret.startswith("whsec_")
    ada = await subscribe(conn, world, "ada@example.com")
    bob = await subscribe(conn, world, "bob@example.com")
    for person in (ada, bob):
        await consent.unsubscribe(
            conn,
            tenant_id=world["tenant"],
            subscriber_id=person,
            topic_id=world["news"],
            source="one_click",
        )
    await drain(pool, event_settings)
    verifier = Webhook(created.secret)
    verified = [verifier.verify(r.body, r.headers) for r in receiver.received]
    assert [
        (e["type"], e["data"]["subscriber_id"])
        for e in verified
        if e["data"]["subscriber_id"] == ada
    ] == [
        ("subscriber.subscribed", ada),
        ("subscriber.unsubscribed", ada),
    ]
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)) == 4  # each once
    assert all("email" not in e["data"] for e in verified)  # not asked for addresses
    # Nothing is due any more: no event goes twice.
    await drain(pool, event_settings)
    assert len(receiver.received) == 4


async def test_a_later_event_waits_behind_a_failing_earlier_one(
    conn, pool, event_settings, receiver, world
):
    created = await event_endpoints.create(
        conn, event_settings, tenant_id=world["tenant"], url=receiver.url
    )
    receiver.status = 503
    ada = await subscribe(conn, world, "ada@example.com")
    await consent.unsubscribe(
        conn, tenant_id=world["tenant"], subscriber_id=ada, topic_id=world["news"], source="mailto"
    )
    await drain(pool, event_settings, rounds=1)
    # Only the first event was tried: the unsubscribe waits behind it.
    assert [r.event["type"] for r in receiver.received] == ["subscriber.subscribed"]
    receiver.status = 200
    for _ in range(100):
        await asyncio.sleep(0.05)
        await drain(pool, event_settings, rounds=5)
        if any(r.event["type"] == "subscriber.unsubscribed" for r in receiver.received):
            break
    kinds = [r.event["type"] for r in receiver.received]
    assert kinds[-2:] == ["subscriber.subscribed", "subscriber.unsubscribed"]
    assert Webhook(created.secret).verify(receiver.received[-1].body, receiver.received[-1].headers)
    log = await event_endpoints.attempt_log(conn, world["tenant"], created.endpoint["id"])
    assert {row["status"] for row in log} == {503, 200}
    assert all(set(row) == {"at", "event_id", "status", "latency_ms", "error"} for row in log)


async def test_abandoned_after_the_window_then_redelivered(
    conn, pool, event_settings, receiver, world
):
    short = dataclasses.replace(
        event_settings, events=dataclasses.replace(event_settings.events, retry_for_seconds=0.2)
    )
    created = await event_endpoints.create(conn, short, tenant_id=world["tenant"], url=receiver.url)
    receiver.status = 500
    await subscribe(conn, world, "ada@example.com")
    for _ in range(40):
        await drain(pool, short, rounds=2)
        states = await event_endpoints_states(conn, world, created)
        if states == ["abandoned"]:
            break
        await asyncio.sleep(0.05)
    assert states == ["abandoned"]
    receiver.status = 204
    endpoint_id = created.endpoint["id"]
    event_id = int(receiver.received[0].event["id"].removeprefix("evt_"))
    redone = await event_endpoints.redeliver(
        conn, tenant_id=world["tenant"], endpoint_id=endpoint_id, event_id=event_id
    )
    assert redone == 1
    await drain(pool, short)
    assert await event_endpoints_states(conn, world, created) == ["delivered"]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # the same id each time


async def test_rotation_signs_with_both_secrets(conn, pool, event_settings, receiver, world):
    created = await event_endpoints.create(
        conn, event_settings, tenant_id=world["tenant"], url=receiver.url
    )
    rotated = await event_endpoints.rotate(
        conn, event_settings, tenant_id=world["tenant"], endpoint_id=created.endpoint["id"]
    )
    assert rotated.secret != created.secret
    await subscribe(conn, world, "ada@example.com")
    await drain(pool, event_settings)
    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(created.secret).verify(got.body, got.headers)
    Webhook(rotated.secret).verify(got.body, got.headers)


async def test_include_address_reads_it_at_delivery_and_never_after_erasure(
    conn, pool, event_settings, receiver, world
):
    from mailer.rights import erasure

    await event_endpoints.create(
        conn, event_settings, tenant_id=world["tenant"], url=receiver.url, include_address=True
    )
    ada = await subscribe(conn, world, "ada@example.com")
    await drain(pool, event_settings)
    assert receiver.events()[0]["data"]["email"] == "ada@example.com"
    await erasure.erase_subscriber(conn, tenant_id=world["tenant"], subscriber_id=ada, by="test")
    await drain(pool, event_settings)
    erased = [e for e in receiver.events() if e["type"] == "subscriber.erased"]
    assert len(erased) == 1 and "email" not in erased[0]["data"]
    assert all("email" not in e["data"] for e in receiver.events()[1:])


async def event_endpoints_states(conn, world, created):
    from mailer.db import queries, rows

    found = await rows(
        queries().events.delivery_states(
            conn, tenant_id=world["tenant"], endpoint_id=created.endpoint["id"]
        )
    )
    return [r["state"] for r in found]
