"""Put mail in the outbox: transactional messages (confirmations, data links, test sends).

Campaign deliveries are enqueued set-based by mailer.campaigns; both are sent by the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from mailer.addresses import parse_address, suppression_key, tenant_hash_key
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
    hash_key: bytes | None = None,
) -> int:
    """Queue one transactional message; returns the delivery id. ``payload`` holds the
    template values (and per-recipient values such as ``confirm_url``) as JSON. ``hash_key``
    for mail that names no subscriber (a test send): the recipient's keyed hash is kept, so
    erasing that address later finds the delivery."""
    address = parse_address(recipient)
    recipient_key = None
    if hash_key is not None:
        recipient_key = suppression_key(tenant_hash_key(hash_key, tenant_id), address)
    q = queries().outbox
    async with conn.transaction():
        delivery_id: int = await q.enqueue_transactional(
            conn,
            tenant_id=tenant_id,
            subscriber_id=subscriber_id,
            recipient=address.as_given,
            recipient_key=recipient_key,
            template=template,
            payload=dict(payload),
            priority=priority,
        )
        await q.notify_work(conn)
    return delivery_id
