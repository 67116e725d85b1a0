"""`optout consent history`: one person's subscriptions and consent ledger, with its evidence,
for compliance staff (the same rows as the admin API's consent-history route).

The person is found by the keyed hash of the address, never by scanning addresses; reading the
ledger is audited as actor "cli", like the API's audited read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from mailer import audit, tenants
from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.cli.support import Commands, with_db
from mailer.consent.ledger import event_view
from mailer.db import queries, rows
from mailer.errors import UnknownSubscriber

# The audit action of the API's route (unsubscribe_web/api.py), so one filter finds every read
# of a person's consent proof, whichever way it was made.
AUDIT_ACTION = "consent_history"
FORM_TEXT_SHOWN = 100  # characters of the consent text in the table; --json has all of it


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser("consent", help="the consent ledger").add_subparsers(
        metavar="ACTION"
    )
    add = group.add_parser(
        "history", help="one person's subscriptions and every ledger row with its evidence"
    )
    add.add_argument("--tenant", required=True)
    add.add_argument("--email", required=True, help="the person's address")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(run=with_db(_history))


async def _history(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    address = parse_address(args.email)  # a malformed address: InvalidAddress, exit 2
    tenant = await tenants.get_tenant(conn, args.tenant)
    tenant_id: int = tenant["id"]
    key = suppression_key(tenant_hash_key(args.settings.hash_key, tenant_id), address)
    q = queries()
    # The read and its audit line commit together, as in the API's audited GET.
    async with conn.transaction():
        person = await q.consent.get_subscriber_by_key(conn, tenant_id=tenant_id, email_key=key)
        if person is None:
            # Nothing else is said: not whether the address is suppressed or known elsewhere.
            raise UnknownSubscriber(
                f"no subscriber with that address in tenant {tenant['slug']}", field="email"
            )
        subscriptions = await rows(
            q.consent.list_subscriptions(conn, tenant_id=tenant_id, subscriber_id=person["id"])
        )
        events = await rows(
            q.api.consent_history(conn, tenant_id=tenant_id, subscriber_id=person["id"])
        )
        await audit.record(
            conn,
            actor="cli",
            action=AUDIT_ACTION,
            tenant_id=tenant_id,
            target_type="subscriber",
            target_id=person["id"],
        )
    zone = ZoneInfo(tenant["time_zone"])
    report = history_report(tenant, person, subscriptions, events, zone)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_history(report))
    return 0


def history_report(
    tenant: asyncpg.Record,
    person: asyncpg.Record,
    subscriptions: list[asyncpg.Record],
    events: list[asyncpg.Record],
    zone: ZoneInfo,
) -> dict[str, Any]:
    """The ledger as plain data, times in the tenant's zone; the events keep the API's shape."""

    def local(moment: dt.datetime | None) -> str | None:
        return moment.astimezone(zone).isoformat() if moment is not None else None

    return {
        "tenant": tenant["slug"],
        "time_zone": tenant["time_zone"],
        "subscriber_id": person["id"],
        "status": person["status"],
        "subscriptions": [
            {
                "topic": s["slug"],
                "kind": s["kind"],
                "state": s["state"],
                "confirmed_at": local(s["confirmed_at"]),
                "unsubscribed_at": local(s["unsubscribed_at"]),
            }
            for s in subscriptions
        ],
        "events": [event_view(e, time=local) for e in events],
    }


def format_history(report: dict[str, Any]) -> str:
    """The report as a table: subscriptions, then one line per ledger row and its evidence."""
    zone = ZoneInfo(report["time_zone"])
    lines = [
        f"subscriber {report['subscriber_id']} ({report['status']}) in tenant {report['tenant']}"
        f"; times in {report['time_zone']}",
        "",
        "subscriptions:",
    ]
    for s in report["subscriptions"]:
        since = s["unsubscribed_at"] if s["state"] == "unsubscribed" else s["confirmed_at"]
        when = f"since {_short_time(since, zone)}" if since else ""
        lines.append(f"  {s['topic']:24} {s['state']:13} {when}".rstrip())
    if not report["subscriptions"]:
        lines.append("  (none)")
    lines += ["", f"ledger ({len(report['events'])} rows, oldest first):"]
    header = ("time", "action", "effect", "topic", "source", "basis", "policy")
    lines.append("  " + _row(header))
    for e in report["events"]:
        policy = f"v{e['policy_version']}" if e["policy_version"] is not None else "-"
        cells = (
            _short_time(e["occurred_at"], zone),
            e["action"],
            e["effect"],
            e["topic"] or "-",
            e["source"],
            e["lawful_basis"] or "-",
            policy,
        )
        lines.append("  " + _row(cells))
        if e["campaign_id"] is not None:
            lines.append(f"      campaign {e['campaign_id']}")
        if e["evidence"] is not None:
            lines.append(f"      evidence {_evidence_summary(e['evidence'])}")
    return "\n".join(lines)


WIDTHS = (24, 16, 8, 16, 17, 10)  # the last column (policy) is not padded


def _row(cells: tuple[str, ...]) -> str:
    padded = [f"{cell:{width}}" for cell, width in zip(cells, WIDTHS, strict=False)]
    return " ".join([*padded, *cells[len(WIDTHS) :]]).rstrip()


def _short_time(iso: str, zone: ZoneInfo) -> str:
    # The zone's abbreviation (CET, CEST) reads better than the ISO offset of the JSON.
    return f"{dt.datetime.fromisoformat(iso).astimezone(zone):%Y-%m-%d %H:%M:%S %Z}"


def _evidence_summary(evidence: dict[str, Any]) -> str:
    """What the evidence row holds, one ``name value`` pair each, in a stable order."""
    if evidence["erased"]:
        return f"{evidence['id']}: erased"
    parts = []
    if evidence["ip"]:
        parts.append(f"ip {evidence['ip']}")
    if evidence["user_agent"]:
        parts.append(f"user agent {json.dumps(evidence['user_agent'], ensure_ascii=False)}")
    if evidence["message_id"]:
        parts.append(f"message-id {evidence['message_id']}")
    if evidence["form_text"]:
        text = " ".join(evidence["form_text"].split())
        if len(text) > FORM_TEXT_SHOWN:
            text = text[: FORM_TEXT_SHOWN - 1] + "…"
        parts.append(f"form text {json.dumps(text, ensure_ascii=False)}")
    for name, value in sorted((evidence["detail"] or {}).items()):
        parts.append(f"{name} {json.dumps(value, ensure_ascii=False, default=str)}")
    return f"{evidence['id']}: " + ("; ".join(parts) if parts else "(empty)")
