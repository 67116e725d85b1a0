"""Helpers for the inbound and webhook tests: a tenant with people, campaigns and deliveries,
sent messages built by mailer.compose, the inbound server in the test's loop, SMTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import smtplib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import aiosql
import asyncpg

from mailer import tenants
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.inbound.handler import InboundHandler
from mailer.inbound.server import start_server
from mailer.sending.compose import Recipient, Sender, prepare
from mailer.tokens import CodeClaims, CodeKind, LinkClaims, Purpose, message_id_for

DOMAIN = "news.example.com"
PARTNER = "privacy@acme.example"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@cache
def probes() -> Any:
    return aiosql.from_path(Path(__file__).parent.parent / "sql" / "inbound_probes.sql", "asyncpg")


async def rows(results: Any) -> list[Any]:
    return [row async for row in results]


@dataclass
class World:
    conn: asyncpg.Connection
    settings: Settings
    tenant_id: int
    topic_id: int
    other_topic_id: int

    @property
    def keyring(self):
        return self.settings.keyring()

    async def person(self, email: str, *, topics: Sequence[int] | None = None) -> int:
        subscriber_id = 0
        for topic in topics if topics is not None else (self.topic_id, self.other_topic_id):
            result = await consent.subscribe(
                self.conn, hash_key=self.settings.hash_key, tenant_id=self.tenant_id,
                topic_id=topic, email=email, age_attested=True, source="import",
                confirmed=True, lawful_basis="consent",
            )  # fmt: skip
            subscriber_id = result.subscriber_id
        return subscriber_id

    async def campaign(self, status: str = "sending", topic_id: int | None = None):
        topic = topic_id or self.topic_id
        return await probes().insert_campaign(
            self.conn, tenant_id=self.tenant_id, topic_id=topic, status=status
        )

    async def delivery(self, campaign_id: int, subscriber_id: int, message_id: str | None = None):
        return await probes().insert_delivery(
            self.conn, tenant_id=self.tenant_id, campaign_id=campaign_id,
            subscriber_id=subscriber_id, message_id=message_id,
        )  # fmt: skip

    def unsubscribe_address(self, subscriber_id: int, topic_id: int | None = None) -> str:
        claims = CodeClaims(
            CodeKind.UNSUBSCRIBE, (self.tenant_id, subscriber_id, topic_id or self.topic_id)
        )
        return f"unsubscribe+{self.keyring.make_code(claims)}@{DOMAIN}"

    def bounce_address(self, delivery_id: int, tenant_id: int | None = None) -> str:
        claims = CodeClaims(CodeKind.BOUNCE, (tenant_id or self.tenant_id, delivery_id))
        return f"bounces+{self.keyring.make_code(claims)}@{DOMAIN}"

    def message_id(self, delivery_id: int, tenant_id: int | None = None) -> str:
        """The Message-ID the worker gives a delivery: signed (tenant, delivery)."""
        return message_id_for(self.keyring, tenant_id or self.tenant_id, delivery_id, DOMAIN)

    def one_click_url(self, subscriber_id: int, topic_id: int | None = None) -> str:
        claims = LinkClaims.issue(
            Purpose.ONE_CLICK, self.tenant_id, subscriber_id, topic_id or self.topic_id
        )
        return f"https://optout.test/u/{self.keyring.sign(claims)}"

    def newsletter(
        self, subscriber_id: int, email: str, *, message_id: str, topic_id: int | None = None
    ) -> bytes:
        """A message as the mailer sends it: the List-Unsubscribe header is what matters."""
        sender = Sender(
            from_name="Acme News", from_address=f"news@{DOMAIN}", domain=DOMAIN,
            postal_address="1 Main Street, Springfield", list_id=f"Acme <news.{DOMAIN}>",
            feedback_id="c1:t1:newsletter:optout",
        )  # fmt: skip
        prepared = prepare(
            "newsletter", sender, "June news",
            {"headline": "June", "intro": "Hello.", "blocks": []},
        )  # fmt: skip
        return prepared.render(
            Recipient(
                to_address=email,
                to_name=None,
                message_id=message_id,
                unsubscribe_url=self.one_click_url(subscriber_id, topic_id),
                mailto_unsubscribe=self.unsubscribe_address(subscriber_id, topic_id),
                preferences_url="https://optout.test/p/PREFS",
            )
        )


async def make_world(conn: asyncpg.Connection, settings: Settings) -> World:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address=f"news@{DOMAIN}",
        postal_address="1 Main Street, Springfield", partner_address=PARTNER,
        contact_web="https://acme.example/contact",
    )  # fmt: skip
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    other = await tenants.create_topic(
        conn, tenant["id"], slug="offers", name="Offers", kind="marketing"
    )
    return World(conn, settings, tenant["id"], topic["id"], other["id"])


@dataclass
class Inbound:
    handler: InboundHandler
    port: int
    pool: asyncpg.Pool


@contextlib.asynccontextmanager
async def inbound_server(settings: Settings, dsn: str, **limits: Any) -> AsyncIterator[Inbound]:
    """The real server on a free loopback port, in the test's loop."""
    if limits:
        settings = dataclasses.replace(
            settings, inbound=dataclasses.replace(settings.inbound, **limits)
        )
    pool = await create_pool(dsn, min_size=1, max_size=4)
    handler = InboundHandler(settings, pool)
    assert await handler.refresh()
    server = await start_server(handler, "127.0.0.1", 0, hostname="inbound.test")
    try:
        yield Inbound(handler, server.sockets[0].getsockname()[1], pool)
    finally:
        server.close()
        await server.wait_closed()
        await pool.close()


@dataclass
class SessionReplies:
    rcpt: list[tuple[int, bytes]]
    data: tuple[int, bytes]  # (0, b"") when DATA was not sent


def smtplib_session(
    port: int, mail_from: str, rcpts: Sequence[str], data: bytes | None
) -> SessionReplies:
    """One SMTP session with the standard library's client (run it in a thread)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, message = client.mail(mail_from)
        assert code == 250, (code, message)
        replies = [client.rcpt(rcpt) for rcpt in rcpts]
        data_reply = (0, b"")
        if data is not None and any(code == 250 for code, _ in replies):
            data_reply = client.data(data)
        return SessionReplies(replies, data_reply)


async def send_smtplib(
    port: int, mail_from: str, rcpts: Sequence[str], data: bytes | None
) -> SessionReplies:
    return await asyncio.to_thread(smtplib_session, port, mail_from, rcpts, data)


def fixture(kind: str, name: str) -> bytes:
    """A fixture as it travels over SMTP: CRLF line endings (the files use LF)."""
    return re.sub(rb"\r?\n", b"\r\n", (FIXTURES / kind / name).read_bytes())
