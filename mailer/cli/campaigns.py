"""`optout campaign ...` and `optout worker`: create, preview, test, schedule, send, watch,
pause, resume, cancel campaigns, and run the sending worker."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email
import email.message
import email.policy
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from mailer import tenants
from mailer.cli.support import Commands, with_db
from mailer.config import Settings
from mailer.db import database_url, pool_for
from mailer.errors import InvalidInput
from mailer.sending import campaigns
from mailer.sending.worker import Worker


def register(commands: Commands[Any]) -> None:
    group = commands.add_parser("campaign", help="campaigns").add_subparsers(metavar="ACTION")

    add = group.add_parser("create", help="create a draft campaign")
    add.add_argument("--tenant", required=True)
    add.add_argument("--topic", required=True, help="the topic slug it is sent to")
    add.add_argument("--name", required=True)
    add.add_argument("--subject", required=True)
    add.add_argument("--template", default="newsletter")
    add.add_argument("--content", help="JSON file with the template's values")
    add.add_argument("--content-json", help="the template's values as a JSON string")
    add.add_argument("--priority", type=int, default=0)
    add.set_defaults(run=with_db(_create))

    add = group.add_parser("list", help="list a tenant's campaigns")
    add.add_argument("--tenant", required=True)
    add.set_defaults(run=with_db(_list))

    add = group.add_parser("preview", help="show the message as a sample recipient gets it")
    _target(add)
    add.add_argument("--html", type=Path, metavar="FILE", help="write the HTML part, for a browser")
    add.add_argument("--eml", type=Path, metavar="FILE", help="write the whole message (.eml)")
    add.set_defaults(run=with_db(_preview))

    for name, helptext, action in (
        ("pause", "stop sending (within one batch)", _pause),
        ("resume", "continue a paused campaign", _resume),
        ("cancel", "stop for good; queued mail is dropped", _cancel),
        ("retry-failed", "queue the soft failures again", _retry),
    ):
        add = group.add_parser(name, help=helptext)
        _target(add)
        add.set_defaults(run=with_db(action))

    add = group.add_parser("test", help="send the campaign's message to one address")
    _target(add)
    add.add_argument("--to", required=True, help="the address to send the test to")
    add.set_defaults(run=with_db(_test))

    add = group.add_parser("schedule", help="start sending at a given time")
    _target(add)
    add.add_argument("--at", required=True, help="ISO 8601 time, e.g. 2026-06-01T09:00+02:00")
    add.set_defaults(run=with_db(_schedule))

    add = group.add_parser("send", help="start sending now and show progress")
    _target(add)
    add.add_argument("--no-follow", action="store_true", help="start and return")
    add.set_defaults(run=with_db(_send))

    add = group.add_parser("status", help="progress and results")
    _target(add)
    add.add_argument("--follow", action="store_true", help="keep showing progress until done")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(run=with_db(_status))

    add = commands.add_parser("worker", help="run the sending worker")
    add.add_argument("--concurrency", type=int, help="SMTP connections (OPTOUT_SMTP_POOL_SIZE)")
    add.add_argument("--until-idle", action="store_true", help="exit when nothing is due")
    add.add_argument("--quiet", action="store_true", help="log warnings only")
    add.set_defaults(run=_worker)


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", type=int, help="campaign id")
    parser.add_argument("--tenant", required=True)


async def _tenant_id(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id: int = (await tenants.get_tenant(conn, args.tenant))["id"]
    return tenant_id


def _content(args: argparse.Namespace) -> dict[str, Any]:
    try:
        if args.content:
            value = json.loads(Path(args.content).read_text())
        elif args.content_json:
            value = json.loads(args.content_json)
        else:
            value = {}
    except OSError as exc:
        raise InvalidInput(f"--content: cannot read {args.content}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the campaign content is not JSON: {exc}", field="content") from None
    if not isinstance(value, dict):
        raise InvalidInput("the campaign content must be a JSON object", field="content")
    return value


async def _create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    row = await campaigns.create(
        conn,
        tenant_id=await _tenant_id(conn, args),
        topic_slug=args.topic,
        name=args.name,
        template=args.template,
        subject=args.subject,
        content=_content(args),
        priority=args.priority,
    )
    print(f"created campaign {row['id']} ({row['status']})")
    return 0


async def _list(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    for row in await campaigns.list_campaigns(conn, await _tenant_id(conn, args)):
        print(f"{row['id']:>6}  {row['status']:10} {row['name']}")
    return 0


# The headers a person checks in a preview: who it is from, what it says, how to leave.
PREVIEW_HEADERS = (
    "From",
    "Reply-To",
    "To",
    "Subject",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


async def _preview(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    raw = await campaigns.preview(conn, args.settings, await _tenant_id(conn, args), args.campaign)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    written = []
    try:
        if args.html is not None:
            if html is None:
                raise InvalidInput("the message has no HTML part", field="html")
            args.html.write_text(html.get_content(), encoding="utf-8")
            written.append(f"wrote the HTML part to {args.html} (open it in a browser)")
        if args.eml is not None:
            args.eml.write_bytes(raw)
            written.append(f"wrote the message to {args.eml} (open it in a mail client)")
    except OSError as exc:
        raise InvalidInput(f"cannot write {exc.filename}: {exc.strerror}") from None
    for name in PREVIEW_HEADERS:
        for value in message.get_all(name) or ():
            print(f"{name}: {value}")
    print(f"size: {len(raw):,} bytes; parts: {', '.join(_content_types(message))}")
    print()
    print(text.get_content().rstrip() if text is not None else "(no text part)")
    for line in written:
        print(line, file=sys.stderr)
    return 0


def _content_types(message: email.message.EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk() if not part.is_multipart()]


async def _pause(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    await campaigns.pause(conn, await _tenant_id(conn, args), args.campaign)
    print(f"campaign {args.campaign} paused; workers stop within one batch")
    return 0


async def _resume(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    await campaigns.resume(conn, await _tenant_id(conn, args), args.campaign)
    print(f"campaign {args.campaign} sending again")
    return 0


async def _cancel(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    await campaigns.cancel(conn, await _tenant_id(conn, args), args.campaign)
    print(f"campaign {args.campaign} cancelled")
    return 0


async def _retry(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    count = await campaigns.retry_failed(conn, await _tenant_id(conn, args), args.campaign)
    print(f"campaign {args.campaign}: {count} failed deliveries queued again")
    return 0


async def _test(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id = await _tenant_id(conn, args)
    delivery = await campaigns.test_send(conn, args.settings, tenant_id, args.campaign, args.to)
    print(f"test message queued (delivery {delivery}); a running worker sends it")
    return 0


async def _schedule(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    try:
        at = dt.datetime.fromisoformat(args.at)
    except ValueError:
        raise InvalidInput(f"--at: {args.at!r} is not an ISO 8601 time", field="at") from None
    if at.tzinfo is None:
        raise InvalidInput("--at needs a time zone offset, e.g. +02:00 or Z", field="at")
    row = await campaigns.schedule(
        conn, args.settings, await _tenant_id(conn, args), args.campaign, at
    )
    print(f"campaign {row['id']} scheduled for {row['scheduled_at']:%Y-%m-%d %H:%M %Z}")
    return 0


async def _send(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id = await _tenant_id(conn, args)
    queued = await campaigns.start(conn, args.settings, tenant_id, args.campaign)
    print(f"campaign {args.campaign}: {queued} recipients queued; workers are sending")
    if args.no_follow:
        return 0
    return await _follow(conn, tenant_id, args.campaign)


async def _status(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant_id = await _tenant_id(conn, args)
    if args.follow:
        return await _follow(conn, tenant_id, args.campaign)
    stats = await campaigns.stats(conn, tenant_id, args.campaign)
    if args.json:
        print(json.dumps(_stats_dict(stats), default=str, indent=2))
        return 0
    print(format_stats(stats))
    return 0


def format_stats(stats: campaigns.Stats) -> str:
    """One line per figure; unsubscribes as a small table of channel and count below theirs."""
    lines = []
    for name, value in _stats_dict(stats).items():
        if name == "unsubscribed":
            lines.append(f"{name:14} {sum(value.values())}")
            lines += [f"  {channel:20} {count:>8}" for channel, count in sorted(value.items())]
        else:
            lines.append(f"{name:14} {value if value is not None else '-'}")
    return "\n".join(lines)


def _stats_dict(stats: campaigns.Stats) -> dict[str, Any]:
    return {
        "status": stats.status,
        "total": stats.total,
        "queued": stats.queued + stats.sending,
        "sent": stats.sent,
        "deferred": stats.deferred,
        "failed": stats.failed,
        "bounced": stats.bounced,
        "suppressed": stats.suppressed,
        "cancelled": stats.cancelled,
        "complained": stats.complained,
        "unsubscribed": dict(stats.unsubscribed),
        "rate_per_s": round(stats.rate, 1),
        "pause_reason": stats.pause_reason,
    }


def progress_line(stats: campaigns.Stats, *, width: int = 30, bar: bool = True) -> str:
    """One progress line: sent, failed, rate and ETA (with a bar on a terminal)."""
    done = stats.sent + stats.failed + stats.bounced + stats.suppressed + stats.cancelled
    total = max(stats.total, 1)
    fraction = min(done / total, 1.0)
    rate = stats.rate
    eta = "-"
    if rate > 0 and stats.remaining:
        eta = str(dt.timedelta(seconds=int(stats.remaining / rate)))
    text = (
        f"{fraction:6.1%} sent {stats.sent} failed {stats.failed + stats.bounced} "
        f"deferred {stats.deferred} rate {rate:.1f}/s ETA {eta} [{stats.status}]"
    )
    if not bar:
        return text
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "] " + text


async def _follow(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> int:
    tty = sys.stdout.isatty()
    last_plain = 0.0
    while True:
        stats = await campaigns.stats(conn, tenant_id, campaign_id)
        finished = stats.status in ("done", "cancelled", "paused") or (
            stats.status != "sending" and stats.remaining == 0
        )
        if tty:
            sys.stdout.write("\r" + progress_line(stats) + "\x1b[K")
            sys.stdout.flush()
        elif finished or time.monotonic() - last_plain >= 5:
            print(progress_line(stats, bar=False), flush=True)
            last_plain = time.monotonic()
        if finished:
            if tty:
                sys.stdout.write("\n")
            if stats.pause_reason and stats.status == "paused":
                print(f"paused: {stats.pause_reason}")
            return 0
        await asyncio.sleep(1.0)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )

    async def run(dsn: str) -> int:
        async with pool_for(settings, dsn) as pool:
            worker = Worker(pool, settings, concurrency=args.concurrency)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, worker.stop)
            stats = await worker.run(until_idle=args.until_idle)
            print(
                f"worker stopped: sent {stats.sent}, deferred {stats.deferred}, "
                f"failed {stats.failed}, bounced {stats.bounced}, suppressed {stats.suppressed}",
                file=sys.stderr,
            )
            return 0

    with database_url(settings) as dsn:
        return asyncio.run(run(dsn))
