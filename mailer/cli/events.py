"""`optout events ...`: a tenant's event endpoints (add, list, rotate, test, remove), the
delivery log, redelivery, the change feed, and `optout events run`, the delivery process for
installs that run it apart from the worker (issue 22; `webhooks` names the inbound relay
hooks). Every change is audited as actor "cli", never with a secret."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import signal
import sys
from typing import Any

import asyncpg

from mailer import audit, event_delivery, event_endpoints, events, tenants
from mailer.cli.support import Commands, with_db
from mailer.config import Settings
from mailer.db import database_url, pool_for
from mailer.errors import InvalidInput


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser("events", help="event endpoints, the change feed, delivery")
    sub = group.add_subparsers(metavar="ACTION")
    add = sub.add_parser("run", help="deliver events to endpoints until stopped")
    add.add_argument("--until-idle", action="store_true", help="stop when nothing is due")
    add.set_defaults(run=_run)

    endpoint = sub.add_parser("endpoint", help="a tenant's endpoints").add_subparsers(
        metavar="ACTION"
    )
    add = endpoint.add_parser("add", help="add an endpoint; prints its secret once")
    add.add_argument("--tenant", required=True)
    add.add_argument("--url", required=True, help="https:// URL of the receiver")
    add.add_argument(
        "--type", action="append", dest="types", default=[], help="an event type (repeat); all"
    )
    add.add_argument("--include-address", action="store_true", help="send the person's address too")
    _limit_options(add)
    add.set_defaults(run=with_db(_add))
    add = endpoint.add_parser("set", help="change an endpoint's types, address flag or limits")
    add.add_argument("id", type=int, help="the endpoint's id")
    add.add_argument("--tenant", required=True)
    add.add_argument(
        "--type", action="append", dest="types", help="an event type (repeat); replaces the list"
    )
    add.add_argument(
        "--include-address",
        action=argparse.BooleanOptionalAction,
        help="send (or stop sending) the person's address",
    )
    add.add_argument(
        "--active", action=argparse.BooleanOptionalAction, help="deliver to it, or stop"
    )
    _limit_options(add)
    add.set_defaults(run=with_db(_set))
    add = endpoint.add_parser("list", help="list a tenant's endpoints")
    add.add_argument("--tenant", required=True)
    add.set_defaults(run=with_db(_list))
    for name, action, text in (
        ("rotate", _rotate, "a new secret (printed once); the old one signs for 24 h more"),
        ("test", _test, "send a signed endpoint.test event now"),
        ("remove", _remove, "remove an endpoint"),
        ("log", _log, "the newest delivery attempts: time, event, status, latency, error"),
    ):
        add = endpoint.add_parser(name, help=text)
        add.add_argument("id", type=int, help="the endpoint's id")
        add.add_argument("--tenant", required=True)
        add.set_defaults(run=with_db(action))

    add = sub.add_parser("redeliver", help="queue one event, or all since a time, again")
    add.add_argument("--tenant", required=True)
    add.add_argument("--endpoint", type=int, required=True)
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--event", type=int, help="an event id (the number in evt_N)")
    which.add_argument("--since", help="ISO time, e.g. 2031-01-01T00:00Z")
    add.set_defaults(run=with_db(_redeliver))

    add = sub.add_parser("feed", help="print the change feed as JSON lines")
    add.add_argument("--tenant", required=True)
    add.add_argument("--after", help="the cursor printed last time")
    add.add_argument("--limit", type=int, default=100)
    add.set_defaults(run=with_db(_feed))


def _limit_options(parser: argparse.ArgumentParser) -> None:
    low, high = event_endpoints.TIMEOUT_RANGE
    parser.add_argument(
        "--timeout",
        help=f"seconds per request, {low}-{high}, or 'default' (OPTOUT_EVENTS_TIMEOUT)",
    )
    low, high = event_endpoints.CONCURRENCY_RANGE
    parser.add_argument(
        "--concurrency",
        help=f"requests in flight, {low}-{high}, or 'default' (OPTOUT_EVENTS_CONCURRENCY)",
    )


def _limit(raw: str | None) -> str | None:
    return None if raw is None or raw == "default" else raw


async def _add(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    async with conn.transaction():
        created = await event_endpoints.create(
            conn,
            args.settings,
            tenant_id=tenant["id"],
            url=args.url,
            event_types=args.types,
            include_address=args.include_address,
            timeout_seconds=event_endpoints.check_limit(
                _limit(args.timeout), "timeout_seconds", event_endpoints.TIMEOUT_RANGE
            ),
            concurrency=event_endpoints.check_limit(
                _limit(args.concurrency), "concurrency", event_endpoints.CONCURRENCY_RANGE
            ),
        )
        await _audit(conn, "event_endpoint.create", tenant["id"], created.endpoint["id"])
    print(f"endpoint {created.endpoint['id']} added for {args.url}")
    print(f"secret (shown this once): {created.secret}")
    return 0


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    for row in await event_endpoints.list_endpoints(conn, tenant["id"]):
        types = ",".join(row["event_types"]) or "all"
        state = "active" if row["active"] else "inactive"
        if event_endpoints.view(row)["failing"]:
            state = f"FAILING since {row['failing_since']:%Y-%m-%d %H:%M}"
        elif row["failing_since"] is not None:
            state = f"errors since {row['failing_since']:%Y-%m-%d %H:%M}"
        address = " with addresses" if row["include_address"] else ""
        timeout, concurrency = event_endpoints.effective_limits(row, args.settings)
        limits = f"timeout {timeout:g}s, {concurrency} in flight"
        print(f"{row['id']:>6} {row['url']}  {types}{address}  {limits}  {state}")
    return 0


async def _set(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    changes: dict[str, Any] = {}
    if args.types is not None:
        changes["event_types"] = args.types
    if args.include_address is not None:
        changes["include_address"] = args.include_address
    if args.active is not None:
        changes["active"] = args.active
    if args.timeout is not None:
        changes["timeout_seconds"] = _limit(args.timeout)
    if args.concurrency is not None:
        changes["concurrency"] = _limit(args.concurrency)
    if not changes:
        raise InvalidInput(
            "Nothing to change: give --type, --include-address, --active, "
            "--timeout or --concurrency."
        )
    async with conn.transaction():
        row = await event_endpoints.update(
            conn, args.settings, tenant_id=tenant["id"], endpoint_id=args.id, changes=changes
        )
        await _audit(conn, "event_endpoint.update", tenant["id"], args.id)
    timeout, concurrency = event_endpoints.effective_limits(row, args.settings)
    print(f"endpoint {args.id} changed: timeout {timeout:g}s, {concurrency} in flight")
    return 0


async def _rotate(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    async with conn.transaction():
        rotated = await event_endpoints.rotate(
            conn, args.settings, tenant_id=tenant["id"], endpoint_id=args.id
        )
        await _audit(conn, "event_endpoint.rotate", tenant["id"], args.id)
    print(f"new secret (shown this once): {rotated.secret}")
    until = rotated.endpoint["old_secret_until"]
    print(f"the old secret keeps signing until {until:%Y-%m-%d %H:%M %Z}")
    return 0


async def _test(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    async with conn.transaction():
        result = await event_delivery.send_test(
            conn, args.settings, tenant_id=tenant["id"], endpoint_id=args.id
        )
        await _audit(conn, "event_endpoint.test", tenant["id"], args.id)
    status = result["status"] if result["status"] is not None else "-"
    print(f"status {status}, {result['latency_ms']} ms, error {result['error'] or 'none'}")
    return 0 if result["error"] is None else 1


async def _remove(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    async with conn.transaction():
        await event_endpoints.remove(conn, tenant["id"], args.id)
        await _audit(conn, "event_endpoint.remove", tenant["id"], args.id)
    print(f"endpoint {args.id} removed")
    return 0


async def _log(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    for row in await event_endpoints.attempt_log(conn, tenant["id"], args.id):
        event = f"evt_{row['event_id']}" if row["event_id"] is not None else "test"
        status = row["status"] if row["status"] is not None else "-"
        print(
            f"{row['at']:%Y-%m-%d %H:%M:%S} {event:>14} {status!s:>4} "
            f"{row['latency_ms'] or 0:>6} ms {row['error'] or ''}"
        )
    return 0


async def _redeliver(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    since = _when(args.since) if args.since else None
    async with conn.transaction():
        queued = await event_endpoints.redeliver(
            conn,
            tenant_id=tenant["id"],
            endpoint_id=args.endpoint,
            event_id=args.event,
            since=since,
        )
        await _audit(conn, "event_endpoint.redeliver", tenant["id"], args.endpoint)
    print(f"{queued} event(s) queued again for endpoint {args.endpoint}")
    return 0


async def _feed(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    page = await events.feed(conn, tenant["id"], args.after, args.limit)
    for item in page["items"]:
        print(json.dumps(item, separators=(",", ":")))
    print(f"next cursor: {page['next_cursor']}", file=sys.stderr)
    return 0


def _when(raw: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"--since: {raw!r} is not an ISO time like 2031-01-01T00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def _audit(conn: asyncpg.Connection, action: str, tenant_id: int, endpoint_id: int) -> None:
    await audit.record(
        conn,
        actor="cli",
        action=action,
        tenant_id=tenant_id,
        target_type="event_endpoint",
        target_id=endpoint_id,
    )


def _run(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )

    async def run(dsn: str) -> int:
        async with pool_for(settings, dsn) as pool, event_delivery.Sender(pool, settings) as sender:
            if args.until_idle:
                await sender.drain()  # bounded: at most a million batches
                return 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            await sender.run(stop)
            return 0

    with database_url(settings) as dsn:
        return asyncio.run(run(dsn))
