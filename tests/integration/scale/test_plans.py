"""The hot queries keep their plans on big tables: 200,000 rows in each table that grows with
the audience, ANALYZEd, and every query of the sending path, the one-click path and the
campaign statistics EXPLAINed. A sequential scan of deliveries, subscriptions, subscribers or
consent_events fails the test: at a million recipients it is the difference between a
millisecond and a second per batch. Runs on whichever server the suite runs on (both CI
passes: Postgres 18 and 15)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from mailer.consent import link_batch
from mailer.db import queries
from tests.integration.scale.conftest import scale
from tests.support.mailer_env import newsletter_campaign

ROWS = 200_000
WATCHED = {"deliveries", "subscriptions", "subscribers", "consent_events"}
BATCH = 100
LINK_BATCH = link_batch.CAP


def seq_scans(plan: Any) -> list[str]:
    """Relations read by a sequential scan anywhere in a JSON plan."""
    found: list[str] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("Node Type") == "Seq Scan":
                found.append(node.get("Relation Name", "?"))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


async def explain(conn, group: str, name: str, **params: Any) -> Any:
    """EXPLAIN (no ANALYZE: nothing runs) the named query with these parameters bound."""
    query = getattr(getattr(queries(), group), name)
    adapter = getattr(queries(), group).driver_adapter
    order = adapter.var_sorted[name]
    args = [params[p] for p in order]
    text = await conn.fetchval("EXPLAIN (FORMAT JSON) " + query.sql, *args)
    return json.loads(text) if isinstance(text, str) else text


@pytest.fixture
async def big(conn, settings, tmp_path):
    tenant, topic, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 0)
    await scale().seed_people(conn, tenant_id=tenant["id"], topic_id=topic["id"], n=ROWS)
    await scale().seed_deliveries(
        conn, tenant_id=tenant["id"], campaign_id=campaign["id"], topic_id=topic["id"]
    )
    await scale().set_campaign_sending(conn, id=campaign["id"])
    await scale().analyze_all(conn)
    ids = [
        r["id"]
        async for r in scale().some_delivery_ids(conn, campaign_id=campaign["id"], lim=BATCH)
    ]
    return tenant, topic, campaign, ids


def hot_queries(tenant, topic, campaign, ids) -> list[tuple[str, str, dict[str, Any]]]:
    n = len(ids)
    cid, tid = campaign["id"], tenant["id"]
    return [
        # the sending path
        ("deliveries", "claim", {"owner": "w1", "lease_seconds": 60, "lim": BATCH}),
        ("deliveries", "recheck", {"ids": ids, "tx_ids": [], "tx_keys": []}),
        ("deliveries", "drop_claims", {"owner": "w1", "ids": ids, "states": ["suppressed"] * n}),
        (
            "deliveries",
            "record",
            {
                "owner": "w1",
                "relays": ["r"] * n,
                "give_up_seconds": 86400,
                "ids": ids,
                "states": ["sent"] * n,
                "codes": [250] * n,
                "replies": ["ok"] * n,
                "message_ids": ["<m@x>"] * n,
                "delays": [0.0] * n,
            },
        ),
        ("deliveries", "renew_leases", {"owner": "w1", "lease_seconds": 60}),
        ("deliveries", "release_expired_leases", {}),
        ("deliveries", "release_owner", {"owner": "w1"}),
        ("campaigns", "finish_campaigns", {"ids": [cid]}),
        ("campaigns", "error_rates", {"ids": [cid]}),
        # the one-click path
        (
            "consent",
            "unsubscribe_from_link",
            {
                "tenant_id": tid,
                "subscriber_id": 5,
                "topic_id": topic["id"],
                "ip": "127.0.0.1",
                "user_agent": "test",
                "detail": {},
                "source": "one_click",
                "journal_token": None,
            },
        ),
        # ... and its micro-batch (mailer.consent.link_batch), at the batcher's cap
        (
            "consent",
            "unsubscribe_from_links",
            {
                "tenant_ids": [tid] * LINK_BATCH,
                "subscriber_ids": list(range(5, 5 + LINK_BATCH)),
                "topic_ids": [topic["id"]] * LINK_BATCH,
                "ips": ["127.0.0.1"] * LINK_BATCH,
                "user_agents": ["test"] * LINK_BATCH,
                "details": [{"channel": "one_click"}] * LINK_BATCH,
                "sources": ["one_click"] * LINK_BATCH,
                "journal_token": uuid.uuid4(),
            },
        ),
        ("web", "landing_context", {"tenant_id": tid, "subscriber_id": 5, "topic_id": topic["id"]}),
        # the statistics (campaigns.stats)
        ("campaigns", "get_campaign", {"tenant_id": tid, "id": cid}),
        ("campaigns", "delivery_counts", {"campaign_id": cid}),
        ("campaigns", "unsubscribes_by_channel", {"campaign_id": cid}),
        ("campaigns", "complaints", {"campaign_id": cid}),
        ("campaigns", "later_bounces", {"campaign_id": cid}),
        # the dashboard's sending plot
        (
            "dashboard",
            "sends_per_minute",
            {"tenant_id": tid, "now": dt.datetime.now(dt.UTC), "minutes": 60},
        ),
    ]


async def test_no_hot_query_scans_a_big_table(conn, big):
    """Issue 20: claim, re-check, record, lease renewal, one-click and the statistics each
    reach deliveries, subscriptions, subscribers and consent_events only through indexes."""
    tenant, topic, campaign, ids = big
    scans: dict[str, list[str]] = {}
    for group, name, params in hot_queries(tenant, topic, campaign, ids):
        found = [r for r in seq_scans(await explain(conn, group, name, **params)) if r in WATCHED]
        if found:
            scans[f"{group}.{name}"] = found
    assert scans == {}, f"sequential scans of big tables: {scans}"


async def test_the_checker_sees_a_sequential_scan(conn, big):
    """The test above would fail: a query that must read every delivery shows its Seq Scan."""
    _, topic, _, _ = big
    plan = await explain(conn, "campaigns", "audience_size", tenant_id=1, topic_id=topic["id"])
    assert {"subscribers"} & set(seq_scans(plan)) or {"subscriptions"} & set(seq_scans(plan))


def person_queries(tenant, subscriber_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """The workspace's subscriber search, list and person page (mailer.consent.people)."""
    tid = tenant["id"]
    person = {"tenant_id": tid, "subscriber_id": subscriber_id}
    key = b"\x01" * 32
    return [
        ("consent", "get_subscriber_by_key", {"tenant_id": tid, "email_key": key}),
        ("consent", "get_subscriber", {"tenant_id": tid, "id": subscriber_id}),
        ("api", "list_subscribers", {"tenant_id": tid, "after_id": subscriber_id, "lim": 50}),
        ("consent", "list_subscriptions", person),
        ("api", "consent_history", person),
        ("people", "person_activity", person | {"address_key": key, "lim": 50}),
    ]


