"""Put mail in the outbox: transactional messages (confirmations, data links, test sends).

Campaign deliveries are enqueued set-based by mailer.campaigns; both are sent by the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from mailer.addresses import parse_address
from mailer.db import queries

# Transactional mail goes before campaign mail: a person is waiting for it.
TRANSACTIONAL_PRIORITY = 100


async def enqueue_transactional(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    recipient: str,
    template: str,
    payload: Mapping[str, Any],
    subscriber_id: int | None = None,
    priority: int = TRANSACTIONAL_PRIORITY,
) -> int:
    """Queue one transactional message; returns the delivery id. ``payload`` holds the
    template values (and per-recipient values such as ``confirm_url``) as JSON."""
    address = parse_address(recipient)
    q = queries().outbox
    async with conn.transaction():
        delivery_id: int = await q.enqueue_transactional(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            recipient=address.as_given,
            template=template,
            payload=dict(payload),
            priority=priority,
        )
        await q.notify_work(conn)
    return delivery_id
