"""`optout serve`: web, inbound and worker in one process; SIGTERM drains in-flight work."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.cli.services import (
    CANCEL_GRACE_SECONDS,
    ServeAddresses,
    ServeFailed,
    ServeOptions,
    serve_all,
)
from mailer.consent import writer as consent
from mailer.db import rows
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes, subprocess_env
from tests.support.fault_sink import FaultSink, start_fault_sink
from tests.support.mailer_env import (
    mail_settings,
    newsletter_campaign,
    sink_env,
    wait_until,
)
from tests.support.processes import serve
from tests.support.smtp_sink import SmtpSink
from tests.support.web import seed

RECIPIENTS = 300


@dataclass
class SlowSink(SmtpSink):
    """The capture sink, answering each DATA after ``delay`` seconds (a slow relay)."""

    delay: float = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


async def start_slow_sink(delay: float) -> tuple[SlowSink, asyncio.Server]:
    sink = SlowSink(delay=delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink.test"), "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    return sink, server


async def ehlo(host: str, port: int) -> tuple[bytes, list[bytes]]:
    """Greeting and EHLO reply of an SMTP server."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 5)
        writer.write(b"EHLO client.test\r\n")
        reply = []
        while True:
            line = await asyncio.wait_for(reader.readline(), 5)
            reply.append(line)
            if line[3:4] != b"-":
                break
        writer.write(b"QUIT\r\n")
        await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    return greeting, reply


async def _rows(gen):
    return [r async for r in gen]


async def test_sigterm_mid_send_drains_and_a_restart_mails_everyone_exactly_once(
    conn, db_dsn, settings, tmp_path
):
    """DESIGN G3: SIGTERM while a campaign is half sent: serve answers /healthz and EHLO while
    it runs, exits 0 promptly, every message that reached the relay is recorded as sent and no
    delivery stays leased; a second serve finishes the campaign, nobody mailed twice."""
    sink, sink_server = await start_slow_sink(delay=0.05)  # two connections: ~40 messages/s
    try:
        tenant, _, campaign, people = await newsletter_campaign(
            conn, settings, tmp_path, RECIPIENTS
        )
        await campaigns.start(
            conn, mail_settings(settings, sink.port), tenant["id"], campaign["id"]
        )
        env = sink_env(
            subprocess_env(db_dsn),
            sink.port,
            OPTOUT_POLL_SECONDS="0.2",
            OPTOUT_BATCH_SIZE="20",
            OPTOUT_DATA_DIR=str(tmp_path / "data"),
        )

        first = await serve(env, "--concurrency", "2")
        try:
            await first.wait_for_line("worker sending through", 30)
            async with (
                aiohttp.ClientSession() as http,
                http.get(first.web_url + "/healthz", timeout=aiohttp.ClientTimeout(5)) as resp,
            ):
                assert resp.status == 200
                assert (await resp.json())["database"] == "ok"
            greeting, reply = await ehlo(*first.inbound)
            assert greeting.startswith(b"220 ") and reply[-1].startswith(b"250 ")
            await sink.wait_for(60, timeout=20)
        finally:
            at_signal = len(sink.messages)
            code, drain_seconds = await first.stop()
        assert code == 0, first.stderr[-30:]
        assert first.stdout[-1] == "optout serve: stopped cleanly"
        assert any("SIGTERM: finishing in-flight work" in line for line in first.stdout)
        assert drain_seconds < 10
        states = {
            r["state"]: r["n"]
            for r in await _rows(probes().delivery_states(conn, campaign_id=campaign["id"]))
        }
        deliveries = await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
        assert states.get("sending", 0) == 0
        assert [d["id"] for d in deliveries if d["lease_owner"] is not None] == []
        assert 0 < states["sent"] < RECIPIENTS, "SIGTERM came while the campaign was sending"
        # The batch in hand was finished and recorded: what the relay got is what the DB says.
        assert len(sink.messages) == states["sent"] >= at_signal
        print(
            f"\nserve drain: {at_signal} delivered at SIGTERM, {states['sent']} recorded sent "
            f"after a {drain_seconds:.1f} s drain, {RECIPIENTS - states['sent']} left queued"
        )

        second = await serve(env, "--concurrency", "2")
        try:
            await second.wait_for_line("worker sending through", 30)
            status = await wait_until(conn, campaign["id"], 30, "done")
        finally:
            code, _ = await second.stop(signal.SIGINT)  # Ctrl-C drains the same way
        assert code == 0, second.stderr[-30:]
        assert second.stdout[-1] == "optout serve: stopped cleanly"
        assert status == "done"
    finally:
        sink_server.close()
        await sink_server.wait_closed()
    received = Counter(m.rcpt_tos[0] for m in sink.messages)
    assert set(received) == set(people.values()), "nobody was skipped"
    assert max(received.values()) == 1, "nobody was mailed twice"
    states = {
        r["state"]: r["n"]
        for r in await _rows(probes().delivery_states(conn, campaign_id=campaign["id"]))
    }
    assert states == {"sent": RECIPIENTS}


async def test_serve_without_smtp_url_exits_2_naming_it(db_dsn, tmp_path):
    env = subprocess_env(db_dsn)
    env.pop("SMTP_URL", None)
    env["OPTOUT_DATA_DIR"] = str(tmp_path / "data")
    served = await serve(env)
    code = await asyncio.wait_for(served.process.wait(), 30)  # by itself, no signal sent
    await asyncio.wait_for(asyncio.gather(*served.readers), 5)
    assert code == 2
    assert len(served.stderr) == 1 and "SMTP_URL" in served.stderr[0], served.stderr
    assert served.stdout == []


