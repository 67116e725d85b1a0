"""A tenant's event endpoints (issue 22): where its events go, which types, with or without
addresses. Optout generates each secret and returns it once, from ``create`` or ``rotate``;
it is stored sealed (mailer/secret_box.py) and never returned, logged or audited again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer import secret_box
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.errors import InvalidInput, NotFound
from mailer.events import EVENT_TYPES
from mailer.outgoing import Guard, check_url

ROTATION_OVERLAP = dt.timedelta(hours=24)
# An endpoint whose deliveries have failed, with no success since, this long is "failing".
FAILING_AFTER = dt.timedelta(days=1)
MAX_ENDPOINTS = 20
NO_ENDPOINT = NotFound("There is no such event endpoint.")
VIEW_FIELDS = (
    "id",
    "url",
    "event_types",
    "include_address",
    "active",
    "failing_since",
    "old_secret_until",
    "created_at",
    # None: the installation's OPTOUT_EVENTS_TIMEOUT / OPTOUT_EVENTS_CONCURRENCY.
    "timeout_seconds",
    "concurrency",
)
# Bounds of an endpoint's own request timeout (seconds) and requests in flight.
TIMEOUT_RANGE = (1, 30)
CONCURRENCY_RANGE = (1, 16)


@dataclass(frozen=True, slots=True)
class Created:
    endpoint: dict[str, Any]
    secret: str  # shown once


def guard(settings: Settings) -> Guard:
    """The installation's rules for outgoing requests."""
    return Guard(
        dns_server=settings.inbound.dns_resolver,
        allow_cidrs=settings.events.allow_cidrs,
        allow_http_loopback=settings.events.allow_http_loopback,
    )


def view(row: asyncpg.Record, now: dt.datetime | None = None) -> dict[str, Any]:
    """What staff and the API see of an endpoint: never a secret, sealed or not. ``failing``:
    every attempt for a day has failed."""
    since = row["failing_since"]
    moment = now or dt.datetime.now(dt.UTC)
    return {name: row[name] for name in VIEW_FIELDS} | {
        "failing": since is not None and moment - since >= FAILING_AFTER
    }


def label(endpoint_id: int) -> bytes:
    """The associated data that binds a sealed secret to its endpoint row."""
    return f"event_endpoint:{endpoint_id}".encode()


def check_types(types: Sequence[str] | None) -> list[str]:
    chosen = sorted(set(types or ()))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"Unknown event type {unknown[0]!r} (known: {', '.join(EVENT_TYPES)}).",
            field="event_types",
        )
    return chosen


def check_limit(value: object, name: str, bounds: tuple[int, int]) -> int | None:
    """An endpoint's timeout or concurrency: a whole number within ``bounds``, or None for
    the installation's setting."""
    if value is None or value == "":
        return None
    low, high = bounds
    try:
        number = int(str(value).strip())
    except ValueError:
        number = low - 1
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}.", field=name)
    return number


def effective_limits(row: Any, settings: Settings) -> tuple[float, int]:
    """The timeout (seconds) and concurrency an endpoint's deliveries use: its own, else the
    installation's."""
    timeout = row["timeout_seconds"]
    concurrency = row["concurrency"]
    return (
        float(timeout) if timeout is not None else settings.events.timeout_seconds,
        int(concurrency) if concurrency is not None else settings.events.concurrency,
    )


async def create(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    url: str,
    event_types: Sequence[str] | None = None,
    include_address: bool = False,
    timeout_seconds: int | None = None,
    concurrency: int | None = None,
) -> Created:
    """A new endpoint and its secret (returned here only). ``timeout_seconds`` and
    ``concurrency`` None: the installation's settings."""
    check_url(url, guard(settings))
    types = check_types(event_types)
    timeout = check_limit(timeout_seconds, "timeout_seconds", TIMEOUT_RANGE)
    limit = check_limit(concurrency, "concurrency", CONCURRENCY_RANGE)
    secret = secret_box.new_secret()
    async with conn.transaction():
        if len(await list_endpoints(conn, tenant_id)) >= MAX_ENDPOINTS:
            raise InvalidInput(f"A tenant may have at most {MAX_ENDPOINTS} event endpoints.")
        # Sealed first under a placeholder label, then again bound to the row's own id.
        row = await queries().events.insert_endpoint(
            conn,
            tenant_id=tenant_id,
            url=url,
            event_types=types,
            include_address=include_address,
            timeout_seconds=timeout,
            concurrency=limit,
            secret_sealed=b"\0",
        )
        await queries().events.rotate_secret(
            conn,
            tenant_id=tenant_id,
            id=row["id"],
            secret_sealed=secret_box.seal(settings.hash_key, secret, label(row["id"])),
            keep_old_until=None,
        )
    return Created(view(row), secret)


