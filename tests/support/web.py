"""Test helpers for the web face: a seeded tenant with topics and confirmed subscribers, and
link tokens for them (as the mailer would put them in a message)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from mailer import tenants
from mailer.consent import writer as consent
from mailer.tokens import Keyring, LinkClaims, Purpose
from tests.conftest import TEST_HASH_KEY, TEST_KEYS


@dataclass
class World:
    tenant: int
    topics: dict[str, int]
    subscribers: list[int] = field(default_factory=list)
    keyring: Keyring = field(default_factory=lambda: Keyring(TEST_KEYS))

    def one_click(self, subscriber: int, topic: str = "news") -> str:
        claims = LinkClaims.issue(Purpose.ONE_CLICK, self.tenant, subscriber, self.topics[topic])
        return self.keyring.sign(claims)

    def undo(self, subscriber: int, topic: str = "news") -> str:
        claims = LinkClaims.issue(Purpose.UNDO, self.tenant, subscriber, self.topics[topic])
        return self.keyring.sign(claims)

    def preferences(self, subscriber: int) -> str:
        return self.keyring.sign(LinkClaims.issue(Purpose.PREFERENCES, self.tenant, subscriber))


async def seed(conn: asyncpg.Connection, subscribers: int = 1, slug: str = "acme") -> World:
    """A tenant with two marketing topics and one notice topic; each subscriber confirmed on
    both marketing topics (as an import with existing consent would leave them)."""
    tenant = await tenants.create_tenant(
        conn,
        slug,
        name="Acme News",
        sender_name="Acme",
        sender_address="news@acme.example",
        postal_address="1 Road, Town",
        contact_web="https://acme.example/contact",
    )
    topics = {}
    for topic_slug, name, kind in (
        ("news", "Weekly news", "marketing"),
        ("offers", "Special offers", "marketing"),
        ("notices", "Policy notices", "notice"),
    ):
        row = await tenants.create_topic(conn, tenant["id"], slug=topic_slug, name=name, kind=kind)
        topics[topic_slug] = row["id"]
    world = World(tenant["id"], topics)
    for n in range(subscribers):
        for topic_slug in ("news", "offers"):
            result = await consent.subscribe(
                conn,
                hash_key=TEST_HASH_KEY,
                tenant_id=world.tenant,
                topic_id=topics[topic_slug],
                email=f"person{n}@example.org",
                age_attested=True,
                source="import",
                confirmed=True,
                lawful_basis="consent",
            )
        world.subscribers.append(result.subscriber_id)
    return world
