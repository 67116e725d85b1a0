"""Admin API routes of issue 22: the change feed, the tenant's event endpoints (create with
the secret shown once, change, remove, rotate, send a test event, redeliver, the delivery
log) and the tenant's own id for a person. Thin over mailer.events, mailer.event_endpoints
and mailer.event_delivery; an endpoint of another tenant reads like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailer import event_delivery, event_endpoints, events
from mailer.db import queries
from mailer.errors import InvalidInput, UnknownSubscriber
from unsubscribe_web.api.context import DEFAULT_LIMIT, MAX_LIMIT, Ctx
from unsubscribe_web.api.spec import BOOLEAN, ID, SLUG, Endpoint, Param, integer, obj, string

TENANT = Param("tenant", SLUG, location="path", required=True)
ENDPOINT = Param("endpoint_id", ID, location="path", required=True)
SUBSCRIBER = Param("subscriber_id", ID, location="path", required=True)
TYPES = {"type": "array", "maxItems": 50, "items": string(enum=tuple(events.EVENT_TYPES))}
URL = string(2000, min_length=8, pattern="^https?://")
EXTERNAL_ID = string(200, nullable=True, pattern="^[\\x21-\\x7e]{1,200}$")
# An endpoint's own limits; null follows the installation's settings.
TIMEOUT = integer(*event_endpoints.TIMEOUT_RANGE) | {"type": ["integer", "null"]}
CONCURRENCY = integer(*event_endpoints.CONCURRENCY_RANGE) | {"type": ["integer", "null"]}
LIST = {"type": "object", "properties": {"items": {"type": "array"}}}
NO_SUBSCRIBER = UnknownSubscriber("No such subscriber.", field="subscriber_id")


def _endpoint_id(ctx: Ctx) -> int:
    return ctx.path_id("endpoint_id", event_endpoints.NO_ENDPOINT)


async def list_events(ctx: Ctx) -> Any:
    return await events.feed(
        ctx.conn, ctx.tenant_id, ctx.query.get("after"), ctx.query.get("limit", DEFAULT_LIMIT)
    )


async def list_endpoints(ctx: Ctx) -> Any:
    found = await event_endpoints.list_endpoints(ctx.conn, ctx.tenant_id)
    return {"items": [event_endpoints.view(r) for r in found]}


async def create_endpoint(ctx: Ctx) -> Any:
    created = await event_endpoints.create(
        ctx.conn,
        ctx.settings,
        tenant_id=ctx.tenant_id,
        url=ctx.body["url"],
        event_types=ctx.body.get("event_types"),
        include_address=ctx.body.get("include_address", False),
        timeout_seconds=ctx.body.get("timeout_seconds"),
        concurrency=ctx.body.get("concurrency"),
    )
    ctx.target = ("event_endpoint", created.endpoint["id"])
    # The only answer that carries the secret; it is never shown again.
    return created.endpoint | {"secret": created.secret}


async def get_endpoint(ctx: Ctx) -> Any:
    return event_endpoints.view(
        await event_endpoints.get(ctx.conn, ctx.tenant_id, _endpoint_id(ctx))
    )


async def update_endpoint(ctx: Ctx) -> Any:
    endpoint_id = _endpoint_id(ctx)
    ctx.target = ("event_endpoint", endpoint_id)
    return await event_endpoints.update(
        ctx.conn,
        ctx.settings,
        tenant_id=ctx.tenant_id,
        endpoint_id=endpoint_id,
        changes=ctx.body,
    )


async def delete_endpoint(ctx: Ctx) -> Any:
    endpoint_id = _endpoint_id(ctx)
    ctx.target = ("event_endpoint", endpoint_id)
    await event_endpoints.remove(ctx.conn, ctx.tenant_id, endpoint_id)
    return {"deleted": endpoint_id}


async def rotate_secret(ctx: Ctx) -> Any:
    endpoint_id = _endpoint_id(ctx)
    ctx.target = ("event_endpoint", endpoint_id)
    rotated = await event_endpoints.rotate(
        ctx.conn, ctx.settings, tenant_id=ctx.tenant_id, endpoint_id=endpoint_id
    )
    return rotated.endpoint | {"secret": rotated.secret}


async def test_endpoint(ctx: Ctx) -> Any:
    endpoint_id = _endpoint_id(ctx)
    ctx.target = ("event_endpoint", endpoint_id)
    return await event_delivery.send_test(
        ctx.conn, ctx.settings, tenant_id=ctx.tenant_id, endpoint_id=endpoint_id
    )


async def redeliver(ctx: Ctx) -> Any:
    endpoint_id = _endpoint_id(ctx)
    ctx.target = ("event_endpoint", endpoint_id)
    since = ctx.body.get("since")
    event_id = ctx.body.get("event_id")
    if (since is None) == (event_id is None):
        raise InvalidInput("Give either event_id or since.", field="event_id")
    queued = await event_endpoints.redeliver(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        endpoint_id=endpoint_id,
        event_id=event_id,
        since=_when(since) if since is not None else None,
    )
    return {"queued": queued}


async def delivery_log(ctx: Ctx) -> Any:
    found = await event_endpoints.attempt_log(
        ctx.conn, ctx.tenant_id, _endpoint_id(ctx), ctx.query.get("limit", DEFAULT_LIMIT)
    )
    return {"items": found}


async def set_external_id(ctx: Ctx) -> Any:
    subscriber_id = ctx.path_id("subscriber_id", NO_SUBSCRIBER)
    value = events.check_external_id(ctx.body["external_id"])
    row = await queries().events.set_external_id(
        ctx.conn, tenant_id=ctx.tenant_id, id=subscriber_id, external_id=value
    )
    if row is None:
        raise NO_SUBSCRIBER
    ctx.target = ("subscriber", subscriber_id)
    return {"id": row["id"], "external_id": row["external_id"]}


def _when(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("since is not an ISO 8601 time.", field="since") from None
    if parsed.tzinfo is None:
        raise InvalidInput("since needs a time zone, e.g. +00:00.", field="since")
    return parsed


_E = "/tenants/{tenant}/event-endpoints"
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/tenants/{tenant}/events",
        "list_events",
        "The change feed: events after a cursor, oldest first (docs/webhooks.md)",
        list_events,
        "webhooks.read",
        params=(
            TENANT,
            Param(
                "after",
                string(45, pattern="^[0-9]{1,20}-[0-9]{1,19}$"),
                description="next_cursor of the last page",
            ),
            Param(
                "limit", integer(1, MAX_LIMIT), description=f"page size, default {DEFAULT_LIMIT}"
            ),
        ),
        response=LIST,
    ),
    Endpoint(
        "GET",
        _E,
        "list_event_endpoints",
        "The tenant's event endpoints",
        list_endpoints,
        "webhooks.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "POST",
        _E,
        "create_event_endpoint",
        "A new endpoint; the answer holds its secret, shown this once",
        create_endpoint,
        "webhooks.write",
        params=(TENANT,),
        body=obj(
            {
                "url": URL,
                "event_types": TYPES,
                "include_address": BOOLEAN,
                "timeout_seconds": TIMEOUT,
                "concurrency": CONCURRENCY,
            },
            required=("url",),
        ),
        status=201,
    ),
    Endpoint(
        "GET",
        _E + "/{endpoint_id}",
        "get_event_endpoint",
        "One endpoint (never its secret)",
        get_endpoint,
        "webhooks.read",
        params=(TENANT, ENDPOINT),
    ),
    Endpoint(
        "PATCH",
        _E + "/{endpoint_id}",
        "update_event_endpoint",
        "Change an endpoint's URL, event types, address flag, activity, timeout or concurrency",
        update_endpoint,
        "webhooks.write",
        params=(TENANT, ENDPOINT),
        body=obj(
            {
                "url": URL,
                "event_types": TYPES,
                "include_address": BOOLEAN,
                "active": BOOLEAN,
                "timeout_seconds": TIMEOUT,
                "concurrency": CONCURRENCY,
            }
        ),
    ),
    Endpoint(
        "POST",
        _E + "/{endpoint_id}/rotate",
        "rotate_event_endpoint_secret",
        "A new secret, shown this once; the old one keeps signing beside it for 24 hours",
        rotate_secret,
        "webhooks.write",
        params=(TENANT, ENDPOINT),
    ),
    Endpoint(
        "POST",
        _E + "/{endpoint_id}/test",
        "test_event_endpoint",
        "Send a signed endpoint.test event now; the answer's status, latency and error class",
        test_endpoint,
        "webhooks.write",
        params=(TENANT, ENDPOINT),
    ),
    Endpoint(
        "POST",
        _E + "/{endpoint_id}/redeliver",
        "redeliver_events",
        "Queue one event (event_id) or every event since a time (since) again",
        redeliver,
        "webhooks.write",
        params=(TENANT, ENDPOINT),
        body=obj({"event_id": ID, "since": string(40, min_length=10)}),
    ),
    Endpoint(
        "GET",
        _E + "/{endpoint_id}/deliveries",
        "event_endpoint_deliveries",
        "The delivery log: time, event, status, latency, error class (no bodies)",
        delivery_log,
        "webhooks.read",
        params=(TENANT, ENDPOINT, Param("limit", integer(1, MAX_LIMIT))),
        response=LIST,
    ),
    Endpoint(
        "PUT",
        "/tenants/{tenant}/subscribers/{subscriber_id}/external-id",
        "set_external_id",
        "The tenant's own id for the person (unique in the tenant; null clears it)",
        set_external_id,
        "imports.write",
        params=(TENANT, SUBSCRIBER),
        body=obj({"external_id": EXTERNAL_ID}, required=("external_id",)),
    ),
    # Last: the role matrix calls the routes in this order on one endpoint.
    Endpoint(
        "DELETE",
        _E + "/{endpoint_id}",
        "delete_event_endpoint",
        "Remove an endpoint",
        delete_endpoint,
        "webhooks.write",
        params=(TENANT, ENDPOINT),
    ),
)
