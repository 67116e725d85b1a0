"""Each endpoint's own timeout and concurrency (issue 22, item 6): a slow receiver is cut off
at the endpoint's timeout, not the installation's; the requests in flight, counted at the
receiver, never pass the endpoint's limit; both are set and checked by the API."""

from __future__ import annotations

import dataclasses

import pytest

from mailer import event_endpoints
from mailer.event_delivery import Sender
from tests.integration.events.conftest import subscribe
from tests.support.api_world import bearer, build_world
from tests.support.webhook_receiver import Receiver
from unsubscribe_web.app import create_app


async def drain(pool, settings, rounds: int = 50) -> None:
    async with Sender(pool, settings) as sender:
        for _ in range(rounds):
            if await sender.run_once() == 0:
                return


async def test_a_slow_receiver_times_out_at_the_endpoints_own_timeout(
    conn, pool, event_settings, receiver, world
):
    """The installation allows 5 s; one endpoint allows 1 s. A receiver that takes 2.5 s is
    cut off near 1 s for that endpoint, and answered in full for the other."""
    settings = dataclasses.replace(
        event_settings,
        events=dataclasses.replace(event_settings.events, timeout_seconds=5.0, retry_for_seconds=0),
    )
    receiver.delay = 2.5
    strict = await event_endpoints.create(
        conn, settings, tenant_id=world["tenant"], url=receiver.url, timeout_seconds=1
    )
    patient = await event_endpoints.create(
        conn, settings, tenant_id=world["tenant"], url=receiver.url
    )
    assert (strict.endpoint["timeout_seconds"], patient.endpoint["timeout_seconds"]) == (1, None)
    await subscribe(conn, world, "ada@example.com")
    await drain(pool, settings)
    [cut] = await event_endpoints.attempt_log(conn, world["tenant"], strict.endpoint["id"])
    [full] = await event_endpoints.attempt_log(conn, world["tenant"], patient.endpoint["id"])
    assert cut["error"] == "timeout" and cut["status"] is None
    assert 1000 <= cut["latency_ms"] < 2500
    assert full["error"] is None and full["status"] == 204
    assert full["latency_ms"] >= 2500


async def test_requests_in_flight_never_pass_the_endpoints_limit(conn, pool, event_settings, world):
    """The installation allows 8 at once; the endpoint 2, then 3 after a change. Measured at
    the receiver, the most at once is exactly the endpoint's limit."""
    settings = dataclasses.replace(
        event_settings, events=dataclasses.replace(event_settings.events, concurrency=8)
    )
    receiver = await Receiver(delay=0.2).start()
    try:
        created = await event_endpoints.create(
            conn, settings, tenant_id=world["tenant"], url=receiver.url, concurrency=2
        )
        endpoint_id = created.endpoint["id"]
        for i in range(12):
            await subscribe(conn, world, f"p{i}@example.com")
        await drain(pool, settings)
        assert len(receiver.received) == 12
        assert receiver.peak == 2
        await event_endpoints.update(
            conn,
            settings,
            tenant_id=world["tenant"],
            endpoint_id=endpoint_id,
            changes={"concurrency": 3},
        )
        receiver.peak = 0
        queued = await event_endpoints.redeliver(
            conn,
            tenant_id=world["tenant"],
            endpoint_id=endpoint_id,
            since=created.endpoint["created_at"],
        )
        assert queued == 12
        await drain(pool, settings)
        assert len(receiver.received) == 24
        assert receiver.peak == 3
    finally:
        await receiver.stop()


@pytest.fixture
async def api_world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


async def test_the_api_sets_checks_and_clears_an_endpoints_limits(
    api_world, aiohttp_client, settings
):
    client = await aiohttp_client(create_app(settings))
    token = bearer(api_world.a.tokens["client"])
    base = "/api/v1/tenants/alpha/event-endpoints"
    url = "https://crm.alpha.example/in"
    for bad in ({"timeout_seconds": 0}, {"timeout_seconds": 31}, {"concurrency": 17}):
        refused = await client.post(base, headers=token, json={"url": url} | bad)
        assert refused.status == 400, bad
    response = await client.post(
        base, headers=token, json={"url": url, "timeout_seconds": 7, "concurrency": 3}
    )
    assert response.status == 201
    created = await response.json()
    assert (created["timeout_seconds"], created["concurrency"]) == (7, 3)
    path = f"{base}/{created['id']}"
    changed = await client.patch(path, headers=token, json={"concurrency": None})
    assert changed.status == 200
    assert ((await changed.json())["timeout_seconds"], (await changed.json())["concurrency"]) == (
        7,
        None,
    )
    refused = await client.patch(path, headers=token, json={"timeout_seconds": 45})
    assert refused.status == 400
    shown = await (await client.get(path, headers=token)).json()
    assert (shown["timeout_seconds"], shown["concurrency"]) == (7, None)
    marketing = await client.patch(
        path, headers=bearer(api_world.a.tokens["marketing"]), json={"timeout_seconds": 2}
    )
    assert marketing.status == 403
