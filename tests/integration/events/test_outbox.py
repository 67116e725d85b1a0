"""The event outbox (issue 22, item 3): every consent change, bounce, complaint, erasure and
campaign state change has its event in the same transaction; a rolled-back change has none;
no event row holds an address, a name or an IP."""

from __future__ import annotations

import json

import asyncpg
import pytest

from mailer import events, tenants
from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.consent import writer as consent
from mailer.db import queries
from mailer.rights import erasure
from mailer.sending import bounce_policy
from tests.conftest import TEST_HASH_KEY, probes

EVIDENCE = consent.Evidence(ip="192.0.2.7", user_agent="Mozilla/5.0 Secret", form_text="Yes")


@pytest.fixture
async def world(conn: asyncpg.Connection) -> dict[str, int]:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    news = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    return {"tenant": tenant["id"], "news": news["id"]}


async def subscribe(conn, world, email="Ada.Lovelace@example.com", name="Ada Lovelace"):
    return await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        topic_id=world["news"],
        email=email,
        name=name,
        age_attested=True,
        source="web_form",
        evidence=EVIDENCE,
    )


async def outbox(conn, world) -> list[asyncpg.Record]:
    return list(await _rows(probes().outbox_events(conn, tenant_id=world["tenant"])))


async def _rows(result):
    return [r async for r in result]


async def test_each_consent_change_has_its_event_in_order(conn, world):
    """STANDARDS 64: every change a tenant's other systems must honour becomes an event."""
    person = await subscribe(conn, world)
    ids = dict(tenant_id=world["tenant"], subscriber_id=person.subscriber_id)
    await consent.confirm(conn, hash_key=TEST_HASH_KEY, topic_id=world["news"], **ids)
    await consent.set_partner_consent(conn, granted=True, source="preference_centre", **ids)
    await consent.unsubscribe(conn, topic_id=world["news"], source="one_click", **ids)
    await consent.unsubscribe_all_marketing(conn, source="mailto", **ids)
    seen = [
        (
            e["type"],
            e["subscriber_id"],
            json.loads(e["data"]) if isinstance(e["data"], str) else e["data"],
        )
        for e in await outbox(conn, world)
    ]
    assert [t for t, _, _ in seen] == [
        "subscriber.subscribed",
        "subscriber.confirmed",
        "subscriber.partner_consent_granted",
        "subscriber.unsubscribed",
        "subscriber.unsubscribed",
    ]
    assert all(s == person.subscriber_id for _, s, _ in seen)
    assert seen[0][2] == {"topic": "news", "state": "pending", "channel": "web_form"}
    assert seen[3][2] == {"topic": "news", "scope": "topic", "channel": "one_click"}
    assert seen[4][2] == {"scope": "all_marketing", "channel": "mailto"}


async def test_a_rolled_back_change_leaves_no_event(conn, world):
    person = await subscribe(conn, world)
    before = await outbox(conn, world)
    tx = conn.transaction()
    await tx.start()
    await consent.unsubscribe(
        conn,
        tenant_id=world["tenant"],
        subscriber_id=person.subscriber_id,
        topic_id=world["news"],
        source="one_click",
    )
    assert len(await outbox(conn, world)) == len(before) + 1  # visible inside the transaction
    await tx.rollback()
    assert await outbox(conn, world) == before
    # Committed: it is there.
    await consent.unsubscribe(
        conn,
        tenant_id=world["tenant"],
        subscriber_id=person.subscriber_id,
        topic_id=world["news"],
        source="one_click",
    )
    assert [e["type"] for e in await outbox(conn, world)][-1] == "subscriber.unsubscribed"


async def test_a_hard_bounce_has_its_event_before_the_suppression(conn, world):
    person = await subscribe(conn, world)
    key = suppression_key(
        tenant_hash_key(TEST_HASH_KEY, world["tenant"]), parse_address("Ada.Lovelace@example.com")
    )
    await bounce_policy.record_bounce(
        conn,
        tenant_id=world["tenant"],
        address_key=key,
        delivery_id=None,
        status="5.1.1",
        permanent=True,
        source="dsn",
        subscriber_id=person.subscriber_id,
    )
    types = [e["type"] for e in await outbox(conn, world)]
    assert types[-2:] == ["subscriber.bounced", "subscriber.suppressed"]
    bounced = (await outbox(conn, world))[-2]
    data = bounced["data"] if isinstance(bounced["data"], dict) else json.loads(bounced["data"])
    assert data["class"] == "hard" and data["status"] == "5.1.1"


async def test_external_id_rides_along_and_erasure_clears_it(conn, world):
    person = await subscribe(conn, world)
    await queries().events.set_external_id(
        conn, tenant_id=world["tenant"], id=person.subscriber_id, external_id="crm-4711"
    )
    await consent.set_partner_consent(
        conn,
        tenant_id=world["tenant"],
        subscriber_id=person.subscriber_id,
        granted=True,
        source="api",
    )
    await erasure.erase_subscriber(
        conn, tenant_id=world["tenant"], subscriber_id=person.subscriber_id, by="test"
    )
    found = await outbox(conn, world)
    assert found[-1]["type"] == "subscriber.erased"
    assert found[-1]["external_id"] == "crm-4711"  # the tenant can still match its record
    row = await probes().subscriber_row(conn, id=person.subscriber_id)
    assert row["external_id"] is None
    # Nothing personal in any event row: no address, name, IP or user agent.
    text = " ".join(str(dict(r)) for r in await _rows(probes().outbox_rows(conn))).lower()
    for secret in ("ada.lovelace", "example.com", "ada lovelace", "192.0.2.7", "mozilla"):
        assert secret not in text


async def test_external_id_is_unique_per_tenant(conn, world):
    one = await subscribe(conn, world, email="one@example.com")
    two = await subscribe(conn, world, email="two@example.com")
    q = queries().events
    await q.set_external_id(conn, tenant_id=world["tenant"], id=one.subscriber_id, external_id="x1")
    with pytest.raises(asyncpg.UniqueViolationError):
        await q.set_external_id(
            conn, tenant_id=world["tenant"], id=two.subscriber_id, external_id="x1"
        )
    assert events.check_external_id("") is None
