"""The events API as a CRM integrator uses it (issue 22): create an endpoint and get its
secret once, never again (not in an answer, a log line or an audit row, not in the row
itself), read the change feed with its cursor, and set the tenant's own id for a person."""

from __future__ import annotations

import logging

import pytest

from mailer.db import rows
from tests.conftest import probes
from tests.support.api_world import bearer, build_world
from unsubscribe_web.app import create_app


@pytest.fixture
async def api_world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def test_the_secret_is_shown_once_and_never_again(api_world, client, conn, caplog):
    caplog.set_level(logging.DEBUG)
    token = bearer(api_world.a.tokens["client"])
    base = "/api/v1/tenants/alpha/event-endpoints"
    response = await client.post(
        base, headers=token, json={"url": "https://crm.alpha.example/in", "event_types": []}
    )
    assert response.status == 201
    created = await response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    seen = []
    for path in (base, f"{base}/{created['id']}", f"{base}/{created['id']}/deliveries"):
        answer = await client.get(path, headers=token)
        seen.append(await answer.text())
    rotated = await client.post(f"{base}/{created['id']}/rotate", headers=token)
    new_secret = (await rotated.json())["secret"]
    assert new_secret != secret
    seen.append(await (await client.get(base, headers=token)).text())
    audit = " ".join(str(dict(r)) for r in await rows(probes().audit_entries(conn)))
    stored = " ".join(str(dict(r)) for r in await rows(probes().event_endpoint_rows(conn)))
    for leak in (secret, new_secret, secret.removeprefix("whsec_")):
        for text in (*seen, audit, stored, caplog.text):
            assert leak not in text
    assert "create_event_endpoint" in audit and "rotate_event_endpoint_secret" in audit


async def test_the_feed_pages_with_its_cursor_and_shows_the_external_id(api_world, client):
    token = bearer(api_world.a.tokens["marketing"])
    put = await client.put(
        f"/api/v1/tenants/alpha/subscribers/{api_world.a.subscriber_id}/external-id",
        headers=token,
        json={"external_id": "crm-42"},
    )
    assert put.status == 200
    bad = await client.put(
        f"/api/v1/tenants/alpha/subscribers/{api_world.a.subscriber_id}/external-id",
        headers=token,
        json={"external_id": "has space"},
    )
    assert bad.status == 400
    got = await client.get(
        f"/api/v1/tenants/alpha/subscribers/{api_world.a.subscriber_id}", headers=token
    )
    assert (await got.json())["external_id"] == "crm-42"
    cursor, seen = None, []
    for _ in range(50):
        params = {"limit": "2"} | ({"after": cursor} if cursor else {})
        page = await (
            await client.get("/api/v1/tenants/alpha/events", headers=token, params=params)
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            break
    kinds = [e["type"] for e in seen]
    assert kinds[:2] == ["subscriber.subscribed", "subscriber.confirmed"]
    assert all(e["tenant_id"] == api_world.a.id for e in seen)
    assert len({e["id"] for e in seen}) == len(seen)
    bad_cursor = await client.get(
        "/api/v1/tenants/alpha/events", headers=token, params={"after": "nope"}
    )
    assert bad_cursor.status == 400
