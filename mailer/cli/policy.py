"""`optout policy ...`, `optout requests ...`, `optout partners export`, and the privacy
additions to `optout tenant` (export, purge, purge-unconfirmed)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import asyncpg

from mailer import tenants
from mailer.cli.support import Commands, with_db
from mailer.consent import imports
from mailer.csv_safe import write_csv
from mailer.errors import InvalidInput, OptoutError
from mailer.rights import deadlines, erasure, partners, policy, privacy, queue
from mailer.sending import campaigns

ACTOR = "cli"


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser("policy", help="privacy-policy versions and change notices")
    sub = group.add_subparsers(metavar="ACTION")
    add = sub.add_parser("publish", help="publish a new version and queue its change notice")
    add.add_argument("file", type=Path, help="the policy text, Markdown, UTF-8")
    add.add_argument("--tenant", required=True)
    add.add_argument("--effective", required=True, help="YYYY-MM-DD (tenant's time zone) or ISO")
    add.add_argument("--summary", required=True, help="what changes, one change per line")
    add.add_argument("--force", metavar="REASON", help="allow a shorter notice; REASON is kept")
    add.add_argument("--topic", help="the notice topic, when the tenant has several")
    add.add_argument("--no-notice", action="store_true", help="publish without a notice campaign")
    add.set_defaults(run=with_db(_publish))
    add = sub.add_parser("status", help="versions and the progress of their notices")
    add.add_argument("--tenant", required=True)
    add.set_defaults(run=with_db(_status))
    add = sub.add_parser("proof", help="proof of notice of one version, as CSV")
    add.add_argument("--tenant", required=True)
    add.add_argument("--version", type=int, required=True)
    add.add_argument("--output", type=Path, help="file to write (default: standard output)")
    add.set_defaults(run=with_db(_proof))

    group = commands.add_parser("requests", help="data requests (access, rectify, erase, removal)")
    sub = group.add_subparsers(metavar="ACTION")
    add = sub.add_parser("list", help="list requests with their deadlines")
    add.add_argument("--tenant")
    add.add_argument("--overdue", action="store_true", help="only those past their deadline")
    add.set_defaults(run=with_db(_requests_list))
    add = sub.add_parser("create", help="record a request received by staff")
    add.add_argument("--tenant", required=True)
    add.add_argument("--kind", required=True, choices=privacy.REQUEST_KINDS)
    add.add_argument("--email", required=True)
    add.set_defaults(run=with_db(_requests_create))
    add = sub.add_parser("extend", help="extend a person's request once, before its deadline")
    add.add_argument("id", type=int)
    add.add_argument("--tenant", required=True)
    add.add_argument("--reason", required=True)
    add.add_argument("--months", type=int, default=deadlines.MAX_PERSON_MONTHS)
    add.set_defaults(run=with_db(_requests_extend))
    add = sub.add_parser("complete", help="the request's action: do its work and close it")
    add.add_argument("id", type=int)
    add.add_argument("--tenant", required=True)
    add.add_argument("--output", type=Path, help="access requests: where to write the JSON")
    add.add_argument("--name", help="rectification: the corrected name")
    add.add_argument("--email", help="rectification: the new address (confirmed by its mailbox)")
    add.set_defaults(run=with_db(_requests_complete))

    group = commands.add_parser("partners", help="sharing with partners")
    sub = group.add_subparsers(metavar="ACTION")
    add = sub.add_parser("export", help="CSV of those who consent to partner sharing now")
    add.add_argument("--tenant", required=True)
    add.add_argument("--partner", default="", help="who receives it (recorded)")
    add.add_argument("--output", type=Path, help="file to write (default: standard output)")
    add.set_defaults(run=with_db(_partners_export))

    tenant = _subcommands(commands, "tenant")
    add = tenant.add_parser("export", help="everything of one tenant, as JSON (audited)")
    add.add_argument("slug")
    add.add_argument("--output", type=Path, help="file to write (default: standard output)")
    add.set_defaults(run=with_db(_tenant_export))
    add = tenant.add_parser("purge", help="delete all personal data of a tenant (audited)")
    add.add_argument("slug")
    add.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    add.set_defaults(run=with_db(_tenant_purge))
    add = tenant.add_parser("purge-unconfirmed", help="erase sign-ups never confirmed")
    add.add_argument("slug")
    add.add_argument(
        "--days",
        type=int,
        help="age in days (default: the tenant's limits.unconfirmed_purge_days, else 30)",
    )
    add.set_defaults(run=with_db(_purge_unconfirmed))


def _subcommands(commands: Commands[Any], name: str) -> Commands[Any]:
    """The ACTION subparsers of an existing command group (``tenant`` lives in cli.py)."""
    parser = commands.choices[name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(name)  # pragma: no cover - cli.py defines every group with actions


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _output(path: Path | None) -> AbstractContextManager[TextIO]:
    if path is None:
        return nullcontext(sys.stdout)
    return path.open("w", encoding="utf-8", newline="")


async def _publish(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"Cannot read {args.file}: {exc.strerror}", field="file") from None
    body = policy.decode_body(raw)
    effective = policy.parse_effective(args.effective, tenant["time_zone"])
    topic = None if args.no_notice else await policy.notice_topic(conn, tenant["id"], args.topic)
    async with conn.transaction():
        version = await policy.publish(
            conn,
            tenant=tenant,
            body=body,
            summary=args.summary,
            effective_at=effective,
            now=_now(),
            force_reason=args.force,
            published_by=ACTOR,
        )
        campaign = None
        if topic is not None:
            url = f"{args.settings.base_url.rstrip('/')}/policy/{tenant['slug']}"
            campaign = await policy.create_notice_campaign(
                conn, tenant=tenant, version=version, topic=topic, policy_url=url, by=ACTOR
            )
    zone = ZoneInfo(tenant["time_zone"])
    print(
        f"published version {version['version']} of {tenant['slug']}, "
        f"effective {version['effective_at'].astimezone(zone):%Y-%m-%d %H:%M %Z}"
    )
    if campaign is not None:
        try:
            queued = await campaigns.start(conn, args.settings, tenant["id"], campaign["id"])
            print(f"notice campaign {campaign['id']} started: {queued} recipient(s)")
        except OptoutError as exc:
            print(
                f"notice campaign {campaign['id']} created but not started: {exc.message}\n"
                f"start it with: optout campaign send {campaign['id']} --tenant {tenant['slug']}",
                file=sys.stderr,
            )
    return 0


async def _status(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    zone = ZoneInfo(tenant["time_zone"])
    now = _now()
    warned = False
    for item in await policy.status(conn, tenant["id"], now):
        v = item.version
        state = "in effect" if v["effective_at"] <= now else "announced"
        print(
            f"version {v['version']}  published {v['published_at'].astimezone(zone):%Y-%m-%d}  "
            f"effective {v['effective_at'].astimezone(zone):%Y-%m-%d %H:%M %Z}  {state}"
            + (f"  (forced: {v['force_reason']})" if v["force_reason"] else "")
        )
        rate = f"{item.rate_per_hour:.0f}/h" if item.rate_per_hour else "-"
        print(
            f"  notice: {item.sent} sent, {item.pending} pending, {item.not_mailed} not mailed "
            f"(site notice) of {item.total}; rate {rate}"
        )
        if item.warning:
            warned = True
            print(f"  WARNING: {item.warning}")
    return 1 if warned else 0


async def _proof(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    _, people = await policy.proof_of_notice(conn, tenant["id"], args.version)
    with _output(args.output) as out:
        write_csv(out, policy.PROOF_COLUMNS, policy.proof_rows(people))
    return 0


async def _requests_list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id = None
    if args.tenant:
        tenant_id = (await tenants.get_tenant(conn, args.tenant))["id"]
    now = _now()
    found = await privacy.list_requests(
        conn, tenant_id=tenant_id, overdue_at=now if args.overdue else None
    )
    for r in found:
        due = r["extended_due_at"] or r["due_at"]
        last = deadlines.last_day(due, r["time_zone"])
        late = " OVERDUE" if r["status"] not in ("done", "rejected") and due <= now else ""
        print(
            f"{r['id']:>6}  {r['tenant']:16} {r['kind']:15} {r['status']:22} "
            f"received {r['received_at']:%Y-%m-%d}  due {last}"
            + (" (extended)" if r["extended_due_at"] else "")
            + late
        )
    if not found:
        print("no overdue requests" if args.overdue else "no requests")
    return 0


async def _requests_create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    row = await privacy.create_request(
        conn,
        hash_key=args.settings.hash_key,
        tenant=tenant,
        kind=args.kind,
        email=args.email,
        now=_now(),
        actor=ACTOR,
    )
    await privacy.send_verification(
        conn, args.settings, tenant_id=tenant["id"], request_id=row["id"]
    )
    # The same answer whether or not the person is known (nothing is revealed).
    print(
        f"request {row['id']} recorded; "
        f"due {deadlines.last_day(row['due_at'], tenant['time_zone'])}"
    )
    return 0


async def _requests_extend(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    row, mailed = await queue.extend(
        conn,
        tenant=tenant,
        request_id=args.id,
        reason=args.reason,
        now=_now(),
        months_total=args.months,
        by=ACTOR,
    )
    last = deadlines.last_day(row["extended_due_at"], tenant["time_zone"])
    told = "the person is mailed the reason" if mailed else "tell the person why"
    print(f"request {row['id']} extended to {last}; {told}")
    return 0


async def _requests_complete(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    # The output is written inside the transaction: if it cannot be, nothing is erased or closed.
    async with conn.transaction():
        done = await queue.act(
            conn,
            args.settings,
            tenant=tenant,
            request_id=args.id,
            by=ACTOR,
            now=_now(),
            correction=queue.Correction(args.name, args.email),
            access_by="copy",
        )
        if done.already_done:
            print(f"request {args.id} was already done", file=sys.stderr)
            return 0
        if done.erasure_receipt is not None:
            subscriber_id = done.request["subscriber_id"]
            print(f"erased subscriber {subscriber_id}: receipt {done.erasure_receipt['id']}")
            for export in done.partner_exports:
                print(f"  tell the recipient of partner export {export['id']} (GDPR Art. 19)")
        if done.access is not None:
            with _output(args.output) as out:
                json.dump(done.access, out, indent=2, ensure_ascii=False)
                out.write("\n")
    print(f"request {args.id} done", file=sys.stderr if args.output is None else sys.stdout)
    return 0


async def _partners_export(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    with _output(args.output) as out:
        result = await partners.export_partners(
            conn, tenant_id=tenant["id"], out=out, by=ACTOR, partner=args.partner
        )
    print(f"partner export {result.export_id}: {result.row_count} subscriber(s)", file=sys.stderr)
    return 0


async def _tenant_export(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    data = await erasure.export_tenant(conn, tenant=tenant, by=ACTOR)
    with _output(args.output) as out:
        json.dump(data, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return 0


async def _tenant_purge(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    if not args.yes:
        raise InvalidInput(
            f"This deletes every personal datum of {tenant['slug']}; run again with --yes."
        )
    receipt = await erasure.purge_tenant(conn, tenant=tenant, by=ACTOR)
    print(json.dumps(receipt, indent=2))
    return 0


async def _purge_unconfirmed(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    days = args.days if args.days is not None else erasure.unconfirmed_days(tenant)
    if days < 1:
        raise InvalidInput("--days must be at least 1.", field="days")
    count = await erasure.purge_unconfirmed(
        conn, tenant_id=tenant["id"], now=_now(), older_than=dt.timedelta(days=days)
    )
    print(f"{count} unconfirmed sign-up(s) erased")
    reports = await imports.purge_old_reports(conn, tenant["id"], now=_now())
    print(f"{reports} import report row(s) older than {imports.REPORT_DAYS} days dropped")
    return 0
