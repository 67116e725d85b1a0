"""A person as staff see them (issue 17): found by exact address through the keyed hash (never
a scan of plain addresses) or by id, listed a page at a time by keyset, and shown whole
(subscriptions, the ledger with its evidence, deliveries, bounces, requests); and the staff
actions on them, through the consent writer, each ledger row naming the staff actor.

Both faces (the workspace and the admin API) call this, so they cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from mailer import tenants
from mailer.addresses import mask, parse_address, suppression_key, tenant_hash_key
from mailer.consent import writer
from mailer.db import queries, rows
from mailer.errors import InvalidInput, UnknownSubscriber

NO_PERSON = UnknownSubscriber("No such subscriber.", field="subscriber_id")
MAX_ID = 2**63 - 1
# A person's page shows this many of their newest deliveries and bounces.
RECENT = 50
SEARCH_HELP = "Give an exact email address or a subscriber id."
_ID = re.compile(r"#?([0-9]{1,19})", re.ASCII)

StaffSource = Literal["staff", "api"]


async def find(
    conn: asyncpg.Connection, hash_key: bytes, tenant_id: int, text: str
) -> asyncpg.Record | None:
    """The person named by ``text``: an exact address (looked up by its keyed hash) or an id
    ("42" or "#42"). None when no one matches; InvalidInput when ``text`` is neither."""
    text = text.strip()
    found = _ID.fullmatch(text)
    if found is not None:
        subscriber_id = int(found.group(1))
        if not 1 <= subscriber_id <= MAX_ID:
            return None
        row: asyncpg.Record | None = await queries().consent.get_subscriber(
            conn, tenant_id=tenant_id, id=subscriber_id
        )
        return row
    if "@" not in text:
        raise InvalidInput(SEARCH_HELP, field="q")
    key = suppression_key(tenant_hash_key(hash_key, tenant_id), parse_address(text))
    by_key: asyncpg.Record | None = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=tenant_id, email_key=key
    )
    return by_key


async def page(
    conn: asyncpg.Connection, tenant_id: int, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """A page of people in id order after ``after_id``, addresses masked (a list on a screen
    is seen over shoulders; the person's own page shows the address)."""
    found = await rows(
        queries().api.list_subscribers(conn, tenant_id=tenant_id, after_id=after_id, lim=limit)
    )
    return [masked(r) for r in found]


def masked(row: asyncpg.Record) -> dict[str, Any]:
    """A list row: id, masked address, status, since when."""
    return {
        "id": row["id"],
        "masked": mask(row["email"]) if row["email"] else "(erased)",
        "status": row["status"],
        "created_at": row["created_at"],
    }


@dataclass(frozen=True, slots=True)
class Person:
    """Everything a person's page shows (activity rows are dicts, their times UTC text)."""

    subscriber: asyncpg.Record
    subscriptions: list[asyncpg.Record]
    ledger: list[asyncpg.Record]
    deliveries: list[dict[str, Any]]
    bounces: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    suppression: dict[str, Any] | None


async def get(conn: asyncpg.Connection, tenant_id: int, subscriber_id: int) -> asyncpg.Record:
    """The person with this id inside the tenant; another tenant's id reads like none."""
    row: asyncpg.Record | None = await queries().consent.get_subscriber(
        conn, tenant_id=tenant_id, id=subscriber_id
    )
    if row is None:
        raise NO_PERSON
    return row


async def person(conn: asyncpg.Connection, tenant_id: int, subscriber_id: int) -> Person:
    """The person's whole page in four queries, every part by index (sql/queries/people.sql)."""
    q = queries()
    subscriber = await get(conn, tenant_id, subscriber_id)
    ids = {"tenant_id": tenant_id, "subscriber_id": subscriber_id}
    # An erased person has no key: no bounces or suppression are theirs to show.
    key = subscriber["email_key"] or b""
    activity = await q.people.person_activity(conn, **ids, address_key=key, lim=RECENT)
    return Person(
        subscriber=subscriber,
        subscriptions=await rows(q.consent.list_subscriptions(conn, **ids)),
        ledger=await rows(q.api.consent_history(conn, **ids)),
        deliveries=activity["deliveries"],
        bounces=activity["bounces"],
        requests=activity["requests"],
        suppression=activity["suppression"],
    )


# --- staff actions ------------------------------------------------------------------------------


async def unsubscribe(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    topic: str | None,
    *,
    actor: str,
    source: StaffSource,
) -> bool:
    """Unsubscribe the person from the topic with slug ``topic``, or (None) from all
    marketing. One ledger row naming ``actor``; False when there was nothing to change."""
    await get(conn, tenant_id, subscriber_id)
    if topic is None:
        return await writer.unsubscribe_all_marketing(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, source=source, actor=actor
        )
    found = await tenants.get_topic(conn, tenant_id, topic)
    return await writer.unsubscribe(
        conn,
        tenant_id=tenant_id,
        subscriber_id=subscriber_id,
        topic_id=found["id"],
        source=source,
        actor=actor,
    )


async def suppress(
    conn: asyncpg.Connection,
    tenant_id: int,
    subscriber_id: int,
    scope: writer.Scope,
    *,
    actor: str,
    source: StaffSource,
) -> bool:
    """Suppress the person's address (``marketing``: no marketing; ``all``: no mail at all),
    reason ``manual``; False when an equal or wider suppression was there already."""
    row = await get(conn, tenant_id, subscriber_id)
    if row["email_key"] is None:
        raise InvalidInput("This person was erased: their address is suppressed already.")
    return await writer.suppress(
        conn,
        tenant_id=tenant_id,
        address_key=row["email_key"],
        scope=scope,
        reason="manual",
        source=source,
        subscriber_id=subscriber_id,
        actor=actor,
    )
