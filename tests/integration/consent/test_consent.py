"""The consent core against real Postgres: one ledger row per change, idempotence, the
append-only ledger, suppression rules, and bad input that writes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from mailer import tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import (
    AgeAttestationRequired,
    InvalidAddress,
    Suppressed,
    UnknownTenant,
    UnknownTopic,
)
from tests.conftest import TEST_HASH_KEY, probes

EVIDENCE = consent.Evidence(
    ip="192.0.2.7", user_agent="Mozilla/5.0", form_text="Yes, send me the newsletter"
)


@pytest.fixture
async def world(conn: asyncpg.Connection) -> dict[str, int]:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    news = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    offers = await tenants.create_topic(
        conn, tenant["id"], slug="offers", name="Offers", kind="marketing"
    )
    notices = await tenants.create_topic(
        conn, tenant["id"], slug="notices", name="Policy notices", kind="notice"
    )
    return {
        "tenant": tenant["id"],
        "news": news["id"],
        "offers": offers["id"],
        "notices": notices["id"],
    }


async def events(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await rows(probes().all_events(conn))


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    row = await probes().consent_table_counts(conn)
    return dict(row)


async def subscribe(conn, world, email="Ada@Example.com", topic="news", **kw):
    args = dict(
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        topic_id=world[topic],
        email=email,
        age_attested=True,
        source="web_form",
        evidence=EVIDENCE,
    )
    args.update(kw)
    return await consent.subscribe(conn, **args)


async def test_subscribe_then_confirm_writes_one_row_each_with_evidence(conn, world):
    """STANDARDS 35: each consent change is an immutable row with its evidence."""
    result = await subscribe(conn, world)
    assert result.state == "pending" and result.changed and result.needs_confirmation
    assert [(e["action"], e["effect"], e["source"]) for e in await events(conn)] == [
        ("subscribe", "pending", "web_form")
    ]
    confirmed = await consent.confirm(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        subscriber_id=result.subscriber_id,
        topic_id=world["news"],
        evidence=EVIDENCE,
    )
    assert confirmed
    ledger = await events(conn)
    assert [(e["action"], e["effect"]) for e in ledger] == [
        ("subscribe", "pending"),
        ("confirm", "grant"),
    ]
    evidence = await probes().evidence(conn, id=ledger[1]["evidence_id"])
    assert str(evidence["ip"]) == "192.0.2.7"
    assert evidence["form_text"] == "Yes, send me the newsletter"
    subscriber = await queries().consent.get_subscriber(
        conn, tenant_id=world["tenant"], id=result.subscriber_id
    )
    assert subscriber["email"] == "Ada@Example.com"
    assert subscriber["age_attested_at"] is not None


async def test_every_change_is_idempotent(conn, world):
    """STANDARDS 13: repeats change nothing and write no second row."""
    first = await subscribe(conn, world)
    again = await subscribe(conn, world, email="ada@example.COM")
    assert again.subscriber_id == first.subscriber_id and not again.changed
    ids = dict(tenant_id=world["tenant"], subscriber_id=first.subscriber_id)
    assert await consent.confirm(conn, hash_key=TEST_HASH_KEY, topic_id=world["news"], **ids)
    assert not await consent.confirm(conn, hash_key=TEST_HASH_KEY, topic_id=world["news"], **ids)
    assert await consent.unsubscribe(conn, topic_id=world["news"], source="one_click", **ids)
    assert not await consent.unsubscribe(conn, topic_id=world["news"], source="one_click", **ids)
    assert await consent.set_partner_consent(conn, granted=True, source="preference_centre", **ids)
    assert not await consent.set_partner_consent(
        conn, granted=True, source="preference_centre", **ids
    )
    assert await consent.set_partner_consent(conn, granted=False, source="mailto", **ids)
    assert await consent.unsubscribe_all_marketing(conn, source="preference_centre", **ids)
    assert not await consent.unsubscribe_all_marketing(conn, source="preference_centre", **ids)
    assert [e["action"] for e in await events(conn)] == [
        "subscribe",
        "confirm",
        "unsubscribe",
        "partner_grant",
        "partner_withdraw",
        "unsubscribe_all",
    ]


async def test_ledger_refuses_update_and_delete(conn, world):
    await subscribe(conn, world)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await probes().rewrite_events(conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await probes().delete_events(conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await probes().truncate_events(conn)
    assert len(await events(conn)) == 1


async def test_ledger_holds_no_personal_data(conn, world):
    """DESIGN invariant 1: the ledger row has ids only; evidence is a separate, erasable row."""
    await subscribe(conn, world, name="Ada Lovelace")
    columns = {c["column_name"] for c in await rows(probes().event_columns(conn))}
    assert not columns & {"email", "name", "ip", "user_agent", "form_text"}


async def test_unsubscribe_all_stops_every_marketing_topic(conn, world):
    """STANDARDS 31, 37: "unsubscribe from all" clears all marketing lists."""
    ids = {}
    for topic in ("news", "offers", "notices"):
        result = await subscribe(conn, world, topic=topic, source="import", confirmed=True)
        ids = dict(tenant_id=world["tenant"], subscriber_id=result.subscriber_id)
    assert await consent.unsubscribe_all_marketing(conn, source="preference_centre", **ids)
    states = {
        r["slug"]: r["state"] for r in await rows(queries().consent.list_subscriptions(conn, **ids))
    }
    assert states == {"news": "unsubscribed", "offers": "unsubscribed", "notices": "confirmed"}
    key = suppression_key(tenant_hash_key(TEST_HASH_KEY, world["tenant"]), "ada@example.com")
    suppression = await queries().consent.get_suppression(
        conn, tenant_id=world["tenant"], address_key=key
    )
    assert suppression["scope"] == "marketing"


async def test_marketing_suppression_is_lifted_only_by_the_persons_confirmed_opt_in(conn, world):
    first = await subscribe(conn, world, source="import", confirmed=True)
    ids = dict(tenant_id=world["tenant"], subscriber_id=first.subscriber_id)
    await consent.unsubscribe_all_marketing(conn, source="one_click", **ids)
    before = await table_counts(conn)

    # Neither staff, the API nor an import can sign the address up again.
    for source in ("import", "staff", "api"):
        with pytest.raises(Suppressed):
            await subscribe(
                conn, world, email="ADA@example.com", topic="offers", source=source, confirmed=True
            )
    assert await table_counts(conn) == before

    # The person's own request is accepted, but stays pending and suppressed until confirmed.
    again = await subscribe(conn, world, topic="offers", source="web_form", confirmed=True)
    assert again.state == "pending" and again.needs_confirmation
    key = suppression_key(tenant_hash_key(TEST_HASH_KEY, world["tenant"]), "ada@example.com")
    get = queries().consent.get_suppression
    assert await get(conn, tenant_id=world["tenant"], address_key=key) is not None

    await consent.confirm(conn, hash_key=TEST_HASH_KEY, topic_id=world["offers"], **ids)
    assert await get(conn, tenant_id=world["tenant"], address_key=key) is None
    actions = [e["action"] for e in await events(conn)]
    assert actions[-3:] == ["subscribe", "lift_suppression", "confirm"]


async def test_scope_all_blocks_even_the_persons_own_sign_up(conn, world):
    """DESIGN invariant 2: scope all (hard bounce, complaint, erasure) blocks every mail."""
    first = await subscribe(conn, world, source="import", confirmed=True)
    key = suppression_key(tenant_hash_key(TEST_HASH_KEY, world["tenant"]), "ada@example.com")
    assert await consent.suppress(
        conn,
        tenant_id=world["tenant"],
        address_key=key,
        scope="all",
        reason="hard_bounce",
        source="bounce",
        subscriber_id=first.subscriber_id,
    )
    # Narrowing is never done by a later marketing suppression.
    assert not await consent.suppress(
        conn,
        tenant_id=world["tenant"],
        address_key=key,
        scope="marketing",
        reason="unsubscribe",
        source="one_click",
    )
    for topic in ("offers", "notices"):
        with pytest.raises(Suppressed):
            await subscribe(conn, world, topic=topic, source="web_form")


async def test_a_person_who_left_can_only_come_back_themselves(conn, world):
    first = await subscribe(conn, world, source="import", confirmed=True)
    await consent.unsubscribe(
        conn,
        tenant_id=world["tenant"],
        subscriber_id=first.subscriber_id,
        topic_id=world["news"],
        source="one_click",
    )
    with pytest.raises(Suppressed):
        await subscribe(conn, world, source="import", confirmed=True)
    again = await subscribe(conn, world, source="web_form")
    assert again.state == "pending"


@pytest.mark.parametrize(
    "email",
    [
        "",
        "no-at-sign",
        "a@@b.com",
        "a@b@c.com",
        "a b@c.com",
        "a@b.com\r\nBcc: x@y.com",
        "x" * 300 + "@example.com",
    ],
)
async def test_invalid_address_writes_nothing(conn, world, email):
    before = await table_counts(conn)
    with pytest.raises(InvalidAddress) as caught:
        await subscribe(conn, world, email=email)
    assert caught.value.field == "email" and caught.value.message
    assert await table_counts(conn) == before


async def test_sign_up_without_age_attestation_writes_nothing(conn, world):
    """The policy excludes children 13 or under: no attestation, no sign-up."""
    before = await table_counts(conn)
    with pytest.raises(AgeAttestationRequired, match="minimum age"):
        await subscribe(conn, world, age_attested=False)
    assert await table_counts(conn) == before


async def test_unknown_topic_or_tenant_writes_nothing(conn, world):
    before = await table_counts(conn)
    with pytest.raises(UnknownTopic):
        await subscribe(conn, world, topic_id=999_999)
    other = await tenants.create_tenant(conn, "other", name="Other", sender_address="a@o.example")
    before = await table_counts(conn)
    with pytest.raises(UnknownTopic):  # a topic of another tenant is unknown here
        await subscribe(conn, world, tenant_id=other["id"])
    assert await table_counts(conn) == before
    with pytest.raises(UnknownTenant):
        await tenants.get_tenant(conn, "nobody")
