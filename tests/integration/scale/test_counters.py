"""Campaign counters without a hot row: deltas appended per statement, summed on read, right
after a worker is killed mid-batch and after a restart finishes the campaign."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

from mailer.sending import campaigns, retention
from tests.conftest import probes, subprocess_env
from tests.integration.scale.conftest import scale
from tests.support.mailer_env import (
    mail_settings,
    newsletter_campaign,
    sink_env,
    spawn_worker,
    wait_until,
)

STATES = ("queued", "sending", "sent", "deferred", "failed", "bounced", "suppressed", "cancelled")


async def rows_by_state(conn, campaign_id: int) -> dict[str, int]:
    return {
        r["state"]: r["n"] async for r in probes().delivery_states(conn, campaign_id=campaign_id)
    }


def counted(stats: campaigns.Stats) -> dict[str, int]:
    """The statistics by state (no bounce arrives after a 250 here, so bounced is rows only)."""
    values = {s: getattr(stats, s) for s in STATES}
    return {s: n for s, n in values.items() if n}


async def test_counters_match_the_rows_after_a_kill_mid_batch_and_after_the_restart(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """Issue 20: SIGKILL while batches are claimed and recorded; the statistics (summed
    counter rows) equal the deliveries counted row by row, with nothing lost or doubled; a
    second worker finishes and the figures still agree: everyone sent once in the counts,
    duplicate messages no more than were in flight at the kill."""
    tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 3000)
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    env = sink_env(
        subprocess_env(db_dsn),
        smtp_sink.port,
        OPTOUT_POLL_SECONDS="0.2",
        OPTOUT_LEASE_SECONDS="3",
        OPTOUT_BATCH_SIZE="100",
    )
    first = await spawn_worker(env)
    await smtp_sink.wait_for(850, timeout=60)  # inside the ninth batch
    first.kill()  # mid-batch: claims leased, results of a batch possibly unrecorded
    await first.wait()
    await asyncio.sleep(0.3)
    at_kill = await rows_by_state(conn, campaign["id"])
    assert at_kill.get("sending", 0) > 0, "the kill left claims behind"
    stats = await campaigns.stats(conn, tenant["id"], campaign["id"])
    assert counted(stats) == at_kill
    assert stats.total == len(people)
    in_flight = len(smtp_sink.messages) - at_kill.get("sent", 0)

    # Folding the counter rows changes nothing either.
    assert await scale().counter_rows(conn, campaign_id=campaign["id"]) > 4
    assert await retention.compact_counts(conn, min_rows=1) > 4
    assert await scale().counter_rows(conn, campaign_id=campaign["id"]) <= len(STATES)
    assert counted(await campaigns.stats(conn, tenant["id"], campaign["id"])) == at_kill

    second = await spawn_worker(env)
    try:
        assert await wait_until(conn, campaign["id"], 120, "done") == "done"
    finally:
        if second.returncode is None:
            second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)
    final = await campaigns.stats(conn, tenant["id"], campaign["id"])
    assert counted(final) == await rows_by_state(conn, campaign["id"]) == {"sent": len(people)}
    received = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(received) == set(people.values())
    assert sum(received.values()) - len(received) <= in_flight
    assert final.first_sent_at is not None and final.last_sent_at is not None
    assert final.first_sent_at <= final.last_sent_at
