"""The change feed (issue 22, item 7): a cursor that never skips a transaction that commits
late, never repeats an event, keeps each tenant to its own events, and whose events expire
with the tenant's retention."""

from __future__ import annotations

import datetime as dt

from mailer import events
from mailer.db import connect
from mailer.sending import retention
from tests.conftest import probes
from tests.integration.events.conftest import subscribe


async def page_all(conn, tenant_id, cursor, limit=1):
    """Every event after ``cursor``, a page of ``limit`` at a time (bounded)."""
    seen = []
    for _ in range(100):
        page = await events.feed(conn, tenant_id, cursor, limit)
        seen += page["items"]
        cursor = page["next_cursor"]
        if not page["items"]:
            return seen, cursor
    raise AssertionError("the feed did not end")


async def test_a_transaction_that_commits_late_is_published_once_and_nothing_repeats(
    conn, db_dsn, world
):
    early = await subscribe(conn, world, "early@example.com")
    seen, cursor = await page_all(conn, world["tenant"], None)
    assert [e["data"]["subscriber_id"] for e in seen] == [early]

    held = await connect(db_dsn)
    try:
        tx = held.transaction()
        await tx.start()
        late = await subscribe(held, world, "late@example.com")  # the lower event id
        after = [
            await subscribe(conn, world, f"after{i}@example.com") for i in range(3)
        ]  # committed at once, behind the held transaction
        page, cursor = await page_all(conn, world["tenant"], cursor)
        assert page == []  # nothing is published past a transaction still in flight
        await tx.commit()
    finally:
        await held.close()
    page, cursor = await page_all(conn, world["tenant"], cursor)
    assert [e["data"]["subscriber_id"] for e in page] == [late, *after]
    assert int(page[0]["id"].removeprefix("evt_")) < int(page[1]["id"].removeprefix("evt_"))
    again, _ = await page_all(conn, world["tenant"], cursor)
    assert again == []
    # From the start: every event once, none twice.
    everything, _ = await page_all(conn, world["tenant"], None, limit=2)
    ids = [e["id"] for e in everything]
    assert len(ids) == len(set(ids)) == 5


async def test_a_transaction_in_another_database_does_not_hold_the_feed_back(
    conn, server_dsn, world
):
    """Transaction ids are shared by the whole Postgres cluster: a long transaction of
    another application (or another Optout) on the same server must not stall this feed,
    while one in this database still does (the test above)."""
    elsewhere = await connect(server_dsn)  # the server's maintenance database
    try:
        tx = elsewhere.transaction()
        await tx.start()
        await probes().take_transaction_id(elsewhere)
        ada = await subscribe(conn, world, "ada@example.com")
        seen, _ = await page_all(conn, world["tenant"], None)
        assert [e["data"]["subscriber_id"] for e in seen] == [ada]
        await tx.rollback()
    finally:
        await elsewhere.close()


async def test_each_tenant_reads_only_its_own_feed(conn, world):
    await subscribe(conn, world, "ada@example.com")
    theirs, _ = await page_all(conn, world["other"], None)
    assert theirs == []


async def test_events_expire_with_the_tenants_retention(conn, world):
    await subscribe(conn, world, "ada@example.com")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    await retention.maintain(conn, later)
    found, _ = await page_all(conn, world["tenant"], None)
    assert found == []
