"""At least once through failures (issue 22, item 5): the receiver goes away for a while and
the sending process (`optout events run`) is killed mid-delivery; once both are back every
event is delivered, none is lost, and a duplicate is only ever the same event again."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from mailer import event_endpoints
from mailer.db import rows
from tests.conftest import probes, subprocess_env
from tests.integration.events.conftest import subscribe
from tests.support.webhook_receiver import Receiver

PEOPLE = 24


async def spawn_sender(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailer.cli",
        "events",
        "run",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_nothing_is_lost_when_the_receiver_stops_and_the_sender_is_killed(
    conn, db_dsn, event_settings, world
):
    receiver = await Receiver(delay=0.2).start()
    port = receiver.port
    await event_endpoints.create(conn, event_settings, tenant_id=world["tenant"], url=receiver.url)
    for n in range(PEOPLE):
        await subscribe(conn, world, f"p{n}@example.org")
    expected = {
        f"evt_{r['id']}"
        for r in await rows(probes().outbox_events(conn, tenant_id=world["tenant"]))
    }
    assert len(expected) == PEOPLE
    env = subprocess_env(db_dsn) | {
        "OPTOUT_EVENTS_ALLOW_HTTP_LOOPBACK": "1",
        "OPTOUT_EVENTS_LEASE": "2s",
        "OPTOUT_EVENTS_BACKOFF": "0.2s",
        "OPTOUT_EVENTS_POLL": "0.1s",
        "OPTOUT_EVENTS_BATCH": "8",
        "OPTOUT_EVENTS_CONCURRENCY": "2",
    }
    first = await spawn_sender(env)
    second = None
    try:
        await wait_until(lambda: len(receiver.received) >= 4, 60)
        first.kill()  # mid-batch: requests in flight, results unrecorded
        await first.wait()
        got_before_stop = list(receiver.received)
        await receiver.stop()  # the CRM is down for a while
        second = await spawn_sender(env)
        await asyncio.sleep(2.5)  # the dead process's leases run out; attempts fail
        receiver = Receiver(port=port)
        receiver.received = got_before_stop
        await receiver.start()
        await wait_until(
            lambda: {r.headers["webhook-id"] for r in receiver.received} >= expected, 90
        )
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await receiver.stop()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert set(ids) == expected
    # The killed process's batch was in flight: those events came again, as themselves.
    assert len(ids) > len(set(ids))
    bodies: dict[str, bytes] = {}
    for got in receiver.received:
        # A repeat is the same event: same id, same body.
        assert bodies.setdefault(got.headers["webhook-id"], got.body) == got.body
