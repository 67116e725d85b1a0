"""`optout subprocessors ...`: the registers of the companies that help provide the service, a
tenant's (compliance) or the installation's (relays, hosting); a tenant's change marked
``--material`` publishes a new policy version embedding the register, with its notice."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from mailer import tenants
from mailer.cli.support import Commands, with_db
from mailer.errors import InvalidInput, NotFound, OptoutError
from mailer.rights import policy, subprocessors
from mailer.sending import campaigns

ACTOR = "cli"


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser(
        "subprocessors", help="companies that help provide the service (sub-processors)"
    )
    sub = group.add_subparsers(metavar="ACTION")
    add = sub.add_parser("list", help="a tenant's register, or the installation's")
    _which(add)
    add.set_defaults(run=with_db(_list))
    add = sub.add_parser("add", help="add a company, or change the one of that name")
    _which(add)
    add.add_argument("--name", required=True)
    add.add_argument("--purpose", required=True, help="what it does for the service")
    add.add_argument("--location", required=True, help="where it processes the data")
    _material(add)
    add.set_defaults(run=with_db(_add))
    add = sub.add_parser("remove", help="remove a company from the register")
    _which(add)
    add.add_argument("--name", required=True)
    _material(add)
    add.set_defaults(run=with_db(_remove))


def _which(parser: argparse.ArgumentParser) -> None:
    one = parser.add_mutually_exclusive_group(required=True)
    one.add_argument("--tenant", help="the tenant whose register it is")
    one.add_argument("--installation", action="store_true", help="the register every tenant shares")


def _material(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--material",
        action="store_true",
        help="a material change: publish a policy version embedding the register, and its notice",
    )
    parser.add_argument("--effective", help="with --material: YYYY-MM-DD or ISO time")
    parser.add_argument("--summary", help="with --material: what changes")
    parser.add_argument("--force", metavar="REASON", help="with --material: a shorter notice")


async def _tenant(conn: asyncpg.Connection, args: argparse.Namespace) -> asyncpg.Record | None:
    return None if args.installation else await tenants.get_tenant(conn, args.tenant)


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await _tenant(conn, args)
    found = await subprocessors.register(conn, tenant["id"] if tenant else None)
    for row in found:
        print(f"{row['name']}  |  {row['purpose']}  |  {row['location']}")
    if not found:
        print("the register is empty")
    return 0


async def _add(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    entry = {"name": args.name, "purpose": args.purpose, "location": args.location}
    return await _change(conn, args, entry)


async def _remove(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    return await _change(conn, args, None)


async def _change(
    conn: asyncpg.Connection, args: argparse.Namespace, entry: dict[str, str] | None
) -> int:
    tenant = await _tenant(conn, args)
    if args.material and tenant is None:
        raise InvalidInput(
            "--material applies to a tenant's register: publish each tenant's policy with "
            "`optout subprocessors ... --tenant T --material`.",
            field="material",
        )
    if args.material and not (args.effective and args.summary):
        raise InvalidInput("--material needs --effective and --summary.", field="effective")
    tenant_id = tenant["id"] if tenant else None
    current = [dict(r) for r in await subprocessors.register(conn, tenant_id)]
    kept = [r for r in current if r["name"].lower() != args.name.strip().lower()]
    if entry is None and len(kept) == len(current):
        raise NotFound(f"No company {args.name!r} in the register.", field="name")
    wanted = subprocessors.check_entries(kept + ([entry] if entry else []))
    async with conn.transaction():
        await subprocessors.save(conn, tenant_id, wanted, by=ACTOR)
        change = None
        if args.material and tenant is not None:
            change = await subprocessors.publish_change(
                conn,
                tenant=tenant,
                effective_at=policy.parse_effective(args.effective, tenant["time_zone"]),
                summary=args.summary,
                now=dt.datetime.now(dt.UTC),
                policy_url=f"{args.settings.base_url.rstrip('/')}/policy/{tenant['slug']}",
                force_reason=args.force,
                by=ACTOR,
            )
    print(f"the register has {len(wanted)} compan{'y' if len(wanted) == 1 else 'ies'}")
    if change is not None and tenant is not None:
        zone = ZoneInfo(tenant["time_zone"])
        print(
            f"published version {change.version['version']}, effective "
            f"{change.version['effective_at'].astimezone(zone):%Y-%m-%d %H:%M %Z}"
        )
        if change.notice is not None:
            try:
                queued = await campaigns.start(
                    conn, args.settings, tenant["id"], change.notice["id"]
                )
                print(f"notice campaign {change.notice['id']} started: {queued} recipient(s)")
            except OptoutError as exc:
                print(
                    f"notice campaign {change.notice['id']} created but not started: {exc.message}",
                    file=sys.stderr,
                )
    return 0
