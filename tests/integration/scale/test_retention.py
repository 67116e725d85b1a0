"""Retention (`optout db maintain`): old deliveries and parsed inbound events are folded into
campaign figures and removed; the figures, the proof of notice and pinned people stay."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from mailer import tenants
from mailer.consent import writer as consent
from mailer.db import connect, create_pool, queries
from mailer.errors import InvalidInput
from mailer.rights import policy
from mailer.sending import campaigns
from mailer.sending import worker as worker_module
from mailer.sending.worker import Worker
from tests.conftest import subprocess_env
from tests.integration.scale.conftest import scale
from tests.support.cli import optout
from tests.support.mailer_env import (
    add_subscribers,
    mail_settings,
    make_tenant,
    newsletter_campaign,
)


def retention_q():
    return queries().retention


async def send_all(db_dsn, settings) -> None:
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, settings).run(until_idle=True)
    finally:
        await pool.close()


def proof(people) -> list[tuple[object, ...]]:
    return [
        (p["subscriber_id"], p["delivery_id"], p["state"], p["sent_at"], p["notified_by"])
        for p in people
    ]


async def test_old_deliveries_are_folded_with_figures_proof_and_pinned_people_unchanged(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """Issue 20: a newsletter and a policy notice sent 401 days ago. With a tenant retention
    of 500 days nothing moves; at the default 400 the deliveries and the complaint go, the
    campaign figures (counts, complaint, later bounce, unsubscribe) and the proof of notice
    read the same, and a person with an open data request keeps every row; unmatched inbound
    mail goes after the default 400 days. A second run changes nothing."""
    tenant, topic, news, readers = await newsletter_campaign(conn, settings, tmp_path, 20)
    notices = await tenants.create_topic(
        conn, tenant["id"], slug="notices", name="Notices", kind="notice"
    )
    await add_subscribers(conn, settings, tenant["id"], notices["id"], 10, prefix="n")
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], news["id"])
    now = dt.datetime.now(dt.UTC)
    version = await policy.publish(
        conn,
        tenant=tenant,
        body="# Privacy\n\nWe keep your address.\n",
        summary="First version",
        effective_at=now + dt.timedelta(days=31),
        now=now,
    )
    notice = await policy.create_notice_campaign(
        conn, tenant=tenant, version=version, topic=notices, policy_url="https://x.test/policy"
    )
    await campaigns.start(conn, s, tenant["id"], notice["id"])
    await send_all(db_dsn, s)

    first = [r async for r in scale().first_deliveries(conn, campaign_id=news["id"], lim=4)]
    unsubscriber, complainer, bounced, pinned = first
    await consent.unsubscribe(
        conn,
        tenant_id=tenant["id"],
        subscriber_id=unsubscriber["subscriber_id"],
        topic_id=topic["id"],
        source="one_click",
        campaign_id=news["id"],
    )
    await scale().add_complaint(
        conn,
        tenant_id=tenant["id"],
        subscriber_id=complainer["subscriber_id"],
        delivery_id=complainer["id"],
    )
    await scale().add_late_bounce(conn, tenant_id=tenant["id"], delivery_id=bounced["id"])
    [notice_pinned] = [
        r async for r in scale().first_deliveries(conn, campaign_id=notice["id"], lim=1)
    ]
    for person in (pinned["subscriber_id"], notice_pinned["subscriber_id"]):
        await scale().open_request(conn, tenant_id=tenant["id"], subscriber_id=person)
    for campaign in (news, notice):
        await scale().age_campaign(conn, id=campaign["id"], days=401)
    for days in (401, 10):  # inbound mail that matched no tenant: default retention
        await scale().add_unmatched(conn, days=days)

    before = {c["id"]: await campaigns.stats(conn, tenant["id"], c["id"]) for c in (news, notice)}
    assert (before[news["id"]].sent, before[news["id"]].complained) == (20, 1)
    assert before[news["id"]].bounced == 1 and before[news["id"]].unsubscribed == {"one_click": 1}
    _, people = await policy.proof_of_notice(conn, tenant["id"], version["version"])
    proof_before = proof(people)
    assert sum(1 for p in people if p["notified_by"] == "email") == 10

    env = subprocess_env(db_dsn)
    await tenants.update_tenant(conn, "acme", {"limits": {"retention_days": 500}})
    kept = optout("db", "maintain", env=env)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.startswith("0 campaign(s) folded")
    assert await scale().deliveries_of(conn, campaign_id=news["id"]) == 20

    await tenants.update_tenant(conn, "acme", {"limits": {}})
    done = optout("db", "maintain", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 campaign(s) folded, 10 proof(s) of notice kept, 28 deliveries")

    # Only the pinned people's deliveries are left, one per campaign; the complaint is gone.
    assert await scale().deliveries_of(conn, campaign_id=news["id"]) == 1
    assert await scale().deliveries_of(conn, campaign_id=notice["id"]) == 1
    assert await scale().deliveries_of_subscriber(conn, subscriber_id=pinned["subscriber_id"]) == 1
    assert await scale().inbound_of(conn, campaign_id=news["id"]) == 0
    assert await scale().notice_proof_rows(conn, tenant_id=tenant["id"]) == 10
    assert [r["old"] async for r in scale().unmatched_ages(conn)] == [False]
    after = {c["id"]: await campaigns.stats(conn, tenant["id"], c["id"]) for c in (news, notice)}
    assert after == before
    _, people = await policy.proof_of_notice(conn, tenant["id"], version["version"])
    assert proof(people) == proof_before

    again = optout("db", "maintain", env=env)
    assert again.stdout.startswith("0 campaign(s) folded, 0 proof(s) of notice kept, 0 deliveries")
    assert {
        c["id"]: await campaigns.stats(conn, tenant["id"], c["id"]) for c in (news, notice)
    } == before
    assert len(readers) == 20


async def test_a_retention_outside_its_bounds_is_refused(conn, tmp_path):
    """A clear one-line error, and the tenant unchanged."""
    tenant, _ = await make_tenant(conn, tmp_path)
    for bad in (5, 99999, "400", True):
        with pytest.raises(InvalidInput, match="retention_days"):
            await tenants.update_tenant(conn, "acme", {"limits": {"retention_days": bad}})
    assert (await tenants.get_tenant(conn, "acme"))["limits"] == tenant["limits"]


async def wait_for_log(caplog, text: str, seconds: float = 60.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if any(text in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line with {text!r} in {seconds} s")


async def test_the_worker_runs_retention_under_its_lock_and_never_beside_another_run(
    conn, db_dsn, settings, smtp_sink, tmp_path, monkeypatch, caplog
):
    """Issue 20: the worker's housekeeping runs the retention job itself. While another run
    holds the maintenance lock (a second worker at it, or `optout db maintain`), the worker
    skips its turn and touches nothing; once the lock is free its next turn folds the old
    campaign, with the campaign's figures unchanged."""
    tenant, _, news, _ = await newsletter_campaign(conn, settings, tmp_path, 12)
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], news["id"])
    await send_all(db_dsn, s)
    await scale().age_campaign(conn, id=news["id"], days=401)
    before = await campaigns.stats(conn, tenant["id"], news["id"])
    assert before.sent == 12

    # Turns a second apart instead of an hour (the first comes a sixtieth of it after start).
    monkeypatch.setattr(worker_module, "MAINTAIN_EVERY", 1.0)
    caplog.set_level(logging.INFO, logger="mailer.sending.retention")
    other_run = await connect(db_dsn)
    pool = await create_pool(db_dsn, max_size=3)
    worker = Worker(pool, s)
    running = asyncio.create_task(worker.run())
    try:
        assert await retention_q().try_maintenance_lock(other_run)
        await wait_for_log(caplog, "maintenance_skipped")
        assert await scale().deliveries_of(conn, campaign_id=news["id"]) == 12
        assert not any("campaigns_folded" in r.getMessage() for r in caplog.records)

        await retention_q().unlock_maintenance(other_run)
        await wait_for_log(caplog, "maintenance campaigns_folded=1")
        assert await scale().deliveries_of(conn, campaign_id=news["id"]) == 0
        assert await campaigns.stats(conn, tenant["id"], news["id"]) == before
        # The worker's run let go of the lock: another run can take it now.
        assert await retention_q().try_maintenance_lock(other_run)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        await pool.close()
        await other_run.close()