async def test_subscriber_search_and_person_page_scan_no_big_table(conn, big):
    """Issue 17: finding a person (by keyed hash or id), the list's keyset page and every part
    of the person's page reach subscribers, subscriptions and consent_events (and
    deliveries) only through indexes, at 200,000 rows each."""
    tenant, _topic, _campaign, _ids = big
    scans: dict[str, list[str]] = {}
    for group, name, params in person_queries(tenant, ROWS // 2):
        found = [r for r in seq_scans(await explain(conn, group, name, **params)) if r in WATCHED]
        if found:
            scans[f"{group}.{name}"] = found
    assert scans == {}, f"sequential scans of big tables: {scans}"


def relation_scans(plan: Any, relation: str) -> list[dict[str, Any]]:
    """The plan nodes that read ``relation``."""
    found: list[dict[str, Any]] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("Relation Name") == relation:
                found.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


async def test_a_list_sent_before_its_statistics_is_joined_by_key(conn, settings, tmp_path):
    """Issue 20: a list imported and sent at once, before any ANALYZE: the enqueue reaches
    each recipient's subscriber row by its primary key, so queuing stays linear (a tenant
    condition on subscribers once let the planner walk all of the tenant's people for each
    subscription: 20,000 people took 76 s). Fails on that statement (commit 396842e)."""
    tenant, topic, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 0)
    await scale().seed_people(conn, tenant_id=tenant["id"], topic_id=topic["id"], n=20_000)
    plan = await explain(conn, "campaigns", "enqueue", campaign_id=campaign["id"])
    reads = relation_scans(plan, "subscribers")
    assert reads, "the enqueue no longer reads subscribers (status, address key)"
    assert all(
        node.get("Index Name") == "subscribers_pkey" and "id" in node.get("Index Cond", "")
        for node in reads
    ), [(n["Node Type"], n.get("Index Name"), n.get("Index Cond")) for n in reads]
