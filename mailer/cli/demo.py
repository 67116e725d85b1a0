"""`optout demo`: the whole system on loopback, in one command.

An embedded Postgres, an SMTP catcher that keeps every message, and `optout serve` (web,
inbound, worker); a seeded demo tenant with a DKIM key and a few hundred subscribers; a
newsletter sent at once; then the URLs to open and a one-time sign-in link for each demo staff
account (an installation admin, a marketer).

It always uses its own embedded database under OPTOUT_DATA_DIR/demo, never DATABASE_URL,
so trying the demo can never touch a real installation. Ctrl-C stops everything; a second
run reuses the data (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from mailer import journal, migrations, staff_accounts, tenants
from mailer.addresses import parse_address
from mailer.catcher import start_catcher
from mailer.cli.services import ServeAddresses, ServeOptions, serve_all
from mailer.cli.support import Commands
from mailer.config import Settings, load_settings, parse_smtp_url
from mailer.consent import writer as consent
from mailer.db import connect, database_url
from mailer.errors import OptoutError, UnknownTenant
from mailer.rights import policy
from mailer.sending import campaigns
from mailer.sending.dkim import generate_rsa_key_pem

log = logging.getLogger(__name__)

DEMO_SLUG = "demo"
SEND_TIMEOUT_SECONDS = 300  # --exit-after-send: a bound on waiting for the newsletter
DEMO_SELECTOR = "demo"
DEMO_TOPICS = (
    ("newsletter", "Newsletter", "marketing", "News and offers, about once a month."),
    ("product-alerts", "Product alerts", "marketing", "When something you use changes."),
    ("policy-notices", "Policy notices", "notice", "Changes to our privacy policy."),
)
FIRST_NAMES = [
    "ada",
    "grace",
    "alan",
    "edsger",
    "barbara",
    "donald",
    "frances",
    "ken",
    "margaret",
    "john",
    "radia",
    "tim",
    "vint",
    "leslie",
    "niklaus",
    "hedy",
    "katherine",
    "dennis",
    "bjarne",
    "guido",
]
LAST_NAMES = [
    "lovelace",
    "hopper",
    "turing",
    "dijkstra",
    "liskov",
    "knuth",
    "allen",
    "thompson",
    "hamilton",
]
POLICY_V1 = """# Privacy policy

Demo Newsletter Co. keeps your address and name to send you the mail you asked for.
You can leave any list with one click, and see, correct or delete your data at any time.
"""
POLICY_V2 = (
    POLICY_V1
    + """
## Bounces

We keep a record of mail that could not be delivered for 12 months, to stop mailing
addresses that no longer exist.
"""
)
# The demo's staff: an installation admin and a marketer of the demo tenant, each signed in by
# a one-time link printed at every start (valid a day).
DEMO_STAFF = (
    ("admin", "Demo Admin", "admin@demo.example", None),
    ("marketing", "Demo Marketer", "marketing@demo.example", "marketing"),
)
SIGNIN_LINK_SECONDS = 86_400.0
# Shown in every newsletter's footer and on the public pages (STANDARDS 42).
DEMO_CONTACT = {
    "contact_web": "https://demo.example.com/contact",
    "contact_email": "hello@demo.example.com",
}


class DemoFailed(OptoutError):
    """The demo's newsletter was not sent."""

    code = "demo_failed"


@dataclasses.dataclass(frozen=True, slots=True)
class DemoPorts:
    web: int
    smtp: int
    inbound: int


def register(commands: Commands[Any]) -> None:
    add = commands.add_parser("demo", help="run the whole system on loopback with demo data")
    add.add_argument("--fresh", action="store_true", help="throw away the demo data first")
    add.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    add.add_argument("--smtp-port", type=int, default=1025, help="SMTP catcher port")
    add.add_argument("--inbound-port", type=int, default=2525, help="inbound SMTP port")
    add.add_argument("--subscribers", type=int, default=300, help="people to seed on the first run")
    add.add_argument(
        "--exit-after-send",
        action="store_true",
        help="stop (exit 0) once the newsletter is in the catcher: a smoke test of an install",
    )
    add.set_defaults(run=run, environment=demo_environment)