async def test_a_taken_port_stops_what_started_and_exits_2(db_dsn, tmp_path):
    """Inbound starts before the web face; the web port is taken, so inbound is closed again
    and the process exits with one line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = subprocess_env(db_dsn)
        env["OPTOUT_DATA_DIR"] = str(tmp_path / "data")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mailer.cli", "serve", "--no-worker", "--port", str(port),
            "--inbound-port", "0", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2, err
    assert (
        err.decode()
        .strip()
        .splitlines()[-1]
        .startswith(f"optout: the web face cannot listen on 127.0.0.1:{port}")
    )
    assert b"listening" not in out


async def test_a_failing_worker_stops_web_and_inbound(db_dsn, settings, smtp_sink, monkeypatch):
    """A service that dies takes the others down: no half-running server is left."""
    running = asyncio.Event()

    async def failing_run(self: Worker, *, until_idle: bool = False) -> None:
        await running.wait()
        raise RuntimeError("relay exploded")

    monkeypatch.setattr(Worker, "run", failing_run)
    seen: list[ServeAddresses] = []

    def ready(addresses: ServeAddresses) -> None:
        seen.append(addresses)
        running.set()

    options = ServeOptions(web_port=0, inbound_port=0)
    with pytest.raises(ServeFailed, match="relay exploded"):
        await asyncio.wait_for(
            serve_all(
                mail_settings(settings, smtp_sink.port), db_dsn, options, asyncio.Event(), ready
            ),
            30,
        )
    web = urlsplit(seen[0].web_url)
    assert seen[0].inbound is not None
    for host, port in ((web.hostname, web.port), seen[0].inbound):
        with pytest.raises(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()


async def test_an_opt_out_in_flight_at_stop_is_answered_and_recorded(conn, db_dsn, settings):
    """STANDARDS 8: an RFC 8058 one-click POST still being handled (its row is locked, as under
    a slow database) when the stop comes: new connections are refused at once, but that
    request gets its 200 and its opt-out is committed before serve returns."""
    world = await seed(conn, subscribers=1)
    (person,) = world.subscribers
    topic = world.topics["news"]
    stop = asyncio.Event()
    seen: list[ServeAddresses] = []
    options = ServeOptions(web_port=0, inbound_port=None, worker=False)
    serving = asyncio.create_task(serve_all(settings, db_dsn, options, stop, seen.append))
    blocker = conn.transaction()
    try:
        await _until(lambda: bool(seen) or serving.done(), 20)
        web = urlsplit(seen[0].web_url)
        assert web.hostname is not None and web.port is not None
        # Hold the subscription row: the request's UPDATE waits for it (rolled back below).
        await blocker.start()
        await consent.unsubscribe(
            conn, tenant_id=world.tenant, subscriber_id=person, topic_id=topic, source="staff"
        )
        reader, writer = await asyncio.open_connection(web.hostname, web.port)
        body = b"List-Unsubscribe=One-Click"
        writer.write(
            f"POST /u/{world.one_click(person)} HTTP/1.1\r\nHost: optout.test\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.sleep(0.5)  # the handler now waits for the row lock
        stop.set()
        await _until(lambda: _refused(web.hostname, web.port), 5)
        await blocker.rollback()
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert response.startswith(b"HTTP/1.1 200 "), response[:200]
        await asyncio.wait_for(serving, 30)
    finally:
        stop.set()
        if not serving.done():
            serving.cancel()
    assert await probes().subscription_state(conn, subscriber_id=person, topic_id=topic) == (
        "unsubscribed"
    )
    sources = [e["source"] for e in await rows(probes().events_of(conn, subscriber_id=person))]
    assert "one_click" in sources and "staff" not in sources


def _refused(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) != 0


async def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_stalled_relay_cannot_hold_the_stop_past_its_bound(
    conn, db_dsn, settings, tmp_path
):
    """The worker's drain is bounded by one lease: a relay that never answers DATA does not
    keep serve from stopping; the claims are handed back (nothing stays leased) and serve
    says it did not stop cleanly."""
    sink = FaultSink(stall_seconds=30.0)
    sink_server = await start_fault_sink(sink)
    stop = asyncio.Event()
    try:
        tenant, _, campaign, people = await newsletter_campaign(conn, settings, tmp_path, 4)
        sink.faults = {address: ("stall", 1) for address in people.values()}
        s = mail_settings(settings, sink.port, lease_seconds=3.0, smtp_timeout=60.0)
        await campaigns.start(conn, s, tenant["id"], campaign["id"])
        options = ServeOptions(web_port=0, inbound_port=None, concurrency=2)
        serving = asyncio.create_task(serve_all(s, db_dsn, options, stop))
        await _until(lambda: sum(sink.attempts.values()) >= 2 or serving.done(), 20)
        stop.set()
        started = time.monotonic()
        with pytest.raises(ServeFailed, match="handed back to the queue"):
            await asyncio.wait_for(serving, 30)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sink_server.close()
        await sink_server.wait_closed()
    assert 5.0 <= elapsed < 5.0 + 2 * CANCEL_GRACE_SECONDS + 2
    deliveries = await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
    assert [d["lease_owner"] for d in deliveries] == [None] * 4
    assert {d["state"] for d in deliveries} == {"queued"}
