"""Helpers for the mailer tests: a tenant with a DKIM key, thousands of subscribers at once,
settings that point the worker at a loopback sink, and a dkimpy resolver for the key."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg

from mailer import tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.config import MailerSettings, Settings, SmtpRelay, SmtpTimeouts
from mailer.sending import campaigns
from mailer.sending.dkim import generate_rsa_key_pem, public_key_dns_record
from tests.conftest import probes

DOMAIN = "news.example.com"
SELECTOR = "sel1"


@cache
def rsa_pem() -> bytes:
    return generate_rsa_key_pem()


def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
    """dkimpy's resolver, answering only the tenant's selector."""
    if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode():
        return public_key_dns_record(rsa_pem()).encode()
    return None


async def make_tenant(
    conn: asyncpg.Connection,
    tmp_path: Path,
    *,
    slug: str = "acme",
    dkim: bool = True,
    postal: str | None = "Acme Inc.\n1 Main Street\nSpringfield",
    topic_kind: str = "marketing",
    contact: str | None = "https://acme.example/contact",
) -> tuple[asyncpg.Record, asyncpg.Record]:
    fields: dict[str, Any] = {
        "name": "Acme News",
        "sender_address": f"news@{DOMAIN}",
        "postal_address": postal,
        # Marketing needs a way to reach the sender besides the post (STANDARDS 42).
        "contact_web": contact,
    }
    if dkim:
        key_path = tmp_path / f"{slug}-dkim.pem"
        key_path.write_bytes(rsa_pem())
        fields |= {"dkim_selector": SELECTOR, "dkim_key_path": str(key_path)}
    tenant = await tenants.create_tenant(conn, slug, **fields)
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="newsletter", name="Newsletter", kind=topic_kind
    )
    return tenant, topic


async def add_subscribers(
    conn: asyncpg.Connection,
    settings: Settings,
    tenant_id: int,
    topic_id: int,
    count: int,
    prefix: str = "r",
) -> dict[int, str]:
    """``count`` confirmed subscribers; returns {subscriber id: address}."""
    emails = [f"{prefix}{i}@example.org" for i in range(count)]
    key = tenant_hash_key(settings.hash_key, tenant_id)
    keys = [suppression_key(key, e) for e in emails]
    ids = [
        r["subscriber_id"]
        async for r in probes().bulk_confirmed_subscribers(
            conn, tenant_id=tenant_id, topic_id=topic_id, emails=emails, keys=keys
        )
    ]
    return dict(zip(ids, emails, strict=True))


def address_key(settings: Settings, tenant_id: int, email: str) -> bytes:
    return suppression_key(tenant_hash_key(settings.hash_key, tenant_id), email)


def mail_settings(settings: Settings, port: int, **changes: Any) -> Settings:
    """Settings sending to the loopback sink, with a short retry schedule for tests."""
    base: dict[str, Any] = {
        "retry_schedule": (0.2, 0.4),
        "lease_seconds": 10.0,
        "poll_seconds": 0.2,
        "smtp_timeout": 5.0,
        "smtp_timeouts": SmtpTimeouts(**dict.fromkeys(SmtpTimeouts.__dataclass_fields__, 5.0)),
        "per_second": 10_000.0,
        "per_hour": 10**8,
    }
    return dataclasses.replace(
        settings,
        smtp=SmtpRelay(host="127.0.0.1", port=port, use_tls=False, starttls="off"),
        mailer=MailerSettings(**(base | changes)),
    )


def sink_env(env: dict[str, str], port: int, **values: str) -> dict[str, str]:
    """A subprocess environment (tests.conftest.subprocess_env) sending to the sink."""
    out = dict(env)
    out["SMTP_URL"] = f"smtp://127.0.0.1:{port}?starttls=off"
    out["OPTOUT_RELAY_PER_SECOND"] = "10000"
    out.update(values)
    return out


async def wait_until(
    conn: asyncpg.Connection, campaign_id: int, timeout: float, *states: str
) -> str:
    """Poll the campaign's status until it is one of ``states`` (bounded by ``timeout``)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        status: str = await probes().campaign_status(conn, id=campaign_id)
        if status in states or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def newsletter_campaign(
    conn: asyncpg.Connection, settings: Settings, tmp_path: Path, count: int
) -> tuple[asyncpg.Record, asyncpg.Record, asyncpg.Record, dict[int, str]]:
    """A tenant with ``count`` confirmed newsletter subscribers and a draft campaign to them."""
    tenant, topic = await make_tenant(conn, tmp_path)
    people = await add_subscribers(conn, settings, tenant["id"], topic["id"], count)
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug="newsletter",
        name="Big",
        template="newsletter",
        subject="Big news",
        content={"headline": "News", "intro": "Hello.", "blocks": []},
    )
    return tenant, topic, campaign, people


async def spawn_worker(env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    """``optout worker --quiet`` as its own process (to be killed, or stopped with SIGTERM)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailer.cli",
        "worker",
        "--quiet",
        *extra,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None,
    )
