"""`optout staff`: staff accounts on the command line (issue 24). The first admin of a new
install is invited here: `optout staff invite --admin EMAIL --print-link` needs no account."""

from __future__ import annotations

import argparse
import sys

import asyncpg

from mailer import staff_accounts, tenants
from mailer.api_tokens import ROLES
from mailer.cli.support import Commands, with_db
from mailer.errors import InvalidInput

ACTOR = "cli"


def register(commands: Commands[argparse.ArgumentParser]) -> None:
    staff = commands.add_parser("staff", help="staff accounts").add_subparsers(metavar="ACTION")
    add = staff.add_parser(
        "invite",
        help="invite a person (again: a fresh link for one not yet accepted)",
    )
    add.add_argument("email")
    add.add_argument("--name", default="", help="the person's name, as the audit shows it")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--admin", action="store_true", help="installation admin: every tenant")
    who.add_argument("--role", choices=ROLES, help="the role in --tenant")
    add.add_argument("--tenant", help="the tenant of --role")
    add.add_argument(
        "--print-link",
        action="store_true",
        help="print the single-use link here (the only way without OPTOUT_STAFF_MAIL_FROM)",
    )
    add.set_defaults(run=with_db(_invite))
    add = staff.add_parser("list", help="accounts with status and roles")
    add.add_argument("--tenant", help="only those with a role in this tenant")
    add.set_defaults(run=with_db(_list))
    add = staff.add_parser("disable", help="disable an account: sessions end, its tokens revoked")
    add.add_argument("id", type=int)
    add.add_argument("--keep-tokens", action="store_true", help="keep the API tokens it made")
    add.set_defaults(run=with_db(_disable))
    add = staff.add_parser("role", help="set (or with --none remove) an account's role in a tenant")
    add.add_argument("id", type=int)
    add.add_argument("--tenant", required=True)
    what = add.add_mutually_exclusive_group(required=True)
    what.add_argument("--role", choices=ROLES)
    what.add_argument("--none", action="store_true", help="no role in this tenant")
    add.add_argument("--keep-tokens", action="store_true", help="keep the API tokens it made")
    add.set_defaults(run=with_db(_role))
    add = staff.add_parser(
        "reset-password", help="a single-use link (1 hour) to choose a new password"
    )
    add.add_argument("email")
    add.add_argument("--print-link", action="store_true", help="print the link here")
    add.set_defaults(run=with_db(_reset_password))
    add = staff.add_parser("reset-2fa", help="remove a lost authenticator; sessions end")
    add.add_argument("id", type=int)
    add.set_defaults(run=with_db(_reset_2fa))


async def _tenant_id(conn: asyncpg.Connection, slug: str) -> int:
    tenant_id: int = (await tenants.get_tenant(conn, slug))["id"]
    return tenant_id


async def _invite(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    settings = args.settings
    if args.role is not None and not args.tenant:
        raise InvalidInput("--role needs --tenant.", field="tenant")
    if args.admin and args.tenant:
        raise InvalidInput("An installation admin spans every tenant: give no --tenant.")
    mailing = not args.print_link
    if mailing and settings.staff.mail_from is None:
        raise InvalidInput(
            "OPTOUT_STAFF_MAIL_FROM is not set, so no invitation can be mailed: set it, or give "
            "--print-link and hand the link to the person yourself."
        )
    link = await staff_accounts.invite(
        conn,
        email=args.email,
        name=args.name,
        role=args.role,
        tenant_id=await _tenant_id(conn, args.tenant) if args.tenant else None,
        installation_admin=args.admin,
        valid_seconds=settings.staff.invite_seconds,
        actor=ACTOR,
        mail_base_url=settings.base_url if mailing else None,
    )
    hours = round(settings.staff.invite_seconds / 3600)
    if mailing:
        # The worker sends it; the link is shown nowhere else.
        print(f"account {link.account_id} invited; the link is mailed to {link.email} ({hours} h)")
        return 0
    print(settings.base_url.rstrip("/") + link.path())
    print(
        f"account {link.account_id} invited; the link works once, for {hours} hours",
        file=sys.stderr,
    )
    return 0


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id = await _tenant_id(conn, args.tenant) if args.tenant else None
    for row in await staff_accounts.list_accounts(conn, tenant_id):
        roles = "installation admin" if row["installation_admin"] else " ".join(row["roles"])
        second = "2fa" if row["has_totp"] else "-"
        print(
            f"{row['id']:>6}  {row['status']:8} {second:4} {row['email']:40} "
            f"{roles or '(no role)'}  {row['name']}"
        )
    return 0


async def _disable(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    done = await staff_accounts.disable(conn, args.id, actor=ACTOR, keep_tokens=args.keep_tokens)
    print(
        f"account {args.id} disabled; {done['sessions_ended']} sessions ended, "
        f"{done['tokens_revoked']} API tokens revoked"
    )
    return 0


async def _role(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    done = await staff_accounts.set_role(
        conn,
        args.id,
        tenant_id=await _tenant_id(conn, args.tenant),
        role=None if args.none else args.role,
        actor=ACTOR,
        keep_tokens=args.keep_tokens,
    )
    print(
        f"account {args.id}: {'no role' if args.none else args.role} in {args.tenant}; "
        f"{done['sessions_ended']} sessions ended, {done['tokens_revoked']} API tokens revoked"
    )
    return 0


async def _reset_password(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    mailing = not args.print_link
    if mailing and args.settings.staff.mail_from is None:
        raise InvalidInput(
            "OPTOUT_STAFF_MAIL_FROM is not set, so no reset link can be mailed: set it, or give "
            "--print-link and hand the link to the person yourself."
        )
    link = await staff_accounts.request_reset(
        conn,
        args.email,
        actor=ACTOR,
        mail_base_url=args.settings.base_url if mailing else None,
    )
    if link is None:
        raise InvalidInput(f"No active staff account has the address {args.email!r}.")
    if mailing:
        print(f"a reset link (one hour, once) is mailed to {link.email}")
        return 0
    print(args.settings.base_url.rstrip("/") + link.path())
    print("the link works once, for one hour; the sessions end when it is used", file=sys.stderr)
    return 0


async def _reset_2fa(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    await staff_accounts.reset_second_factor(conn, args.id, actor=ACTOR)
    print(f"account {args.id}: second factor removed, sessions ended; it enrols again")
    return 0
