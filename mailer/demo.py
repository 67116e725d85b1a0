"""`optout demo`: an embedded Postgres, migrated, with a seeded demo tenant.

It always uses its own embedded database under OPTOUT_DATA_DIR/demo, never DATABASE_URL,
so trying the demo can never touch a real installation.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil

import asyncpg

from mailer import consent, migrations, tenants
from mailer.config import Settings
from mailer.db import connect, database_url
from mailer.errors import UnknownTenant

DEMO_SLUG = "demo"
DEMO_TOPICS = (
    ("newsletter", "Newsletter", "marketing", "News and offers, about once a month."),
    ("product-alerts", "Product alerts", "marketing", "When something you use changes."),
    ("policy-notices", "Policy notices", "notice", "Changes to our privacy policy."),
)
DEMO_PEOPLE = ("ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "ken")


def run(settings: Settings, args: argparse.Namespace) -> int:
    demo_settings = dataclasses.replace(
        settings, database_url=None, data_dir=settings.data_dir / "demo"
    )
    if args.fresh and demo_settings.data_dir.exists():
        shutil.rmtree(demo_settings.data_dir / "pg", ignore_errors=True)
    print(f"demo data folder: {demo_settings.data_dir}")
    with database_url(demo_settings) as dsn:
        print("embedded Postgres is running")
        asyncio.run(_seed(demo_settings, dsn))
    print("embedded Postgres stopped; run `./dev demo` again to reuse the data")
    return 0


async def _seed(settings: Settings, dsn: str) -> None:
    conn = await connect(dsn)
    try:
        applied = await migrations.migrate(conn, settings=settings)
        print(f"migrations: {len(applied)} applied, database up to date")
        await _seed_tenant(conn, settings)
    finally:
        await conn.close()


async def _seed_tenant(conn: asyncpg.Connection, settings: Settings) -> None:
    try:
        tenant = await tenants.get_tenant(conn, DEMO_SLUG)
        print(f"tenant {DEMO_SLUG!r} exists already (id {tenant['id']}); reusing it")
        return
    except UnknownTenant:
        pass
    tenant = await tenants.create_tenant(
        conn,
        DEMO_SLUG,
        name="Demo Newsletter Co.",
        sender_address="news@demo.example.com",
        postal_address="Demo Newsletter Co., 1 Example Street, 75001 Paris, France",
        partner_address="partners@demo.example.com",
        time_zone="Europe/Paris",
    )
    print(f"created tenant {DEMO_SLUG!r} (id {tenant['id']})")
    topic_ids = []
    for slug, name, kind, description in DEMO_TOPICS:
        topic = await tenants.create_topic(
            conn, tenant["id"], slug=slug, name=name, kind=kind, description=description
        )
        topic_ids.append(topic["id"])
        print(f"  topic {slug} ({kind})")
    evidence = consent.Evidence(form_text="Seeded by `optout demo`", detail={"demo": True})
    for person in DEMO_PEOPLE:
        for topic_id in topic_ids:
            await consent.subscribe(
                conn,
                hash_key=settings.hash_key,
                tenant_id=tenant["id"],
                topic_id=topic_id,
                email=f"{person}@example.com",
                name=person.capitalize(),
                age_attested=True,
                source="import",
                confirmed=True,
                lawful_basis="consent",
                evidence=evidence,
            )
    print(f"  {len(DEMO_PEOPLE)} subscribers, confirmed on every topic")