async def list_endpoints(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().events.list_endpoints(conn, tenant_id=tenant_id))


async def get(conn: asyncpg.Connection, tenant_id: int, endpoint_id: int) -> asyncpg.Record:
    row = await queries().events.get_endpoint(conn, tenant_id=tenant_id, id=endpoint_id)
    if row is None:
        raise NO_ENDPOINT
    return row


async def update(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    endpoint_id: int,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Change url, event_types, include_address, active, timeout_seconds or concurrency
    (None: back to the installation's setting); the rest stays."""
    current = await get(conn, tenant_id, endpoint_id)
    url = changes.get("url", current["url"])
    check_url(url, guard(settings))
    row = await queries().events.update_endpoint(
        conn,
        tenant_id=tenant_id,
        id=endpoint_id,
        url=url,
        event_types=check_types(changes.get("event_types", current["event_types"])),
        include_address=bool(changes.get("include_address", current["include_address"])),
        active=bool(changes.get("active", current["active"])),
        timeout_seconds=check_limit(
            changes.get("timeout_seconds", current["timeout_seconds"]),
            "timeout_seconds",
            TIMEOUT_RANGE,
        ),
        concurrency=check_limit(
            changes.get("concurrency", current["concurrency"]), "concurrency", CONCURRENCY_RANGE
        ),
    )
    return view(row)


async def remove(conn: asyncpg.Connection, tenant_id: int, endpoint_id: int) -> None:
    if await queries().events.delete_endpoint(conn, tenant_id=tenant_id, id=endpoint_id) is None:
        raise NO_ENDPOINT


async def rotate(
    conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, endpoint_id: int
) -> Created:
    """A new secret; the old one keeps signing beside it for 24 hours."""
    await get(conn, tenant_id, endpoint_id)
    secret = secret_box.new_secret()
    await queries().events.rotate_secret(
        conn,
        tenant_id=tenant_id,
        id=endpoint_id,
        secret_sealed=secret_box.seal(settings.hash_key, secret, label(endpoint_id)),
        keep_old_until=dt.datetime.now(dt.UTC) + ROTATION_OVERLAP,
    )
    return Created(view(await get(conn, tenant_id, endpoint_id)), secret)


async def redeliver(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    endpoint_id: int,
    event_id: int | None = None,
    since: dt.datetime | None = None,
) -> int:
    """Queue one event, or every event since a time, again for this endpoint; how many."""
    await get(conn, tenant_id, endpoint_id)
    q = queries().events
    if event_id is not None:
        count: int = await q.redeliver_event(
            conn, tenant_id=tenant_id, endpoint_id=endpoint_id, event_id=event_id
        )
        if count == 0:
            raise NotFound("There is no such event (or it is past its retention).")
        return count
    if since is None:
        raise InvalidInput("Give an event id or a time to redeliver from.", field="since")
    count = await q.redeliver_since(conn, tenant_id=tenant_id, endpoint_id=endpoint_id, since=since)
    return count


async def attempt_log(
    conn: asyncpg.Connection, tenant_id: int, endpoint_id: int, limit: int = 100
) -> list[dict[str, Any]]:
    """The endpoint's newest delivery attempts: time, event, status, latency, error class."""
    await get(conn, tenant_id, endpoint_id)
    found = await rows(
        queries().events.attempt_log(conn, tenant_id=tenant_id, endpoint_id=endpoint_id, lim=limit)
    )
    return [dict(r) for r in found]
