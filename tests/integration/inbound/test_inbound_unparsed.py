"""Never a silent drop (issue 23 item 5): a bounce to a VERP address that no parser
understands is kept against the delivery its VERP names, counted on /metrics and the
dashboard, listed for the tenant's staff as escaped plain text, purged with its raw message,
and `optout inbound reapply --unparsed` applies it, once, when the parser understands it."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mailer import api_tokens, tenants
from mailer.db import create_pool
from mailer.inbound.server import purge_expired_raw
from mailer.inbound.unparsed import count_unparsed, list_unparsed
from mailer.rights import erasure
from tests.conftest import subprocess_env
from tests.support.api_world import sending_settings
from tests.support.cli import optout
from tests.support.inbound_world import inbound_server, make_world, probes, rows, send_smtplib
from tests.support.workspace import sign_in
from tests.unit.inbound.test_bounce_families import FIXTURES
from unsubscribe_web.app import create_app

HOSTILE = (
    b"From: gateway@mx.example.net\r\nSubject: About your mail <script>alert(1)</script>\r\n"
    b"\r\nWe looked at it. <img src=x onerror=alert(2)> Regards.\r\n"
)


@pytest.fixture
async def world(conn, settings):
    return await make_world(conn, settings)


async def test_an_unparseable_bounce_is_kept_counted_listed_and_purged(
    world, conn, settings, db_dsn, aiohttp_client
):
    subscriber = await world.person("kim@example.org", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    async with inbound_server(settings, db_dsn) as inbound:
        replies = await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], HOSTILE)
    assert replies.data[0] == 250
    [event] = await rows(probes().events(conn))
    assert (event["kind"], event["outcome"], event["delivery_id"]) == (
        "bounce", "unparsed", delivery,
    )  # fmt: skip
    assert event["raw"] == HOSTILE

    client = await aiohttp_client(create_app(sending_settings(settings)))
    metrics = await (await client.get("/metrics")).text()
    assert "\noptout_unparsed_bounces 1\n" in metrics

    staff = await sign_in(
        client,
        (await api_tokens.create_token(conn, role="marketing", tenant_id=world.tenant_id)).secret,
    )
    html = await (await client.get("/dashboard", headers=staff)).text()
    section = re.search(r'<section id="unparsed-bounces">(.*?)</section>', html, re.S)
    assert section is not None
    assert "1 bounce to this tenant" in section.group(1)
    assert f"delivery {delivery}" in section.group(1)
    # Shown as text: every angle bracket escaped, nothing the browser would run.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section.group(1)
    assert "&lt;img src=x onerror=alert(2)&gt;" in section.group(1)
    assert "<script>alert(1)" not in html and "<img src=x" not in html

    # Another tenant's staff sees none of it.
    other = await tenants.create_tenant(
        conn, "beta", name="Beta", sender_address="news@beta.example", postal_address="2 Side St"
    )
    beta = await sign_in(
        client,
        (await api_tokens.create_token(conn, role="marketing", tenant_id=other["id"])).secret,
    )
    beta_html = await (await client.get("/dashboard", headers=beta)).text()
    assert "About your mail" not in beta_html and "0 bounces to this tenant" in beta_html
    assert (await client.get("/dashboard?tenant=acme", headers=beta)).status == 404

    # Purged with its raw message at OPTOUT_INBOUND_RAW_RETENTION_DAYS.
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        later = dt.datetime.now(dt.UTC) + dt.timedelta(days=settings.inbound.raw_retention_days + 1)
        assert await purge_expired_raw(pool, now=later) == 1
    finally:
        await pool.close()
    assert "\noptout_unparsed_bounces 0\n" in await (await client.get("/metrics")).text()
    html = await (await client.get("/dashboard", headers=staff)).text()
    assert "About your mail" not in html


async def test_reapply_unparsed_applies_what_the_parser_now_reads_once(
    world, conn, settings, db_dsn
):
    """A bounce kept unparsed by an older parser (OpenSMTPD's notice, which flufl.bounce
    alone did not read) is applied by `reapply --unparsed`, and only once."""
    subscriber = await world.person("mwhite@example.net", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    garbage_delivery = await world.delivery(await world.campaign(), subscriber)
    raw = (FIXTURES / "synthetic" / "opensmtpd_550_unknown_user.eml").read_bytes()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    kept = await probes().insert_unparsed_bounce(
        conn, tenant_id=world.tenant_id, delivery_id=delivery, subscriber_id=subscriber,
        rcpt=world.bounce_address(delivery), raw=raw, expires=expires,
    )  # fmt: skip
    await probes().insert_unparsed_bounce(
        conn, tenant_id=world.tenant_id, delivery_id=garbage_delivery, subscriber_id=subscriber,
        rcpt=world.bounce_address(garbage_delivery), raw=HOSTILE, expires=expires,
    )  # fmt: skip

    env = subprocess_env(db_dsn)
    first = optout("inbound", "reapply", "--unparsed", env=env)
    assert (first.returncode, first.stdout.strip()) == (
        0, "optout inbound reapply: 1 now parsed, 1 still unparsed",
    ), first.stderr  # fmt: skip
    events = {e["id"]: e for e in await rows(probes().events(conn))}
    applied = events[kept]
    assert (applied["outcome"], applied["delivery_id"]) == ("permanent", delivery)
    assert applied["parsed"]["reapplied"] is True
    assert (applied["parsed"]["applied"]["status"], applied["parsed"]["applied"]["derived"]) == (
        "5.1.1", True,
    )  # fmt: skip
    [bounce] = await rows(probes().bounce_events(conn))
    assert (bounce["delivery_id"], bounce["status"]) == (delivery, "5.1.1")

    again = optout("inbound", "reapply", "--unparsed", env=env)
    assert again.stdout.strip() == "optout inbound reapply: 0 now parsed, 1 still unparsed"
    assert len(await rows(probes().bounce_events(conn))) == 1


async def test_erasing_the_person_removes_their_unparsed_bounce(world, conn, settings, db_dsn):
    """DESIGN invariant 4: the kept message is linked to the delivery its VERP names, so
    erasing the person removes it (raw, envelope and parse), and it is no longer counted."""
    subscriber = await world.person("lee@example.org", topics=[world.topic_id])
    delivery = await world.delivery(await world.campaign(), subscriber)
    raw = HOSTILE + b"Your mail to lee@example.org could not be read.\r\n"
    async with inbound_server(settings, db_dsn) as inbound:
        await send_smtplib(inbound.port, "", [world.bounce_address(delivery)], raw)
    assert await count_unparsed(conn, world.tenant_id) == 1
    await erasure.erase_subscriber(
        conn, tenant_id=world.tenant_id, subscriber_id=subscriber, by="staff"
    )
    [event] = await rows(probes().events(conn))
    assert (event["raw"], event["envelope_rcpt"], event["parsed"]) == (None, None, {})
    assert await count_unparsed(conn, world.tenant_id) == 0
    assert await list_unparsed(conn, world.tenant_id) == []
