"""`optout serve` through a database outage (issue 21, item 2): Postgres is cut for 5 s (a TCP
pg_proxy in front of the test's database: no server is stopped) in the middle of a campaign sent
at 100 messages/s. Worker, web face and inbound server recover without a restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp
import pytest

from mailer.db import rows
from mailer.sending import campaigns
from mailer.tokens import CodeClaims, CodeKind, LinkClaims, Purpose
from tests.conftest import probes, subprocess_env
from tests.support.inbound_world import send_smtplib
from tests.support.mailer_env import DOMAIN, mail_settings, newsletter_campaign, sink_env
from tests.support.processes import serve
from tests.support.smtp_sink import start_sink

RECIPIENTS = 2000
RATE = 100  # messages per second, the relay budget
BATCH = 200  # the default claim
CUT_SECONDS = 5.0
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


async def states_of(conn, campaign_id):
    return {
        r["state"]: r["n"]
        for r in await rows(probes().delivery_states(conn, campaign_id=campaign_id))
    }


@pytest.mark.timeout(120)
async def test_a_5_second_database_cut_mid_campaign_loses_nothing(
    conn, settings, pg_proxy, tmp_path
):
    """DESIGN G2, G3: every recipient gets the campaign, duplicates bounded by the messages
    in flight at the cut (printed); one-clicks during the cut are answered 202, spooled and
    applied once; inbound mail during the cut gets 451 and is applied when retried; the batch
    in hand at the cut is finished or handed back by its live worker (none stays `sending`)."""
    started_at = time.monotonic()
    sink, sink_server = await start_sink()
    try:
        tenant, topic, campaign, people = await newsletter_campaign(
            conn, settings, tmp_path, RECIPIENTS
        )
        mail = mail_settings(settings, sink.port)
        await campaigns.start(conn, mail, tenant["id"], campaign["id"])
        env = sink_env(
            subprocess_env(pg_proxy.dsn),
            sink.port,
            OPTOUT_POLL_SECONDS="0.2",
            OPTOUT_DATA_DIR=str(tmp_path / "data"),
        )
        env["OPTOUT_RELAY_PER_SECOND"] = str(RATE)
        env["OPTOUT_BATCH_SIZE"] = str(BATCH)
        served = await serve(env)
        by_address = {email: sid for sid, email in people.items()}
        keyring = settings.keyring()
        try:
            await served.wait_for_line("worker sending through", 30)
            await sink.wait_for(RATE * 4, timeout=30)
            in_flight = (await states_of(conn, campaign["id"])).get("sending", 0)
            await pg_proxy.cut()
            cut_at = time.monotonic()
            delivered_at_cut = len(sink.messages)
            mailed = [by_address[m.rcpt_tos[0]] for m in sink.messages[:4]]

            async with aiohttp.ClientSession() as http:
                for subscriber in mailed[:3]:
                    token = keyring.sign(
                        LinkClaims.issue(Purpose.ONE_CLICK, tenant["id"], subscriber, topic["id"])
                    )
                    async with http.post(f"{served.web_url}/u/{token}", data=ONE_CLICK) as r:
                        assert r.status == 202, await r.text()
            code = keyring.make_code(
                CodeClaims(CodeKind.UNSUBSCRIBE, (tenant["id"], mailed[3], topic["id"]))
            )
            mailto = f"unsubscribe+{code}@{DOMAIN}"
            reader = people[mailed[3]]
            body = b"Message-ID: <cut-1@example.org>\r\nSubject: stop\r\n\r\nstop\r\n"
            _, inbound_port = served.inbound
            replies = await send_smtplib(inbound_port, reader, [mailto], body)
            assert replies.data[0] == 451, replies
            await asyncio.sleep(max(0.0, CUT_SECONDS - (time.monotonic() - cut_at)))
            await pg_proxy.restore()

            # The sender's retry: queued mail is tried again until it is taken.
            for _ in range(40):
                replies = await send_smtplib(inbound_port, reader, [mailto], body)
                if replies.data[0] != 451:
                    break
                await asyncio.sleep(0.5)
            assert replies.data[0] == 250, replies

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = await probes().campaign_status(conn, id=campaign["id"])
                if status == "done":
                    break
                await asyncio.sleep(0.2)
            assert status == "done", await states_of(conn, campaign["id"])
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{served.web_url}/healthz") as health,
            ):
                assert health.status == 200
                assert await health.json() == {"database": "ok", "spool_depth": 0}
        finally:
            code_, _ = await served.stop()
        assert code_ == 0, served.stderr[-30:]
    finally:
        sink_server.close()
        await sink_server.wait_closed()

    received = Counter(m.rcpt_tos[0] for m in sink.messages)
    assert set(received) == set(people.values()), "nobody was skipped"
    duplicates = sum(n - 1 for n in received.values())
    # A claim that commits at the very moment of the cut adds one batch to what was leased.
    bound = in_flight + BATCH
    print(
        f"\ndatabase cut: {CUT_SECONDS:.0f} s after {delivered_at_cut} of {RECIPIENTS} messages; "
        f"{in_flight} deliveries leased at the cut; duplicates {duplicates} (bound {bound}); "
        f"test took {time.monotonic() - started_at:.1f} s"
    )
    assert duplicates <= bound
    assert await states_of(conn, campaign["id"]) == {"sent": RECIPIENTS}
    assert any("worker_recovered" in line for line in served.stderr + served.stdout)

    events = await rows(probes().all_events(conn))
    unsubscribes = [
        (e["subscriber_id"], e["source"]) for e in events if e["action"] == "unsubscribe"
    ]
    assert sorted(unsubscribes) == sorted(
        [(s, "one_click") for s in mailed[:3]] + [(mailed[3], "mailto")]
    )
    for subscriber in mailed:
        state = await probes().subscription_state(
            conn, subscriber_id=subscriber, topic_id=topic["id"]
        )
        assert state == "unsubscribed"
