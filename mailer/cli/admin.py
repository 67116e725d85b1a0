"""`optout token`, `optout import` and `optout suppressions`: the staff side on the command line.

Every action is written to the audit log as actor "cli".
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import asyncpg

from mailer import api_tokens, tenants
from mailer.cli.support import IMPORT_CORRECT, with_db
from mailer.consent import imports, suppression_lists
from mailer.errors import InvalidInput

BASIS_HELP = "one of " + ", ".join(imports.LAWFUL_BASES)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="API tokens").add_subparsers(metavar="ACTION")
    add = token.add_parser("create", help="create a token (printed once, never again)")
    add.add_argument("--role", required=True, choices=api_tokens.ROLES)
    add.add_argument("--tenant", help="the tenant's slug (every role but admin)")
    add.add_argument("--label", default="", help="what the token is for")
    add.add_argument("--expires-in-days", type=float, help="default: never")
    add.set_defaults(run=with_db(_token_create))
    add = token.add_parser("list", help="list tokens (the secrets are never shown)")
    add.add_argument("--tenant")
    add.set_defaults(run=with_db(_token_list))
    add = token.add_parser("expire", help="make a token expire now (or at --at)")
    add.add_argument("id", type=int)
    add.add_argument("--at", help="ISO time with zone, e.g. 2026-12-31T00:00:00+00:00")
    add.set_defaults(run=with_db(_token_expire))
    add = token.add_parser("revoke", help="revoke a token at once")
    add.add_argument("id", type=int)
    add.set_defaults(run=with_db(_token_revoke))

    add = commands.add_parser(
        "import",
        help="import subscribers from a CSV file (`import correct`: fix its lawful basis)",
        epilog="To correct the lawful basis of a past import: "
        "optout import correct IMPORT_ID --tenant T --lawful-basis B",
    )
    add.add_argument("file", type=Path, help="UTF-8 CSV with a header: email[,name]")
    add.add_argument("--tenant", required=True)
    add.add_argument("--topic", required=True)
    add.add_argument("--lawful-basis", required=True, help=BASIS_HELP)
    add.add_argument("--source", required=True, help="where the list comes from")
    add.add_argument(
        "--age-attested",
        action="store_true",
        help="everyone in the file is above the tenant's minimum age (required)",
    )
    add.add_argument(
        "--existing-consent",
        action="store_true",
        help="these people consented already (needs --evidence): no confirmation mail",
    )
    add.add_argument("--evidence", help="where and how they consented")
    add.set_defaults(run=with_db(_import))

    # `optout import correct ...`: mailer.cli.main routes it here (`import` takes a FILE where
    # other groups take an action); no help, so the command list shows it under `import`.
    add = commands.add_parser(
        IMPORT_CORRECT,
        prog="optout import correct",
        description="Correct the lawful basis of a past import: one ledger row per person, "
        "naming the old and the new basis (the old rows stay).",
    )
    add.add_argument("import_id", type=int, metavar="IMPORT_ID")
    add.add_argument("--tenant", required=True)
    add.add_argument("--lawful-basis", required=True, help=BASIS_HELP)
    add.set_defaults(run=with_db(_import_correct))

    sup = commands.add_parser("suppressions", help="suppression lists").add_subparsers(
        metavar="ACTION"
    )
    add = sup.add_parser("import", help="suppress every address of a CSV file")
    add.add_argument("file", type=Path, help="UTF-8 CSV with a header: email[,reason]")
    add.add_argument("--tenant", required=True)
    add.add_argument("--reason", required=True, choices=tuple(suppression_lists.REASON_SCOPES))
    add.set_defaults(run=with_db(_suppressions_import))
    add = sup.add_parser("export", help="export suppressions as hashes and reasons")
    add.add_argument("--tenant", required=True)
    add.add_argument("--output", type=Path, help="default: standard output")
    add.set_defaults(run=with_db(_suppressions_export))


async def _tenant_id(conn: asyncpg.Connection, slug: str | None) -> int | None:
    if slug is None:
        return None
    tenant_id: int = (await tenants.get_tenant(conn, slug))["id"]
    return tenant_id


async def _token_create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    expires_at = None
    if args.expires_in_days is not None:
        if args.expires_in_days <= 0:
            raise InvalidInput("--expires-in-days must be positive.")
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_in_days)
    created = await api_tokens.create_token(
        conn,
        role=args.role,
        tenant_id=await _tenant_id(conn, args.tenant),
        label=args.label,
        expires_at=expires_at,
    )
    print(created.secret)
    print(
        f"token {created.id} ({created.role}"
        f"{', tenant ' + args.tenant if args.tenant else ', every tenant'}"
        f"{', expires ' + created.expires_at.isoformat() if created.expires_at else ''}); "
        "store it now: it is not shown again",
        file=sys.stderr,
    )
    return 0


async def _token_list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    for row in await api_tokens.list_tokens(conn, await _tenant_id(conn, args.tenant)):
        state = "active"
        now = dt.datetime.now(dt.UTC)
        if row["revoked_at"] is not None:
            state = "revoked"
        elif row["expires_at"] is not None and row["expires_at"] <= now:
            state = "expired"
        used = row["last_used_at"].isoformat(timespec="seconds") if row["last_used_at"] else "-"
        print(
            f"{row['id']:>6}  {row['role']:10} {row['tenant'] or '*':20} {state:8} "
            f"last used {used}  {row['label']}"
        )
    return 0


async def _token_expire(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    at = None
    if args.at:
        try:
            at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            raise InvalidInput(f"--at {args.at!r} is not an ISO time.", field="at") from None
        if at.tzinfo is None:
            raise InvalidInput("--at needs a time zone, e.g. +00:00.", field="at")
    row = await api_tokens.expire_token(conn, args.id, at)
    print(f"token {args.id} expires {row['expires_at'].isoformat()}")
    return 0


async def _token_revoke(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    await api_tokens.revoke_token(conn, args.id)
    print(f"token {args.id} revoked")
    return 0


class ProgressBar:
    """A one-line bar on stderr, redrawn at most five times a second; only on a terminal."""

    WIDTH = 30

    def __init__(self) -> None:
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        share = done / total if total else 1.0
        filled = int(share * self.WIDTH)
        rate = done / max(now - self.started, 1e-6)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:6.1%} "
            f"{done}/{total} lines {rate:,.0f}/s"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _import(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise InvalidInput(f"No file {str(args.file)!r}.", field="file")
    tenant = await tenants.get_tenant(conn, args.tenant)
    topic = await tenants.get_topic(conn, tenant["id"], args.topic)
    result = await imports.run_import(
        conn,
        args.settings,
        tenant_id=tenant["id"],
        topic_id=topic["id"],
        path=args.file,
        options=imports.ImportOptions(
            lawful_basis=args.lawful_basis,
            source=args.source,
            age_attested=args.age_attested,
            existing_consent=args.existing_consent,
            evidence=args.evidence,
        ),
        progress=ProgressBar() if sys.stderr.isatty() else None,
    )
    if result["already_done"]:
        print(f"import {result['id']}: this file was imported already", file=sys.stderr)
        stated = imports.check_lawful_basis(args.lawful_basis)
        if stated != result["lawful_basis"]:
            print(
                f"import {result['id']} states the lawful basis {result['lawful_basis']!r}; "
                f"to change it: optout import correct {result['id']} --tenant {args.tenant} "
                f"--lawful-basis {stated}",
                file=sys.stderr,
            )
    errors = await imports.list_errors(conn, result["id"], after_line=0, limit=1000)
    for error in errors:
        print(f"line {error['line']}: {error['reason']}", file=sys.stderr)
    if result["rows_bad"] > len(errors):
        print(f"... and {result['rows_bad'] - len(errors)} more bad rows", file=sys.stderr)
    print(
        f"import {result['id']} {result['status']}"
        f"{' (resumed)' if result['resumed'] else ''}: {result['rows_imported']} imported, "
        f"{result['rows_skipped']} skipped, {result['rows_bad']} bad"
    )
    return 0


async def _import_correct(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    result = await imports.correct_lawful_basis(
        conn, tenant["id"], args.import_id, args.lawful_basis, actor="cli"
    )
    if not result["changed"]:
        print(f"import {result['id']} states {result['lawful_basis']!r} already; nothing changed")
        return 0
    print(
        f"import {result['id']}: lawful basis {result['old_basis']!r} corrected to "
        f"{result['lawful_basis']!r}; {result['people']} ledger rows appended"
    )
    return 0


async def _suppressions_import(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise InvalidInput(f"No file {str(args.file)!r}.", field="file")
    tenant = await tenants.get_tenant(conn, args.tenant)
    result = await suppression_lists.import_file(
        conn,
        hash_key=args.settings.hash_key,
        tenant_id=tenant["id"],
        path=args.file,
        reason=args.reason,
    )
    for line, reason in result.bad_rows:
        print(f"line {line}: {reason}", file=sys.stderr)
    print(f"{result.added} suppressed, {result.already} already suppressed, {result.bad} bad")
    return 0


async def _suppressions_export(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    if args.output is None:
        count = await suppression_lists.export(conn, tenant_id=tenant["id"], out=sys.stdout)
    else:
        with args.output.open("w", newline="", encoding="utf-8") as out:
            count = await suppression_lists.export(conn, tenant_id=tenant["id"], out=out)
    print(f"{count} suppressions exported", file=sys.stderr)
    return 0
