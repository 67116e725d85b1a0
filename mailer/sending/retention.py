"""Retention: delivery rows and parsed inbound events older than each tenant's retention are
folded into per-campaign figures and removed, by ``optout db maintain`` and by the worker's
housekeeping.

A finished campaign older than the retention is folded: a notice campaign first leaves one
proof row per person and policy version (for the life of the tenant), the figures read through
its deliveries (complaints, later bounces, unsubscribes by channel) are frozen on the campaign,
and its delivery counts stay in campaign_counts, which the removal does not touch. People with
an open data request are pinned: their rows stay until a later run after the request closes.
Deletes run in bounded chunks, each its own short transaction, so a run never holds locks long.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg

from mailer import events
from mailer.db import queries, rows

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 400
CHUNK = 5_000  # rows removed per transaction
MAX_CHUNKS = 2_000  # per kind and tenant in one run: 10 million rows, then the next run goes on
CAMPAIGNS_PER_RUN = 100
COMPACT_AFTER = 64  # counter rows of one campaign before housekeeping folds them
SEND_MINUTES_DAYS = 7  # per-minute send counts kept (the dashboard plots the last hour)


@dataclass
class Maintenance:
    """What one run did."""

    campaigns_folded: int = 0
    notice_proofs: int = 0
    deliveries_removed: int = 0
    inbound_removed: int = 0
    counter_rows_compacted: int = 0
    events_removed: int = 0
    skipped: bool = False  # another run held the lock


async def compact_counts(conn: asyncpg.Connection, min_rows: int = COMPACT_AFTER) -> int:
    """Fold the counter rows of campaigns (and the per-minute send counts of tenants) with
    more than ``min_rows`` into one per state (per minute): cheap, and safe next to sending
    workers. Returns how many rows were folded."""
    count: int = await queries().campaigns.compact_counts(conn, min_rows=min_rows)
    count += await queries().campaigns.compact_send_minutes(conn, min_rows=min_rows)
    return count


async def maintain(conn: asyncpg.Connection, now: dt.datetime) -> Maintenance:
    """One retention run over every tenant; skipped when another run holds the lock."""
    q = queries().retention
    done = Maintenance()
    if not await q.try_maintenance_lock(conn):
        # Another worker or `optout db maintain` is at it; this one tries again next time.
        log.info("maintenance_skipped reason=another run holds the lock")
        done.skipped = True
        return done
    try:
        done.counter_rows_compacted = await compact_counts(conn)
        for tenant in await rows(q.retention_tenants(conn)):
            cutoff = now - dt.timedelta(days=tenant["retention_days"])
            await _tenant(conn, tenant["id"], cutoff, now, done)
        await q.prune_send_minutes(conn, before=now - dt.timedelta(days=SEND_MINUTES_DAYS))
        done.events_removed = await events.expire(conn, now)
        # Mail that matched no tenant is kept for the default retention.
        cutoff = now - dt.timedelta(days=DEFAULT_RETENTION_DAYS)
        for _ in range(MAX_CHUNKS):
            removed: int = await q.remove_old_unmatched(conn, cutoff=cutoff, lim=CHUNK)
            done.inbound_removed += removed
            if removed < CHUNK:
                break
    finally:
        await q.unlock_maintenance(conn)
    log.info(
        "maintenance campaigns_folded=%d notice_proofs=%d deliveries_removed=%d inbound_removed=%d",
        done.campaigns_folded,
        done.notice_proofs,
        done.deliveries_removed,
        done.inbound_removed,
    )
    return done


async def _tenant(
    conn: asyncpg.Connection,
    tenant_id: int,
    cutoff: dt.datetime,
    now: dt.datetime,
    done: Maintenance,
) -> None:
    q = queries().retention
    pinned = [
        r["subscriber_id"] for r in await rows(q.pinned_subscribers(conn, tenant_id=tenant_id))
    ]
    for campaign in await rows(
        q.foldable_campaigns(conn, tenant_id=tenant_id, cutoff=cutoff, lim=CAMPAIGNS_PER_RUN)
    ):
        await _fold(conn, campaign["id"], now, done)
    for campaign in await rows(q.folded_with_leftovers(conn, tenant_id=tenant_id)):
        done.deliveries_removed += await _remove(
            conn,
            partial(q.campaign_delivery_chunk, conn, campaign_id=campaign["id"], pinned=pinned),
        )
    done.deliveries_removed += await _remove(
        conn,
        partial(q.old_transactional_chunk, conn, tenant_id=tenant_id, cutoff=cutoff, pinned=pinned),
    )
    for _ in range(MAX_CHUNKS):
        removed: int = await q.remove_old_inbound(
            conn, tenant_id=tenant_id, cutoff=cutoff, pinned=pinned, lim=CHUNK
        )
        done.inbound_removed += removed
        if removed < CHUNK:
            break


async def _fold(
    conn: asyncpg.Connection, campaign_id: int, now: dt.datetime, done: Maintenance
) -> None:
    """Proof of notice and the figures read through deliveries, kept in one transaction."""
    c = queries().campaigns
    async with conn.transaction():
        done.notice_proofs += await queries().retention.save_notice_proofs(
            conn, campaign_id=campaign_id
        )
        unsubscribed = {
            r["source"]: r["people"]
            for r in await rows(c.unsubscribes_by_channel(conn, campaign_id=campaign_id))
        }
        await queries().retention.fold_campaign(
            conn,
            id=campaign_id,
            now=now,
            complaints=await c.complaints(conn, campaign_id=campaign_id),
            later_bounces=await c.later_bounces(conn, campaign_id=campaign_id),
            unsubscribed=unsubscribed,
        )
    done.campaigns_folded += 1


async def _remove(conn: asyncpg.Connection, chunk: Callable[..., Any]) -> int:
    """Delete the deliveries ``chunk(lim=n)`` names, chunk by chunk, counts left as they are."""
    q = queries().retention
    removed = 0
    for _ in range(MAX_CHUNKS):
        async with conn.transaction():
            ids = [r["id"] for r in await rows(chunk(lim=CHUNK))]
            if not ids:
                break
            await q.keep_counts(conn)
            removed += await q.remove_deliveries(conn, ids=ids)
        if len(ids) < CHUNK:
            break
    return removed
