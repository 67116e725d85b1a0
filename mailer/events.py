"""The event outbox: every change a tenant's other systems must hear of is one row of
``events``, written inside the transaction of the change (docs/webhooks.md).

Consent changes reach it from the ledger (a statement trigger on consent_events maps each
ledger row to its event, set-based, in the same statement) and campaign state changes from a
trigger on campaigns; bounces, complaints and erasures call ``emit`` here. Events hold ids
and codes only, never an address, a name or an IP.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from mailer.db import queries
from mailer.errors import InvalidInput

# Every type and its version; docs/webhooks.md and the OpenAPI document give each one's data.
EVENT_TYPES: dict[str, int] = {
    "subscriber.subscribed": 1,
    "subscriber.confirmed": 1,
    "subscriber.unsubscribed": 1,
    "subscriber.suppressed": 1,
    "subscriber.suppression_lifted": 1,
    "subscriber.partner_consent_granted": 1,
    "subscriber.partner_consent_withdrawn": 1,
    "subscriber.erased": 1,
    "subscriber.bounced": 1,
    "subscriber.complained": 1,
    "campaign.status_changed": 1,
}

_ID = {"type": "integer", "minimum": 1}
_TEXT = {"type": "string"}
_CHANNEL = {
    "type": "string",
    "description": "how the change came: one_click, landing_page, mailto, preference_centre, "
    "web_form, double_opt_in, undo, import, api, staff, bounce, complaint, erasure, ...",
}
_PERSON = {
    "subscriber_id": _ID,
    "external_id": {"type": ["string", "null"], "description": "the tenant's own id, if set"},
    "email": {
        "type": "string",
        "description": "only for endpoints set to receive addresses; never once erased",
    },
}


def _data(required: tuple[str, ...], **fields: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_PERSON, **fields} if "subscriber_id" in required else fields,
        "required": list(required),
    }


# The ``data`` of each event type (docs/webhooks.md; the OpenAPI document's webhooks).
DATA_SCHEMAS: dict[str, dict[str, Any]] = {
    "subscriber.subscribed": _data(
        ("subscriber_id", "topic", "state", "channel"),
        topic=_TEXT,
        state={"enum": ["pending", "confirmed"]},
        channel=_CHANNEL,
    ),
    "subscriber.confirmed": _data(("subscriber_id", "topic"), topic=_TEXT, channel=_CHANNEL),
    "subscriber.unsubscribed": _data(
        ("subscriber_id", "scope", "channel"),
        topic={**_TEXT, "description": "absent when scope is all_marketing"},
        scope={"enum": ["topic", "all_marketing"]},
        channel=_CHANNEL,
        campaign_id=_ID,
    ),
    "subscriber.suppressed": _data(("subscriber_id", "channel"), channel=_CHANNEL),
    "subscriber.suppression_lifted": _data(("subscriber_id",), topic=_TEXT, channel=_CHANNEL),
    "subscriber.partner_consent_granted": _data(("subscriber_id",), channel=_CHANNEL),
    "subscriber.partner_consent_withdrawn": _data(("subscriber_id",), channel=_CHANNEL),
    "subscriber.erased": _data(("subscriber_id",)),
    "subscriber.bounced": _data(
        ("subscriber_id", "class"),
        **{
            "class": {"enum": ["hard", "soft", "transient"]},
            "status": {"type": ["string", "null"], "description": "RFC 3463, e.g. 5.1.1"},
            "channel": {"enum": ["smtp", "dsn", "webhook"]},
        },
    ),
    "subscriber.complained": _data(
        ("subscriber_id",), feedback_type=_TEXT, channel=_TEXT, campaign_id=_ID
    ),
    "campaign.status_changed": _data(
        ("campaign_id", "from", "to"),
        campaign_id=_ID,
        **{
            "from": {"enum": ["draft", "scheduled", "sending", "paused", "done", "cancelled"]},
            "to": {"enum": ["draft", "scheduled", "sending", "paused", "done", "cancelled"]},
            "reason": _TEXT,
        },
    ),
}
ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "version", "timestamp", "tenant_id", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^evt_[0-9]+$", "description": "= webhook-id"},
        "type": {"enum": list(EVENT_TYPES)},
        "version": {"type": "integer"},
        "timestamp": {"type": "string", "format": "date-time"},
        "tenant_id": _ID,
        "data": {"type": "object"},
    },
}

DEFAULT_RETENTION_DAYS = 30
_EXTERNAL_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


async def emit(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    type: str,
    subscriber_id: int | None = None,
    campaign_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> int:
    """Write one event in the caller's transaction; it commits or rolls back with the change.
    ``data`` must hold no personal data (ids, codes, topic slugs)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event_id: int = await queries().events.insert_event(
        conn,
        tenant_id=tenant_id,
        type=type,
        subscriber_id=subscriber_id,
        campaign_id=campaign_id,
        data=dict(data or {}),
    )
    return event_id


