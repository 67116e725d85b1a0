"""A tenant with a topic, a pool, settings that allow http to the loopback receiver, and a
receiver on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from mailer import tenants
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.event_settings import EventSettings
from tests.conftest import TEST_HASH_KEY
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def event_settings(settings: Settings) -> Settings:
    fast = EventSettings(
        allow_http_loopback=True,
        backoff_seconds=0.05,
        poll_seconds=0.05,
        lease_seconds=2.0,
        timeout_seconds=2.0,
    )
    return dataclasses.replace(settings, events=fast)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(db_dsn, max_size=4)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def world(conn: asyncpg.Connection) -> dict[str, int]:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    other = await tenants.create_tenant(
        conn, "globex", name="Globex", sender_address="news@globex.example", postal_address="2 Rd"
    )
    news = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    return {"tenant": tenant["id"], "news": news["id"], "other": other["id"]}


async def subscribe(conn: asyncpg.Connection, world: dict[str, int], email: str, **kw: Any) -> int:
    result = await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        topic_id=world["news"],
        email=email,
        age_attested=True,
        source="web_form",
        confirmed=True,
        **kw,
    )
    return result.subscriber_id
