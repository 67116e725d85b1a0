"""A campaign's status changes: pause, resume, cancel, each with what it does to the campaign's
queued deliveries, in one transaction under the campaign's row lock.

Its own module because the inbound side may pause a campaign (complaint rate) without reaching
the rest of the campaign code.
"""

from __future__ import annotations

import asyncpg

from mailer.db import queries
from mailer.errors import Conflict, NotFound


class UnknownCampaign(NotFound):
    """No such campaign."""

    code = "unknown_campaign"


async def transition(
    conn: asyncpg.Connection,
    tenant_id: int,
    campaign_id: int,
    allowed: tuple[str, ...],
    status: str,
    reason: str | None = None,
) -> asyncpg.Record:
    q = queries().campaigns
    async with conn.transaction():
        campaign = await q.lock_campaign(conn, tenant_id=tenant_id, id=campaign_id)
        if campaign is None:
            raise UnknownCampaign(field="campaign")
        if campaign["status"] not in allowed:
            raise Conflict(f"the campaign is {campaign['status']}; cannot make it {status}")
        row = await q.set_status(
            conn, tenant_id=tenant_id, id=campaign_id, status=status, pause_reason=reason
        )
        if status == "cancelled":
            await q.cancel_deliveries(conn, campaign_id=campaign_id)
        if status == "paused":
            await q.hold_deliveries(conn, campaign_id=campaign_id)
        if status == "sending":
            await q.release_deliveries(conn, campaign_id=campaign_id)
            await queries().outbox.notify_work(conn)
        result: asyncpg.Record = row
        return result


async def pause(
    conn: asyncpg.Connection, tenant_id: int, campaign_id: int, reason: str = "paused by staff"
) -> asyncpg.Record:
    """Stop sending; takes effect within one batch (the worker's pre-send check sees it)."""
    return await transition(conn, tenant_id, campaign_id, ("sending",), "paused", reason)


async def resume(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> asyncpg.Record:
    return await transition(conn, tenant_id, campaign_id, ("paused",), "sending")


async def cancel(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> asyncpg.Record:
    """Stop for good: queued deliveries are cancelled; a draft just becomes cancelled."""
    return await transition(
        conn,
        tenant_id,
        campaign_id,
        ("draft", "scheduled", "sending", "paused"),
        "cancelled",
    )