async def emit_for_subscribers(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    type: str,
    subscriber_ids: Sequence[int],
    data: Mapping[str, Any] | None = None,
) -> int:
    """``emit`` for many people at once, in one statement; returns how many were written."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if not subscriber_ids:
        return 0
    written: int = await queries().events.insert_subscriber_events(
        conn, tenant_id=tenant_id, type=type, ids=list(subscriber_ids), data=dict(data or {})
    )
    return written


def check_external_id(value: str | None, field: str = "external_id") -> str | None:
    """The tenant's own id for a person: printable ASCII without spaces, at most 200
    characters; empty means none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _EXTERNAL_ID.match(value):
        raise InvalidInput(
            "external_id must be 1 to 200 printable characters without spaces", field=field
        )
    return value


EXPIRE_CHUNK = 5000
EXPIRE_MAX_CHUNKS = 1000


async def expire(conn: asyncpg.Connection, now: dt.datetime) -> int:
    """Delete events past each tenant's ``events_retention_days`` (default 30), their
    deliveries and the delivery log, in short chunks; the regular retention job calls it.
    Returns the rows of the larger of the two removed."""
    removed = 0
    for _ in range(EXPIRE_MAX_CHUNKS):
        chunk: int = await queries().events.expire_events(
            conn, now=now, cutoff_default=DEFAULT_RETENTION_DAYS, lim=EXPIRE_CHUNK
        )
        removed += chunk
        if chunk < EXPIRE_CHUNK:
            break
    return removed


def payload(event: Mapping[str, Any], *, email: str | None = None) -> dict[str, Any]:
    """The JSON body of one event, as delivered and as the feed shows it (docs/webhooks.md).
    ``email`` only for endpoints that take addresses, read at delivery time."""
    occurred: dt.datetime = event["occurred_at"]
    data: dict[str, Any] = dict(event["data"] or {})
    body: dict[str, Any] = {
        "id": event_id_text(event["id"]),
        "type": event["type"],
        "version": event["version"],
        "timestamp": occurred.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "tenant_id": event["tenant_id"],
        "data": data,
    }
    if event["subscriber_id"] is not None:
        data["subscriber_id"] = event["subscriber_id"]
        data["external_id"] = event["external_id"]
        if email is not None:
            data["email"] = email
    if event["campaign_id"] is not None:
        data["campaign_id"] = event["campaign_id"]
    return body


def event_id_text(event_id: int) -> str:
    """The id receivers dedupe by (the ``webhook-id`` header): stable across retries."""
    return f"evt_{event_id}"


FEED_MAX = 500
_CURSOR = re.compile(r"^([0-9]{1,20})-([0-9]{1,19})$")


async def feed(
    conn: asyncpg.Connection, tenant_id: int, after: str | None, limit: int
) -> dict[str, Any]:
    """One page of the change feed after ``after`` (the ``next_cursor`` of the last page).

    The cursor is ``<xid>-<id>``: events are ordered by their transaction's id, then their
    own, and only transactions older than the oldest one still running are published, so a
    transaction that commits late always sorts after every cursor already handed out (none is
    skipped, none repeats). ``next_cursor`` is always given: poll with it for what comes next.
    """
    after_xid, after_id = "0", 0
    if after:
        match = _CURSOR.match(after)
        if match is None:
            raise InvalidInput("The cursor is not valid.", field="after")
        after_xid, after_id = match.group(1), int(match.group(2))
    found = [
        r
        async for r in queries().events.feed_page(
            conn,
            tenant_id=tenant_id,
            after_xid=after_xid,
            after_id=after_id,
            lim=max(1, min(limit, FEED_MAX)),
        )
    ]
    cursor = f"{found[-1]['xid']}-{found[-1]['id']}" if found else (after or "0-0")
    return {"items": [payload(r) for r in found], "next_cursor": cursor}
