"""Many workers, opt-outs during a send, a worker killed with SIGKILL, a shared rate budget."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter

from mailer.consent import writer as consent
from mailer.db import connect, create_pool
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes, subprocess_env
from tests.support.mailer_env import (
    mail_settings,
    newsletter_campaign,
    sink_env,
    spawn_worker,
    wait_until,
)

CONTENT = {"headline": "News", "intro": "Hello.", "blocks": []}


async def _rows(gen):
    return [r async for r in gen]


async def _stop(process, sig=signal.SIGTERM, timeout=20.0):
    if process.returncode is None:
        process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode


async def test_opt_outs_during_a_send_are_never_claimed_after_their_commit(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """DESIGN G1, STANDARDS 27: 100 of 3,000 recipients opt out while two workers send; no
    claim of their delivery starts after the opt-out committed, and only a message claimed
    before it (the in-flight window, at most one batch per worker) can still reach them."""
    tenant, topic, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 3000)
    s = mail_settings(settings, smtp_sink.port, per_second=1500.0, batch_size=100, pool_size=4)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    leavers = random.Random(7).sample(sorted(people), 100)
    opted_out_at = {}

    async def opt_out_all():
        other = await connect(db_dsn)
        try:
            await smtp_sink.wait_for(50, timeout=30)
            for subscriber_id in leavers:
                await consent.unsubscribe(
                    other,
                    tenant_id=tenant["id"],
                    subscriber_id=subscriber_id,
                    topic_id=topic["id"],
                    source="one_click",
                )
                opted_out_at[subscriber_id] = await probes().clock_now(other)
                await asyncio.sleep(0.01)
        finally:
            await other.close()

    pool = await create_pool(db_dsn, max_size=8)
    workers = [Worker(pool, s, owner=f"w{i}") for i in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await opt_out_all()
        status = await wait_until(conn, campaign["id"], 90, "done")
    finally:
        for w in workers:
            w.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await pool.close()
    assert status == "done"
    deliveries = {
        r["subscriber_id"]: r
        for r in await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
    }
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    in_flight = 0
    late_claims = []
    for subscriber_id in leavers:
        delivery = deliveries[subscriber_id]
        claimed = delivery["claimed_at"]
        if claimed is not None and claimed > opted_out_at[subscriber_id]:
            late_claims.append(subscriber_id)
        if received[people[subscriber_id]]:
            in_flight += 1
            assert claimed is not None and claimed <= opted_out_at[subscriber_id]
            assert delivery["state"] == "sent"
        else:
            assert delivery["state"] == "suppressed"
    print(
        f"\nopt-out during send: {len(leavers)} opted out, {in_flight} still received a message "
        f"claimed before their opt-out (in-flight window; bound: 2 workers x 100 per batch)"
    )
    assert late_claims == []
    assert in_flight <= 2 * 100
    assert in_flight < len(leavers), "the opt-outs happened while the send was running"
    stayers = set(people) - set(leavers)
    assert all(received[people[i]] == 1 for i in stayers)
    assert sum(received.values()) == len(stayers) + in_flight


async def test_two_worker_processes_mail_every_recipient_exactly_once(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """DESIGN invariant 3: two worker processes on one 5,000-recipient campaign."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 5000)
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    env = sink_env(subprocess_env(db_dsn), smtp_sink.port, OPTOUT_POLL_SECONDS="0.2")
    processes = [await spawn_worker(env, "--concurrency", "4") for _ in range(2)]
    try:
        status = await wait_until(conn, campaign["id"], 100, "done")
    finally:
        codes = [await _stop(p) for p in processes]
    assert status == "done" and codes == [0, 0]
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(received) == set(people.values())
    assert max(received.values()) == 1
    owners = {
        r["relay"]
        for r in await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
    }
    assert owners == {"127-0-0-1-" + str(smtp_sink.port)}


async def test_a_killed_worker_loses_nobody_and_duplicates_only_its_in_flight_messages(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """DESIGN G3: SIGKILL mid-way through 5,000 recipients, then a restart: everyone gets the
    message; duplicates are no more than the messages in flight at the kill."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 5000)
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    env = sink_env(
        subprocess_env(db_dsn),
        smtp_sink.port,
        OPTOUT_POLL_SECONDS="0.2",
        OPTOUT_LEASE_SECONDS="3",
        OPTOUT_BATCH_SIZE="200",
    )
    first = await spawn_worker(env)
    await smtp_sink.wait_for(1500, timeout=60)
    first.kill()  # SIGKILL: no cleanup, no lease handed back
    await first.wait()
    await asyncio.sleep(0.5)  # let the sink finish whatever had fully arrived
    delivered_at_kill = len(smtp_sink.messages)
    states = {
        r["state"]: r["n"]
        for r in await _rows(probes().delivery_states(conn, campaign_id=campaign["id"]))
    }
    in_flight = delivered_at_kill - states.get("sent", 0)
    assert states.get("sending", 0) > 0, "the kill left claims behind"
    second = await spawn_worker(env)
    try:
        status = await wait_until(conn, campaign["id"], 100, "done")
    finally:
        await _stop(second)
    assert status == "done"
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(received) == set(people.values()), "nobody was skipped"
    duplicates = sum(received.values()) - len(received)
    print(f"\ncrash: {in_flight} messages in flight at the kill, {duplicates} duplicates")
    assert duplicates <= in_flight


async def test_two_workers_share_one_relay_budget(conn, db_dsn, settings, smtp_sink, tmp_path):
    """Two worker processes with a shared budget of 40 messages a second stay within it
    together, and no batch is claimed twice while its claimer is alive (short leases, renewed)."""
    rate = 40.0
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 240)
    s = mail_settings(settings, smtp_sink.port, per_second=rate)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    env = sink_env(
        subprocess_env(db_dsn),
        smtp_sink.port,
        OPTOUT_POLL_SECONDS="0.2",
        OPTOUT_RELAY_PER_SECOND=str(rate),
        OPTOUT_LEASE_SECONDS="2",
    )
    processes = [await spawn_worker(env) for _ in range(2)]
    arrivals = []
    started = time.monotonic()
    try:
        while len(smtp_sink.messages) < len(people) and time.monotonic() - started < 60:
            arrivals.append((time.monotonic(), len(smtp_sink.messages)))
            await asyncio.sleep(0.05)
        status = await wait_until(conn, campaign["id"], 30, "done")
    finally:
        for p in processes:
            await _stop(p)
    assert status == "done"
    first = next(t for t, n in arrivals if n > 0)
    last = arrivals[-1][0]
    sent = len(smtp_sink.messages)
    # The bucket holds at most one second's worth, so over the run sent <= rate * (T + 1).
    measured = sent / max(last - first, 1e-3)
    span = last - first
    print(f"\nrate limit: {sent} messages in {span:.1f} s = {measured:.1f}/s (budget {rate}/s)")
    assert sent <= rate * (last - first + 1.0) + 1
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert max(received.values()) == 1 and len(received) == len(people)
    rows = await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
    assert all(r["attempts"] == 1 for r in rows), "no delivery was claimed twice"
    assert os.environ.get("OPTOUT_RELAY_PER_SECOND") is None
