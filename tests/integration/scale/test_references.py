"""The outbox's references, checked per statement (migration 0151): a delivery names a
campaign and a subscriber of its own tenant, and they stay while it names them, as the foreign
keys they replace promised, with the same constraint names."""

from __future__ import annotations

import asyncpg
import pytest

from mailer import tenants
from mailer.sending import campaigns
from tests.integration.scale.conftest import scale
from tests.support.mailer_env import add_subscribers, mail_settings, newsletter_campaign

CAMPAIGN_KEY = "deliveries_tenant_id_campaign_id_fkey"
SUBSCRIBER_KEY = "deliveries_tenant_id_subscriber_id_fkey"


async def two_tenants(conn, settings, tmp_path):
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 3)
    other = await tenants.create_tenant(
        conn,
        "other",
        name="Other",
        sender_address="news@other.example",
        postal_address="Other Inc.\n2 Main Street\nSpringfield",
    )
    other_topic = await tenants.create_topic(
        conn, other["id"], slug="news", name="News", kind="marketing"
    )
    strangers = await add_subscribers(conn, settings, other["id"], other_topic["id"], 1)
    return tenant, campaign, sorted(people), sorted(strangers)


async def test_a_delivery_naming_another_tenants_subscriber_or_campaign_is_refused_whole(
    conn, settings, tmp_path
):
    """Issue 20: a bulk insert with one bad row among good ones is refused with the foreign
    key's name and SQLSTATE, and writes nothing (the good rows neither)."""
    tenant, campaign, people, strangers = await two_tenants(conn, settings, tmp_path)
    good = [campaign["id"]] * len(people)
    with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
        await scale().insert_deliveries(
            conn,
            tenant_id=tenant["id"],
            campaign_ids=[*good, campaign["id"]],
            subscriber_ids=[*people, strangers[0]],
        )
    assert refused.value.constraint_name == SUBSCRIBER_KEY
    with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
        await scale().insert_deliveries(
            conn,
            tenant_id=tenant["id"],
            campaign_ids=[*good[:-1], campaign["id"] + 1000],
            subscriber_ids=people,
        )
    assert refused.value.constraint_name == CAMPAIGN_KEY
    assert await scale().deliveries_of_tenant(conn, tenant_id=tenant["id"]) == 0
    # The same rows, all of the tenant's own: written.
    assert (
        await scale().insert_deliveries(
            conn, tenant_id=tenant["id"], campaign_ids=good, subscriber_ids=people
        )
        == 3
    )


async def test_referenced_people_and_campaigns_stay_and_a_delivery_cannot_be_moved_away(
    conn, settings, tmp_path
):
    """Issue 20: while a delivery names them, neither its campaign nor its recipient can be
    deleted or moved to another tenant, and a delivery cannot be pointed at another tenant's
    subscriber; each refusal changes nothing. (The person here is an erased one with no
    subscription, ledger or address row, so only the outbox's check stands in the way.)"""
    tenant, campaign, _, strangers = await two_tenants(conn, settings, tmp_path)
    person = await scale().bare_subscriber(conn, tenant_id=tenant["id"])
    await scale().insert_deliveries(
        conn, tenant_id=tenant["id"], campaign_ids=[campaign["id"]], subscriber_ids=[person]
    )
    [delivery] = [
        r async for r in scale().first_deliveries(conn, campaign_id=campaign["id"], lim=1)
    ]
    attempts = [
        (SUBSCRIBER_KEY, scale().delete_subscriber(conn, id=person)),
        (CAMPAIGN_KEY, scale().delete_campaign(conn, id=campaign["id"])),
        (SUBSCRIBER_KEY, scale().rekey_subscriber(conn, id=person, tenant_id=tenant["id"] + 1)),
        (
            SUBSCRIBER_KEY,
            scale().move_delivery(conn, id=delivery["id"], subscriber_id=strangers[0]),
        ),
    ]
    for key, attempt in attempts:
        with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
            await attempt
        assert refused.value.constraint_name == key
    assert await scale().deliveries_of_subscriber(conn, subscriber_id=person) == 1
    assert await scale().deliveries_of(conn, campaign_id=campaign["id"]) == 1
    # A bare person no delivery names can go: the check is about the outbox, not a ban.
    other = await scale().bare_subscriber(conn, tenant_id=tenant["id"])
    await scale().delete_subscriber(conn, id=other)


async def test_a_started_campaign_queues_its_own_people_and_the_check_resumes_after_it(
    conn, settings, smtp_sink, tmp_path
):
    """Issue 20: the enqueue skips the per-statement subscriber check (migration 0210), its
    rows being joined to their subscribers in the tenant: it queues exactly the tenant's
    people, and a bad row inserted later in the same transaction is still refused."""
    tenant, campaign, people, strangers = await two_tenants(conn, settings, tmp_path)
    async with conn.transaction():
        queued = await campaigns.start(
            conn, mail_settings(settings, smtp_sink.port), tenant["id"], campaign["id"]
        )
        assert queued == len(people)
        with pytest.raises(asyncpg.ForeignKeyViolationError) as refused:
            async with conn.transaction():  # a savepoint: the campaign's rows stay
                await scale().insert_deliveries(
                    conn,
                    tenant_id=tenant["id"],
                    campaign_ids=[campaign["id"]],
                    subscriber_ids=[strangers[0]],
                )
        assert refused.value.constraint_name == SUBSCRIBER_KEY
    queued_to = [
        r["subscriber_id"]
        async for r in scale().first_deliveries(conn, campaign_id=campaign["id"], lim=10)
    ]
    assert sorted(queued_to) == people
