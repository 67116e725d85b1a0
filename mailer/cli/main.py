"""`optout` commands; the one place that wires the database, web, worker and inbound together.

Every domain error ends the command with one line on stderr and its exit code (2 for bad
configuration or input), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from mailer import audit, journal, migrations, tenants, wording
from mailer.cli.support import IMPORT_CORRECT, with_db
from mailer.config import load_settings
from mailer.db import NOT_MIGRATED
from mailer.errors import ConfigError, InvalidInput, OptoutError
from mailer.i18n import LANGUAGES
from mailer.sending import retention


def main(argv: Sequence[str] | None = None) -> int:
    words = route(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        # `optout demo` reads its settings without the ones that would point it elsewhere.
        environment = getattr(args, "environment", None)
        settings = load_settings(environment(os.environ) if environment else None)
        if settings.journal_dir is not None:
            # This process's journal file; created at its first opt-out, suppression or erasure.
            journal.open_journal(settings.journal_dir)
        code: int = args.run(settings, args)
        return code
    except OptoutError as exc:
        print(f"optout: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# Commands whose words argparse cannot nest: `optout import FILE` takes a file where other
# groups take an action, so `optout import correct ID` goes to a parser of its own.
ROUTES = {("import", "correct"): IMPORT_CORRECT}


def route(argv: Sequence[str]) -> list[str]:
    """The argument list argparse understands: ``import correct ...`` -> ``import-correct``."""
    words = list(argv)
    for prefix, name in ROUTES.items():
        if tuple(words[: len(prefix)]) == prefix:
            return [name, *words[len(prefix) :]]
    return words


# The command modules, in the order `optout --help` lists them, with the first words of the
# commands each registers or adds to (policy adds `tenant export` and `tenant purge`). `optout
# WORD ...` imports only the modules of WORD: importing them all (the web face and the worker
# included) cost every start of the program about half a second.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "mailer.cli.inbound": ("inbound",),
    "mailer.cli.admin": ("token", "import", IMPORT_CORRECT, "suppressions"),
    "mailer.cli.staff": ("staff",),
    "mailer.cli.policy": ("policy", "requests", "partners", "tenant"),
    "mailer.cli.subprocessors": ("subprocessors",),
    "mailer.cli.campaigns": ("campaign", "worker"),
    "mailer.cli.ledger": ("consent",),
    "mailer.cli.journal": ("journal",),
    "mailer.cli.web": ("web",),
    "mailer.cli.dkim": ("dkim",),
    "mailer.cli.serve": ("serve",),
    "mailer.cli.events": ("events",),
    "mailer.cli.demo": ("demo",),
}
# The commands this module registers itself.
OWN_COMMANDS = ("db", "tenant", "topic")


def modules_for(word: str | None) -> list[str]:
    """The command modules the parser needs for a command line starting with ``word``; every
    one for help or an unknown word, so that both list every command."""
    modules = [module for module, words in COMMAND_MODULES.items() if word in words]
    if modules or word in OWN_COMMANDS:
        return modules
    return list(COMMAND_MODULES)


def build_parser(word: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given a command line's first word, of that command only
    (besides this module's own few, which cost nothing to import)."""
    parser = argparse.ArgumentParser(prog="optout", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    db = commands.add_parser("db", help="database migrations").add_subparsers(metavar="ACTION")
    add = db.add_parser("migrate", help="apply pending migrations, record key fingerprints")
    add.set_defaults(run=with_db(_migrate, check=False))
    add = db.add_parser("status", help="list migrations and whether each is applied")
    add.set_defaults(run=with_db(_status, check=False))
    add = db.add_parser(
        "maintain",
        help="retention: fold deliveries and inbound events older than each tenant's "
        "retention into campaign figures and remove them",
    )
    add.set_defaults(run=with_db(_maintain))

    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(metavar="ACTION")
    add = tenant.add_parser("create", help="create a tenant")
    add.add_argument("slug")
    _tenant_options(add)
    add.set_defaults(run=with_db(_tenant_create))
    add = tenant.add_parser("update", help="change a tenant's fields")
    add.add_argument("slug")
    _tenant_options(add)
    add.set_defaults(run=with_db(_tenant_update))
    add = tenant.add_parser("show", help="show one tenant")
    add.add_argument("slug")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(run=with_db(_tenant_show))
    add = tenant.add_parser("list", help="list tenants")
    add.set_defaults(run=with_db(_tenant_list))
    words = tenant.add_parser(
        "wording", help="the tenant's own wording of a few subscriber-facing strings"
    ).add_subparsers(metavar="ACTION")
    add = words.add_parser("set", help="set a string in one language (plain text, one line)")
    add.add_argument("slug")
    add.add_argument("key", help=f"one of {', '.join(wording.WORDING_KEYS)}")
    add.add_argument("language", help=f"one of {', '.join(LANGUAGES)}")
    add.add_argument("text")
    add.set_defaults(run=with_db(_wording_set))
    add = words.add_parser("clear", help="back to Optout's own words")
    add.add_argument("slug")
    add.add_argument("key")
    add.add_argument("language")
    add.set_defaults(run=with_db(_wording_clear))
    add = words.add_parser("list", help="list the tenant's wording")
    add.add_argument("slug")
    add.set_defaults(run=with_db(_wording_list))

    topic = commands.add_parser("topic", help="topics of a tenant").add_subparsers(metavar="ACTION")
    add = topic.add_parser("create", help="create a topic")
    add.add_argument("slug")
    add.add_argument("--tenant", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--kind", choices=tenants.TOPIC_KINDS, default="marketing")
    add.add_argument("--description", default="")
    add.set_defaults(run=with_db(_topic_create))
    add = topic.add_parser("list", help="list a tenant's topics")
    add.add_argument("--tenant", required=True)
    add.set_defaults(run=with_db(_topic_list))

    # Each feature registers its own command group from its own module (mailer/cli/*.py):
    # add the module and its words to COMMAND_MODULES.
    for module in modules_for(word):
        importlib.import_module(module).register(commands)
    return parser


def _tenant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--sender-name")
    parser.add_argument("--sender-address", help="the From address")
    parser.add_argument("--sender-domain", help="default: the From address's domain")
    parser.add_argument("--postal-address", help="printed in every commercial message")
    # STANDARDS 42 (CASL): at least one of these three before any marketing campaign starts.
    parser.add_argument("--contact-web", help="a contact web page, shown in every commercial mail")
    parser.add_argument("--contact-email", help="a contact email address, shown likewise")
    parser.add_argument("--contact-phone", help="a contact phone number, shown likewise")
    parser.add_argument("--dkim-selector")
    parser.add_argument("--dkim-key-path", help="PEM file of the RSA key (2048 bits or more)")
    parser.add_argument("--dkim-ed25519-selector", help="optional second signature (RFC 8463)")
    parser.add_argument("--dkim-ed25519-key-path", help="PEM file of the Ed25519 key")
    parser.add_argument("--partner-address", help="where people withdraw partner sharing")
    parser.add_argument(
        "--default-language",
        choices=LANGUAGES,
        help="pages and mail of subscribers with no language of their own (default en)",
    )
    parser.add_argument("--time-zone", help="IANA name, e.g. Europe/Paris")
    parser.add_argument("--minimum-age", type=int, help="sign-up attests being above it")
    parser.add_argument("--notice-period-days", type=int, help="before a policy takes effect")
    parser.add_argument("--holiday", action="append", dest="holidays", help="YYYY-MM-DD")
    parser.add_argument("--limits", help="JSON object")


def _tenant_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields = {name: getattr(args, name, None) for name in tenants.TENANT_FIELDS}
    if args.limits is not None:
        try:
            fields["limits"] = json.loads(args.limits)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--limits is not JSON: {exc}", field="limits") from None
    return {name: value for name, value in fields.items() if value is not None}


async def _migrate(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    applied = await migrations.migrate(conn, settings=args.settings)
    for name in applied:
        print(f"applied {name}")
    print(f"{len(applied)} migration(s) applied; the database is up to date")
    return 0


async def _maintain(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    done = await retention.maintain(conn, dt.datetime.now(dt.UTC))
    if done.skipped:
        print("another maintenance run is in progress; nothing done")
        return 0
    print(
        f"{done.campaigns_folded} campaign(s) folded, {done.notice_proofs} proof(s) of notice "
        f"kept, {done.deliveries_removed} deliveries and {done.inbound_removed} inbound "
        f"events removed, {done.counter_rows_compacted} counter rows compacted"
    )
    return 0


async def _status(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    pending = 0
    states = await migrations.status(conn)
    for state in states:
        if state.applied_at is None:
            pending += 1
            print(f"pending  {state.name}")
        else:
            note = "  (file changed since it was applied)" if state.changed else ""
            print(f"applied  {state.name}  {state.applied_at:%Y-%m-%d %H:%M:%S%z}{note}")
    print(f"{pending} pending")
    if pending == len(states):  # never migrated: the same answer every other command gives
        raise ConfigError(NOT_MIGRATED)
    return 0


async def _tenant_create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    fields = _tenant_fields(args)
    async with conn.transaction():  # the tenant and its audit line commit together
        row = await tenants.create_tenant(conn, args.slug, **fields)
        await _audit(conn, "tenant.create", row["id"], "tenant", row["id"], fields)
    print(f"created tenant {row['slug']} (id {row['id']})")
    return 0


async def _tenant_update(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    fields = _tenant_fields(args)
    if not fields:
        raise InvalidInput("Nothing to change: give at least one --option.")
    async with conn.transaction():
        row = await tenants.update_tenant(conn, args.slug, fields)
        await _audit(conn, "tenant.update", row["id"], "tenant", row["id"], fields)
    print(f"updated tenant {row['slug']}: {', '.join(sorted(fields))}")
    return 0


async def _audit(
    conn: asyncpg.Connection,
    action: str,
    tenant_id: int,
    target_type: str,
    target_id: int,
    fields: dict[str, Any],
) -> None:
    """One audit line as actor "cli": the field names changed, never their values."""
    await audit.record(
        conn,
        actor="cli",
        action=action,
        tenant_id=tenant_id,
        target_type=target_type,
        target_id=target_id,
        detail={"fields": sorted(fields)} if fields else {},
    )


async def _tenant_show(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    row = dict(await tenants.get_tenant(conn, args.slug))
    if args.json:
        print(json.dumps(row, default=str, indent=2))
    else:
        for name, value in row.items():
            print(f"{name:20} {value if value is not None else '-'}")
    return 0


async def _tenant_list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    for row in await tenants.list_tenants(conn):
        print(f"{row['slug']:24} {row['name']:32} {row['sender_address']}")
    return 0


async def _wording_set(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    async with conn.transaction():
        await wording.set_wording(conn, tenant["id"], args.key, args.language, args.text)
        await _audit(conn, "tenant.wording", tenant["id"], "tenant", tenant["id"], {args.key: 1})
    print(f"set {args.key} ({args.language}) of tenant {tenant['slug']}")
    return 0


async def _wording_clear(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    async with conn.transaction():
        cleared = await wording.clear_wording(conn, tenant["id"], args.key, args.language)
        if cleared:
            await _audit(
                conn, "tenant.wording", tenant["id"], "tenant", tenant["id"], {args.key: 1}
            )
    print(f"{'cleared' if cleared else 'nothing to clear:'} {args.key} ({args.language})")
    return 0


async def _wording_list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.slug)
    for row in await wording.list_wording(conn, tenant["id"]):
        print(f"{row['key']:14} {row['language']:3} {row['text']}")
    return 0


async def _topic_create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    async with conn.transaction():
        row = await tenants.create_topic(
            conn,
            tenant["id"],
            slug=args.slug,
            name=args.name,
            kind=args.kind,
            description=args.description,
        )
        await _audit(conn, "topic.create", tenant["id"], "topic", row["id"], {})
    print(f"created topic {row['slug']} ({row['kind']}) in {tenant['slug']}")
    return 0


async def _topic_list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant = await tenants.get_tenant(conn, args.tenant)
    for row in await tenants.list_topics(conn, tenant["id"]):
        print(f"{row['slug']:24} {row['kind']:10} {row['name']}")
    return 0
