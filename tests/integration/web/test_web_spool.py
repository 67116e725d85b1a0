"""Opt-outs survive a database outage (DESIGN G2): spooled, answered 202, replayed once."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import time

import aiohttp
import pytest

from mailer.db import create_pool, rows
from tests.conftest import make_settings, probes, subprocess_env
from tests.support.processes import free_port, web_process
from tests.support.web import seed
from unsubscribe_web.app import create_app
from unsubscribe_web.keys import SPOOL
from unsubscribe_web.spool import RETRY_SECONDS, Spool, SpooledOptOut

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=3)


async def unsubscribe_events(conn):
    return [
        (e["subscriber_id"], e["topic_id"], e["source"])
        for e in await rows(probes().all_events(conn))
        if e["action"] == "unsubscribe"
    ]


async def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_outage_spools_then_replays_each_once(
    aiohttp_client, conn, world, pg_proxy, tmp_path
):
    app = create_app(make_settings(pg_proxy.dsn, tmp_path))
    client = await aiohttp_client(app)
    a, b, c = world.subscribers
    assert (await client.post(f"/u/{world.one_click(a, 'offers')}", data=ONE_CLICK)).status == 200

    await pg_proxy.cut()
    taken = [(a, "news"), (b, "news"), (c, "offers"), (a, "news")]  # a repeat, too
    for subscriber, topic in taken:
        response = await client.post(f"/u/{world.one_click(subscriber, topic)}", data=ONE_CLICK)
        assert response.status == 202
        assert "Your unsubscribe is recorded" in await response.text()
    button = await client.post(f"/u/{world.one_click(c, 'news')}", data={"via": "page"})
    assert button.status == 202
    # Pages that need the database say so, with a retry hint; none claims a success.
    page = await client.get(f"/p/{world.preferences(a)}")
    assert page.status == 503 and page.headers["Retry-After"]
    assert (await client.post(f"/undo/{'A' * 30}")).status == 400
    landing = await client.get(f"/u/{world.one_click(b, 'offers')}")
    assert landing.status == 200 and 'type="submit"' in await landing.text()
    health = await client.get("/healthz")
    assert health.status == 503
    assert await health.json() == {"database": "unavailable", "spool_depth": 5}
    assert "optout_spool_depth 5" in await (await client.get("/metrics")).text()
    assert len(await unsubscribe_events(conn)) == 1  # nothing applied yet

    await pg_proxy.restore()

    async def replayed():
        return len(await unsubscribe_events(conn)) == 5

    assert await wait_until(replayed)
    news, offers = world.topics["news"], world.topics["offers"]
    assert sorted(await unsubscribe_events(conn)) == sorted(
        [
            (a, offers, "one_click"),
            (a, news, "one_click"),
            (b, news, "one_click"),
            (c, offers, "one_click"),
            (c, news, "landing_page"),
        ]
    )
    assert await wait_until(lambda: _depth_zero(client))
    assert app[SPOOL].path.read_bytes() == b""


async def _depth_zero(client):
    return (await (await client.get("/healthz")).json())["spool_depth"] == 0


async def test_killed_after_202_replays_on_next_start(conn, world, pg_proxy, tmp_path):
    """A process killed right after a 202 replays its spool when it starts again."""
    env = subprocess_env(pg_proxy.dsn) | {"OPTOUT_DATA_DIR": str(tmp_path)}
    port = free_port()
    a = world.subscribers[0]
    url = f"http://127.0.0.1:{port}/u/{world.one_click(a)}"
    async with web_process(env, port) as process, aiohttp.ClientSession() as http:
        await pg_proxy.cut()
        async with http.post(url, data=ONE_CLICK) as response:
            assert response.status == 202
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
    assert await unsubscribe_events(conn) == []
    await pg_proxy.restore()
    async with web_process(env, port):

        async def replayed():
            return len(await unsubscribe_events(conn)) == 1

        assert await wait_until(replayed)
    assert await unsubscribe_events(conn) == [(a, world.topics["news"], "one_click")]


async def test_replay_resumes_after_its_offset_and_ignores_a_torn_line(
    conn, world, db_dsn, tmp_path
):
    """A crash mid-replay resumes after the last applied entry; a line cut short by a crash
    before its fsync (never answered 202) is not applied."""
    a, b, c = world.subscribers
    news = world.topics["news"]
    spool = Spool(tmp_path)
    spool.open()
    for subscriber in (a, b, c):
        await spool.append(SpooledOptOut(world.tenant, subscriber, news, "one_click", 0.0))
    lines = spool.path.read_bytes().splitlines(keepends=True)
    spool.offset_path.write_text(str(len(lines[0])))  # a crashed replay had applied the first
    with spool.path.open("ab") as out:
        out.write(b'{"tenant_id": 1, "subscri')  # torn
    restarted = Spool(tmp_path)
    restarted.open()
    assert restarted.depth == 2
    # A new opt-out after the restart lands on a line of its own.
    await restarted.append(SpooledOptOut(world.tenant, a, world.topics["offers"], "one_click", 1.0))
    pool = await create_pool(db_dsn, max_size=2)
    try:
        assert await restarted.replay(pool) == 3
    finally:
        await pool.close()
    assert sorted(await unsubscribe_events(conn)) == sorted(
        [(b, news, "one_click"), (c, news, "one_click"), (a, world.topics["offers"], "one_click")]
    )
    assert restarted.depth == 0 and restarted.path.read_bytes() == b""
    assert not restarted.offset_path.exists()


async def test_a_crash_while_clearing_loses_nothing_new(conn, world, db_dsn, tmp_path):
    """Spool emptied but its offset left behind (a crash inside the clear): a new entry after
    the restart is still replayed."""
    spool = Spool(tmp_path)
    spool.open()
    spool.path.write_bytes(b"")
    spool.offset_path.write_text("500")
    restarted = Spool(tmp_path)
    restarted.open()
    a = world.subscribers[0]
    await restarted.append(SpooledOptOut(world.tenant, a, world.topics["news"], "one_click", 1.0))
    pool = await create_pool(db_dsn, max_size=2)
    try:
        assert await restarted.replay(pool) == 1
    finally:
        await pool.close()
    assert await unsubscribe_events(conn) == [(a, world.topics["news"], "one_click")]


def full_disk(fd: int, data: bytes) -> int:
    """The spool's write on a full disk: part of the line goes down, then ENOSPC."""
    os.write(fd, data[: len(data) // 2])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_full_disk_while_postgres_is_away_answers_503_never_202(
    aiohttp_client, conn, world, pg_proxy, tmp_path
):
    """Postgres away and the spool's disk full: the one-click is answered 503 with
    Retry-After, not 202; the half-written line is cut back, so the spool holds only what
    was acknowledged, and an opt-out taken once the disk has room is replayed alone."""
    app = create_app(make_settings(pg_proxy.dsn, tmp_path))
    client = await aiohttp_client(app)
    a, b = world.subscribers[:2]
    spool = app[SPOOL]
    await pg_proxy.cut()
    spool.write = full_disk
    for _ in range(2):  # a sender retrying into the same full disk gets the same answer
        refused = await client.post(f"/u/{world.one_click(a)}", data=ONE_CLICK)
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert "could not be recorded" in await refused.text()
    assert spool.depth == 0 and spool.path.read_bytes() == b""
    health = await client.get("/healthz")
    assert await health.json() == {"database": "unavailable", "spool_depth": 0}

    spool.write = os.write  # room on the disk again
    taken = await client.post(f"/u/{world.one_click(b)}", data=ONE_CLICK)
    assert taken.status == 202
    lines = spool.path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert json.loads(lines[0])["subscriber_id"] == b

    await pg_proxy.restore()

    async def replayed():
        return len(await unsubscribe_events(conn)) == 1

    assert await wait_until(replayed)
    await asyncio.sleep(RETRY_SECONDS + 0.5)  # one more replay round: nothing else appears
    assert await unsubscribe_events(conn) == [(b, world.topics["news"], "one_click")]
