"""Campaign lifecycle: pause and cancel within one batch, resume, auto-pause, schedule,
retry the failed ones, statistics, and the claim query's plan."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from mailer.consent import writer as consent
from mailer.db import create_pool, queries
from mailer.errors import Conflict
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.fault_sink import FaultSink, start_fault_sink
from tests.support.mailer_env import (
    mail_settings,
    newsletter_campaign,
    wait_until,
)


async def _rows(gen):
    return [r async for r in gen]


async def _states(conn, campaign_id):
    return {
        r["state"]: r["n"]
        for r in await _rows(probes().delivery_states(conn, campaign_id=campaign_id))
    }


async def _until_nothing_in_flight(conn, campaign_id, timeout):
    """Poll until no delivery of the campaign is claimed ('sending'); bounded in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await _states(conn, campaign_id)).get("sending"):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"deliveries still claimed after {timeout} s")
        await asyncio.sleep(0.05)


async def test_pause_takes_effect_within_one_batch_and_resume_finishes(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 600)
    s = mail_settings(settings, smtp_sink.port, batch_size=50, per_second=300.0)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    pool = await create_pool(db_dsn, max_size=4)
    worker = Worker(pool, s)
    task = asyncio.create_task(worker.run())
    try:
        await smtp_sink.wait_for(100, timeout=30)
        await campaigns.pause(conn, tenant["id"], campaign["id"])
        at_pause = len(smtp_sink.messages)
        # Wait for the batch in flight to be recorded (however slow the machine), not a fixed
        # time: a loaded machine took over a second, and its last mails came after the check.
        await _until_nothing_in_flight(conn, campaign["id"], timeout=30)
        after = len(smtp_sink.messages)
        assert after - at_pause <= 50, "at most the batch in flight finishes"
        await asyncio.sleep(0.5)
        assert len(smtp_sink.messages) == after, "nothing more while paused"
        assert (await campaigns.stats(conn, tenant["id"], campaign["id"])).status == "paused"
        await campaigns.resume(conn, tenant["id"], campaign["id"])
        assert await wait_until(conn, campaign["id"], 30, "done") == "done"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
        await pool.close()
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted(people.values())


async def test_cancel_stops_the_send_and_drops_the_queue(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    tenant, _, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 400)
    s = mail_settings(settings, smtp_sink.port, batch_size=40, per_second=200.0)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    pool = await create_pool(db_dsn, max_size=4)
    worker = Worker(pool, s)
    task = asyncio.create_task(worker.run())
    try:
        await smtp_sink.wait_for(40, timeout=30)
        await campaigns.cancel(conn, tenant["id"], campaign["id"])
        at_cancel = len(smtp_sink.messages)
        await asyncio.sleep(1.0)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
        await pool.close()
    assert len(smtp_sink.messages) - at_cancel <= 40
    states = await _states(conn, campaign["id"])
    assert states.get("queued", 0) == 0 and states.get("sending", 0) == 0
    assert states["cancelled"] >= 400 - len(smtp_sink.messages)
    with pytest.raises(Conflict):
        await campaigns.resume(conn, tenant["id"], campaign["id"])


async def test_a_campaign_whose_mail_keeps_failing_pauses_itself(conn, db_dsn, settings, tmp_path):
    sink = FaultSink()
    server = await start_fault_sink(sink)
    try:
        tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 80)
        for address in sorted(people.values())[:60]:
            sink.faults[address] = ("rcpt:550 5.2.1 mailbox disabled", 9)
        s = mail_settings(
            settings, sink.port, batch_size=10, pause_min_attempts=10, pause_error_rate=0.3
        )
        await campaigns.start(conn, s, tenant["id"], campaign["id"])
        pool = await create_pool(db_dsn, max_size=4)
        try:
            await Worker(pool, s).run(until_idle=True)
        finally:
            await pool.close()
    finally:
        server.close()
        await server.wait_closed()
    stats = await campaigns.stats(conn, tenant["id"], campaign["id"])
    assert stats.status == "paused" and "auto-paused" in (stats.pause_reason or "")
    assert stats.queued > 0, "it stopped before the end"


async def test_a_scheduled_campaign_starts_when_due(conn, db_dsn, settings, smtp_sink, tmp_path):
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 5)
    s = mail_settings(settings, smtp_sink.port)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    row = await campaigns.schedule(conn, s, tenant["id"], campaign["id"], soon)
    assert row["status"] == "scheduled"
    assert await _states(conn, campaign["id"]) == {}, "nothing queued before its time"
    pool = await create_pool(db_dsn, max_size=4)
    worker = Worker(pool, s)
    task = asyncio.create_task(worker.run())
    try:
        assert await wait_until(conn, campaign["id"], 20, "done") == "done"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
        await pool.close()
    assert len(smtp_sink.messages) == len(people)


async def test_retry_failed_queues_soft_failures_only_and_stats_count_by_channel(
    conn, db_dsn, settings, tmp_path
):
    sink = FaultSink()
    server = await start_fault_sink(sink)
    try:
        tenant, topic, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 4)
        soft, hard, leaver, _ = sorted(people.values())
        by_email = {v: k for k, v in people.items()}
        sink.faults[soft] = ("rcpt:451 4.2.0 later", 1)
        sink.faults[hard] = ("rcpt:550 5.1.1 unknown", 9)
        s = mail_settings(settings, sink.port, give_up_after=0.001)
        await campaigns.start(conn, s, tenant["id"], campaign["id"])
        pool = await create_pool(db_dsn, max_size=4)
        try:
            await Worker(pool, s).run(until_idle=True)
            stats = await campaigns.stats(conn, tenant["id"], campaign["id"])
            assert (stats.sent, stats.failed, stats.bounced) == (2, 1, 1)
            assert await campaigns.retry_failed(conn, tenant["id"], campaign["id"]) == 1
            s = mail_settings(settings, sink.port)
            await Worker(pool, s).run(until_idle=True)
        finally:
            await pool.close()
    finally:
        server.close()
        await server.wait_closed()
    await consent.unsubscribe(
        conn,
        tenant_id=tenant["id"],
        subscriber_id=by_email[leaver],
        topic_id=topic["id"],
        source="one_click",
    )
    stats = await campaigns.stats(conn, tenant["id"], campaign["id"])
    assert (stats.status, stats.sent, stats.failed, stats.bounced) == ("done", 3, 0, 1)
    assert stats.unsubscribed == {"one_click": 1}
    assert [r for r, _ in sink.delivered].count(soft) == 1


async def test_the_claim_walks_its_index_and_never_scans_a_table(conn, settings, tmp_path):
    """The hot query's plan (as pgqueuer keeps a test for it): index lookups only, on fresh
    tables without statistics, so a claim costs the same at any outbox size."""
    tenant, _, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 3000)
    s = mail_settings(settings, 2525)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    explain = "EXPLAIN " + queries().deliveries.claim.sql  # $1 lim, $2 owner, $3 lease
    async with conn.transaction():
        text = "\n".join(r[0] for r in await conn.fetch(explain, 200, "w", 60.0))
    for table in ("deliveries", "subscribers", "subscriptions", "suppressions"):
        assert f"Seq Scan on {table}" not in text, text
    assert "deliveries_due" in text and "Sort" not in text.split("InitPlan")[0], text
