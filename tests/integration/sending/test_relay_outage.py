"""Every relay goes away (issue 21, item 3): the primary and its fallback stall for 5 s, then
refuse connections for 5 s, then come back. Deliveries wait and are retried on the schedule,
none is marked failed, and the campaign completes once the relays answer again."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import pytest

from mailer.config import load_settings
from mailer.db import create_pool
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes, subprocess_env
from tests.support.mailer_env import newsletter_campaign, wait_until
from tests.support.outage_relay import OutageRelay

RECIPIENTS = 60
STALL_SECONDS = 5.0
REFUSE_SECONDS = 5.0
SCHEDULE = (1.0, 2.0)  # OPTOUT_RETRY_SCHEDULE=1s,2s: the last wait repeats


@pytest.fixture
async def relays():
    pair = [OutageRelay("primary"), OutageRelay("fallback")]
    for relay in pair:
        await relay.start()
    try:
        yield pair
    finally:
        for relay in pair:
            await relay.close()


@pytest.mark.timeout(90)
async def test_relays_stall_then_refuse_and_the_campaign_completes_when_they_return(
    conn, db_dsn, settings, relays, tmp_path
):
    """Nothing fails: every recipient gets one message once the relays are back; while they
    were away each recipient was tried again no sooner than the schedule says."""
    primary, fallback = relays
    env = subprocess_env(db_dsn) | {
        "OPTOUT_DATA_DIR": str(tmp_path / "data"),
        "SMTP_URL": f"smtp://127.0.0.1:{primary.port}?starttls=off",
        "OPTOUT_SMTP_FALLBACK_URLS": f"smtp://127.0.0.1:{fallback.port}?starttls=off",
        "OPTOUT_RETRY_SCHEDULE": ",".join(f"{s:g}s" for s in SCHEDULE),
        "OPTOUT_SMTP_TIMEOUT": "1",  # each stage (greeting, MAIL, RCPT, DATA) within a second
        "OPTOUT_RELAY_PER_SECOND": "20",
        "OPTOUT_POLL_SECONDS": "0.2",
        "OPTOUT_LEASE_SECONDS": "10",
        "OPTOUT_SMTP_POOL_SIZE": "2",
    }
    s = load_settings(env)
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, RECIPIENTS)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    pool = await create_pool(db_dsn, max_size=6)
    worker = Worker(pool, s)
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(400):  # the relays are up: a first part goes out
            if len(primary.delivered) >= 10 or task.done():
                break
            await asyncio.sleep(0.05)
        outage_started = time.monotonic()
        for relay in relays:
            await relay.switch("stall")
        await asyncio.sleep(STALL_SECONDS)
        for relay in relays:
            await relay.switch("refuse")
        await asyncio.sleep(REFUSE_SECONDS)
        delivered_in_outage = len(primary.delivered) + len(fallback.delivered)
        for relay in relays:
            await relay.switch("ok")
        back_at = time.monotonic()
        status = await wait_until(conn, campaign["id"], 40, "done", "paused")
        done_after = time.monotonic() - back_at
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
        await pool.close()

    assert status == "done"
    rows = await deliveries(conn, campaign)
    states = Counter(r["state"] for r in rows)
    assert states == {"sent": RECIPIENTS}, states
    received = Counter(primary.delivered + fallback.delivered)
    assert set(received) == set(people.values()) and max(received.values()) == 1
    assert worker.stats.failed == 0
    # Tries of one recipient during the outage were spaced by the schedule, not hammered.
    tries: dict[str, list[float]] = {}
    for relay in relays:
        for rcpt, moments in relay.tries.items():
            tries.setdefault(rcpt, []).extend(moments)
    gaps = [
        later - earlier
        for moments in tries.values()
        for earlier, later in itertools.pairwise(sorted(moments))
        if earlier >= outage_started
    ]
    retried = sum(1 for r in rows if r["attempts"] > 1)
    assert retried > 0, "the outage hit deliveries in flight"
    assert all(gap >= SCHEDULE[0] - 0.05 for gap in gaps), sorted(gaps)[:5]
    # Each attempt waited its turn: no delivery was tried more often than the schedule allows
    # over the outage (plus the first try and the one that went through).
    most = max(r["attempts"] for r in rows)
    assert most <= 2 + (STALL_SECONDS + REFUSE_SECONDS) / SCHEDULE[0], most
    print(
        f"\nrelay outage: {STALL_SECONDS:.0f} s stall + {REFUSE_SECONDS:.0f} s refused; "
        f"{delivered_in_outage} delivered before/while away, {retried} deliveries retried, "
        f"{primary.stalled_connections + fallback.stalled_connections} connections stalled, "
        f"at most {most} attempts each, {len(gaps)} repeat tries of a recipient, "
        f"shortest {min(gaps, default=0):.2f} s apart; "
        f"campaign done {done_after:.1f} s after the relays returned"
    )
    assert done_after < 15


async def deliveries(conn, campaign):
    return [r async for r in probes().campaign_deliveries(conn, campaign_id=campaign["id"])]