# What would point the demo at a real installation (README: the demo ignores them): its own
# embedded database and keys, the catcher as relay, links to its own loopback port.
IGNORED = (
    "DATABASE_URL",
    "SMTP_URL",
    "OPTOUT_SMTP_FALLBACK_URLS",
    "OPTOUT_BASE_URL",
    "OPTOUT_SECRET_KEYS",
    "OPTOUT_HASH_KEY",
)


def demo_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment the demo reads its settings from."""
    return {name: value for name, value in env.items() if name not in IGNORED}


def run(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    ports = DemoPorts(args.port, args.smtp_port, args.inbound_port)
    folder = settings.data_dir / "demo"
    # The demo's consent journal: its own, next to (not inside) its data folder, never the
    # journal of a real installation.
    journal_folder = settings.data_dir / "demo-journal"
    if args.fresh:
        for old in (folder, journal_folder):
            if old.exists():
                shutil.rmtree(old)
    folder.mkdir(parents=True, exist_ok=True)
    # The demo folder is a data folder of its own, keys included, so that
    # `OPTOUT_DATA_DIR=<that folder> optout ...` works on the demo's data from another terminal.
    env = demo_environment(os.environ)
    demo_settings = dataclasses.replace(
        load_settings(
            env | {"OPTOUT_DATA_DIR": str(folder), "OPTOUT_JOURNAL_DIR": str(journal_folder)}
        ),
        base_url=f"http://127.0.0.1:{ports.web}",
        smtp=parse_smtp_url(f"smtp://127.0.0.1:{ports.smtp}"),
        # The catcher is local: no reason to pace the demo like a real relay.
        mailer=dataclasses.replace(settings.mailer, per_second=500.0, poll_seconds=1.0),
    )
    journal.open_journal(journal_folder)
    print(f"demo data folder: {folder}", flush=True)
    with database_url(demo_settings) as dsn:
        print("embedded Postgres is running", flush=True)
        demo_settings = dataclasses.replace(demo_settings, database_url=dsn)
        asyncio.run(_demo(demo_settings, dsn, ports, args.subscribers, args.exit_after_send))
    print("demo stopped; run `./dev demo` again to reuse the data", flush=True)
    return 0


async def _demo(
    settings: Settings, dsn: str, ports: DemoPorts, people: int, exit_after_send: bool = False
) -> None:
    conn = await connect(dsn)
    try:
        applied = await migrations.migrate(conn, settings=settings)
        print(f"migrations: {len(applied)} applied, database up to date", flush=True)
        tenant = await _seed(conn, settings, people)
        links = await _staff_links(conn, tenant["id"])
    finally:
        await conn.close()
    outbox = settings.data_dir / "outbox"
    catcher = await start_catcher(outbox, "127.0.0.1", ports.smtp)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    options = ServeOptions(
        web_port=ports.web, inbound_port=ports.inbound, outbox_dir=outbox, concurrency=4
    )
    up: asyncio.Future[ServeAddresses] = loop.create_future()
    serving = asyncio.create_task(serve_all(settings, dsn, options, stop, ready=up.set_result))
    try:
        # The newsletter goes out once everything listens; the welcome is printed last.
        watched: set[asyncio.Future[Any]] = {up, serving}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if up.done():
            campaign_id = await _send_newsletter(dsn, settings, tenant)
            _welcome(up.result(), ports, links, settings.data_dir)
            if exit_after_send:
                await _wait_until_sent(dsn, tenant["id"], campaign_id, serving)
                stop.set()
        await serving
    finally:
        stop.set()  # after an error above: drain what started before reporting it
        with contextlib.suppress(Exception):
            await serving
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        catcher.close()
        await catcher.wait_closed()


async def _seed(conn: asyncpg.Connection, settings: Settings, people: int) -> asyncpg.Record:
    key_path = settings.data_dir / "dkim-demo.pem"
    if not key_path.exists():
        key_path.write_bytes(generate_rsa_key_pem())
        key_path.chmod(0o600)
    try:
        tenant = await tenants.get_tenant(conn, DEMO_SLUG)
        print(f"tenant {DEMO_SLUG!r} exists already; reusing its data", flush=True)
        if not tenants.has_contact(tenant):  # demo data from before contact details existed
            tenant = await tenants.update_tenant(conn, DEMO_SLUG, DEMO_CONTACT)
        return tenant
    except UnknownTenant:
        pass
    tenant = await tenants.create_tenant(
        conn,
        DEMO_SLUG,
        name="Demo Newsletter Co.",
        sender_address="news@demo.example.com",
        postal_address="Demo Newsletter Co., 1 Example Street, 75001 Paris, France",
        **DEMO_CONTACT,
        partner_address="partners@demo.example.com",
        time_zone="Europe/Paris",
        dkim_selector=DEMO_SELECTOR,
        dkim_key_path=str(key_path),
    )
    print(f"created tenant {DEMO_SLUG!r} (DKIM key {key_path})", flush=True)
    batch = [
        consent.BatchRow(line, parse_address(address), name)
        for line, (address, name) in enumerate(_people(people), start=1)
    ]
    for slug, name, kind, description in DEMO_TOPICS:
        topic = await tenants.create_topic(
            conn, tenant["id"], slug=slug, name=name, kind=kind, description=description
        )
        await consent.subscribe_batch(
            conn,
            hash_key=settings.hash_key,
            tenant_id=tenant["id"],
            topic_id=topic["id"],
            batch=batch,
            age_attested=True,
            source="import",
            lawful_basis="consent",
            confirmed=True,
            form_text="Seeded by `optout demo`",
            detail={"demo": True},
        )
    print(f"  topics {', '.join(t[0] for t in DEMO_TOPICS)}; {len(batch)} subscribers", flush=True)
    await _seed_policy(conn, settings, tenant)
    return tenant


def _people(count: int) -> list[tuple[str, str]]:
    """Distinct, readable demo people: ada.lovelace@example.com, grace.hopper2@..."""
    out = []
    for n in range(count):
        first = FIRST_NAMES[n % len(FIRST_NAMES)]
        last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
        round_ = n // (len(FIRST_NAMES) * len(LAST_NAMES))
        suffix = str(round_ + 1) if round_ else ""
        out.append(
            (f"{first}.{last}{suffix}@example.com", f"{first.capitalize()} {last.capitalize()}")
        )
    return out


async def _seed_policy(
    conn: asyncpg.Connection, settings: Settings, tenant: asyncpg.Record
) -> None:
    """Version 1 in effect now, version 2 coming after the tenant's notice period, announced
    by its notice campaign (queued here, sent by the worker once everything listens), so
    `optout policy status` has a notice to follow, as `optout policy publish` would."""
    now = dt.datetime.now(dt.UTC)
    await policy.publish(
        conn,
        tenant=tenant,
        body=POLICY_V1,
        summary="The first policy.",
        effective_at=now + dt.timedelta(seconds=1),
        now=now,
        force_reason="demo: the first version, before anyone was mailed",
        published_by="demo",
    )
    version = await policy.publish(
        conn,
        tenant=tenant,
        body=POLICY_V2,
        summary="We keep records of undeliverable mail for 12 months.",
        effective_at=now + dt.timedelta(days=tenant["notice_period_days"], hours=1),
        now=now,
        published_by="demo",
    )
    notice = await policy.create_notice_campaign(
        conn,
        tenant=tenant,
        version=version,
        topic=await policy.notice_topic(conn, tenant["id"]),
        policy_url=f"{settings.base_url}/policy/{DEMO_SLUG}",
        by="demo",
    )
    queued = await campaigns.start(conn, settings, tenant["id"], notice["id"])
    print(f"  policy version 2 announced: notice queued for {queued} subscribers", flush=True)


async def _staff_links(conn: asyncpg.Connection, tenant_id: int) -> dict[str, str]:
    """A fresh one-time sign-in link per demo account: each is shown once, only its hash is
    kept."""
    links = {}
    for key, name, email, role in DEMO_STAFF:
        link = await staff_accounts.demo_account(
            conn,
            name=name,
            email=email,
            role=role,
            tenant_id=tenant_id if role is not None else None,
            link_seconds=SIGNIN_LINK_SECONDS,
        )
        links[key] = link.path()
    return links


async def _send_newsletter(dsn: str, settings: Settings, tenant: asyncpg.Record) -> int:
    conn = await connect(dsn)
    try:
        # Numbered among the newsletters alone (the policy notice is a campaign too).
        sent = await campaigns.list_campaigns(conn, tenant["id"])
        number = sum(c["template"] == "newsletter" for c in sent) + 1
        campaign = await campaigns.create(
            conn,
            tenant_id=tenant["id"],
            topic_slug="newsletter",
            name=f"Demo newsletter #{number}",
            template="newsletter",
            subject=f"Demo news #{number}: what is new this month",
            content=_newsletter_content(number, settings.base_url),
            created_by="demo",
        )
        queued = await campaigns.start(conn, settings, tenant["id"], campaign["id"])
    finally:
        await conn.close()
    print(
        f"newsletter #{number} queued for {queued} subscribers; the worker is sending", flush=True
    )
    campaign_id: int = campaign["id"]
    return campaign_id


async def _wait_until_sent(
    dsn: str, tenant_id: int, campaign_id: int, serving: asyncio.Task[None]
) -> None:
    """Return once the campaign is done: every message accepted by the catcher, which keeps a
    message on disk before it answers 250. Bounded, and ends early if serving fails."""
    conn = await connect(dsn)
    try:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            while not serving.done():
                campaign = await campaigns.get(conn, tenant_id, campaign_id)
                if campaign["status"] in ("done", "cancelled", "paused"):
                    stats = await campaigns.stats(conn, tenant_id, campaign_id)
                    if campaign["status"] != "done" or stats.failed:
                        raise DemoFailed(
                            f"the newsletter ended {campaign['status']} with "
                            f"{stats.failed} failed deliveries"
                        )
                    print(f"newsletter sent: {stats.sent} messages in the catcher", flush=True)
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise DemoFailed(
            f"the newsletter was not sent within {SEND_TIMEOUT_SECONDS} seconds"
        ) from None
    finally:
        await conn.close()


def _newsletter_content(number: int, base_url: str) -> dict[str, object]:
    return {
        "headline": f"Demo news #{number}",
        "intro": "This newsletter was sent by `optout demo` to the demo's SMTP catcher.",
        "blocks": [
            {
                "title": "Leave with one click",
                "body": "Use the Unsubscribe link below, or your mail client's own button.",
                "link": f"{base_url}/dev/outbox",
                "link_text": "See every message in the dev outbox",
            },
            {
                "title": "Your data, your choice",
                "body": "The preference centre lets you pick topics or download your data.",
                # The sentence speaks of the preference centre: the link is the recipient's own.
                "link_to_preferences": True,
                "link_text": "Open your preference centre",
            },
        ],
    }


def _welcome(
    addresses: ServeAddresses, ports: DemoPorts, links: dict[str, str], folder: Path
) -> None:
    web = addresses.web_url
    lines = [
        "",
        "Optout demo is running on loopback (Ctrl-C stops it):",
        f"  dev outbox     {web}/dev/outbox   (every message sent, as recipients see it)",
        f"  dashboard      {web}/dashboard",
        f"  sign in admin  {web}{links['admin']}   (one-time link: the installation admin)",
        f"  sign in staff  {web}{links['marketing']}   (one-time link: a marketer of demo)",
        f"  sign-up form   {web}/s/{DEMO_SLUG}/newsletter",
        f"  privacy policy {web}/policy/{DEMO_SLUG}",
        f"  SMTP catcher   127.0.0.1:{ports.smtp}   inbound SMTP 127.0.0.1:{ports.inbound}",
        f"  commands       OPTOUT_DATA_DIR={folder} ./dev optout campaign list --tenant demo",
        "",
    ]
    print("\n".join(lines), flush=True)
