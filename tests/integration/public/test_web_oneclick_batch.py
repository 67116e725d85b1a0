"""Concurrent one-click POSTs written in micro-batches (mailer.consent.link_batch): many at
once through the real app on real Postgres, with the real journal file; each answer right,
one ledger row, one evidence row and one journal line per changed subscription, every 200
committed and fsynced before it went out (DESIGN G2), fewer statements than requests."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from mailer import journal
from mailer.consent import writer as consent
from mailer.consent.link_batch import OneClickBatcher
from mailer.consent.writer import Evidence, LinkOptOut
from mailer.db import create_pool, rows
from mailer.errors import UnknownTopic
from mailer.tokens import LinkClaims, Purpose
from tests.conftest import make_settings, probes
from tests.support.web import World, seed
from unsubscribe_web.app import create_app
from unsubscribe_web.keys import ONE_CLICK_BATCHER, SPOOL
from unsubscribe_web.pages import pool_connection

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
PEOPLE = 100  # each on two topics: 200 one-clicks


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=PEOPLE)


def agent(subscriber: int, topic: int) -> str:
    """A User-Agent naming its request, so each evidence row shows whose request it holds."""
    return f"agent-{subscriber}-{topic}"


async def ledger(conn, world: World) -> list[dict[str, Any]]:
    return [dict(r) for r in await rows(probes().unsubscribe_ledger(conn, tenant_id=world.tenant))]


async def post(client, token: str, user_agent: str, **extra) -> int:
    response = await client.post(
        f"/u/{token}", data=ONE_CLICK, headers={"User-Agent": user_agent}, **extra
    )
    await response.read()
    status: int = response.status
    return status


async def test_many_concurrent_one_clicks_are_batched_and_each_recorded_once(
    aiohttp_client, conn, settings, world, tmp_path
):
    """STANDARDS 8, 35: 200 concurrent one-clicks are all unsubscribed, each with one ledger
    row pointing at its own request's evidence and one journal line, in fewer statements
    (journal transactions) than requests; every line is on disk when the answers are in."""
    folder = tmp_path / "journal"
    asks = [(s, topic) for s in world.subscribers for topic in ("news", "offers")]
    with journal.journal_in(folder) as target:
        app = create_app(settings)
        client = await aiohttp_client(app)
        statuses = await asyncio.gather(
            *(
                post(client, world.one_click(s, topic), agent(s, world.topics[topic]))
                for s, topic in asks
            )
        )
        # Read at once: every 200 is already fsynced (no flush is awaited after the answers).
        check = journal.read_file(target.path)
        batches = app[ONE_CLICK_BATCHER].batches
    assert statuses == [200] * len(asks)
    assert check.problems == []
    wanted = sorted((s, world.topics[topic]) for s, topic in asks)
    assert sorted((e.subscriber_id, e.topic_id) for e in check.entries) == wanted
    assert {e.event for e in check.entries} == {"withdraw_topic"}
    assert all(e.keys for e in check.entries)  # each line names the person's address keys
    transactions = {e.txn for e in check.entries}
    # Batching happened: fewer statements, and fewer journal transactions, than requests.
    assert await probes().journal_transaction_count(conn) == len(transactions) < len(asks)
    assert batches < len(asks)
    found = await ledger(conn, world)
    assert sorted((r["subscriber_id"], r["topic_id"]) for r in found) == wanted
    assert all(r["user_agent"] == agent(r["subscriber_id"], r["topic_id"]) for r in found)
    assert all(r["source"] == "one_click" for r in found)
    assert all(r["detail"] == {"channel": "one_click"} for r in found)
    assert await probes().evidence_count(conn) == len(asks)
    for s in world.subscribers:
        for topic in ("news", "offers"):
            state = await probes().subscription_state(
                conn, subscriber_id=s, topic_id=world.topics[topic]
            )
            assert state == "unsubscribed"
    # The outbox has one event per change (the triggers fire once per batch statement).
    events = [r async for r in probes().outbox_events(conn, tenant_id=world.tenant)]
    unsubscribed = [e for e in events if e["type"] == "subscriber.unsubscribed"]
    assert sorted(e["subscriber_id"] for e in unsubscribed) == sorted(s for s, _ in asks)


async def test_the_same_token_posted_concurrently_changes_once(
    aiohttp_client, conn, settings, world, tmp_path
):
    """STANDARDS 13: the same one-click posted ten times at once: all 200, one change, one
    ledger row, one evidence row, one journal line."""
    folder = tmp_path / "journal"
    ada = world.subscribers[0]
    token = world.one_click(ada)
    with journal.journal_in(folder) as target:
        client = await aiohttp_client(create_app(settings))
        # A lone request first runs at once; the ten after it queue together behind it.
        others = [world.one_click(s) for s in world.subscribers[1:6]]
        statuses = await asyncio.gather(
            *(post(client, t, "other") for t in others),
            *(post(client, token, f"repeat-{n}") for n in range(10)),
        )
        check = journal.read_file(target.path)
    assert statuses == [200] * 15
    mine = [r for r in await ledger(conn, world) if r["subscriber_id"] == ada]
    assert len(mine) == 1 and mine[0]["user_agent"].startswith("repeat-")
    assert [(e.subscriber_id, e.topic_id) for e in check.entries].count(
        (ada, world.topics["news"])
    ) == 1
    assert len(check.entries) == 6
    assert await probes().evidence_count(conn) == 6


async def test_duplicates_in_one_batch_change_once_and_answer_already(conn, db_dsn, world):
    """One statement holding the same subscription three times: the first ask changes it,
    the other two are answered "already unsubscribed"; one ledger and one evidence row."""
    pool = await create_pool(db_dsn, min_size=0)
    try:
        ada, bob = world.subscribers[:2]
        news = world.topics["news"]
        asks = [
            LinkOptOut(world.tenant, ada, news, "one_click", Evidence(user_agent="first")),
            LinkOptOut(world.tenant, bob, news, "one_click", Evidence(user_agent="bob")),
            LinkOptOut(world.tenant, ada, news, "landing_page", Evidence(user_agent="second")),
            LinkOptOut(world.tenant, ada, news, "one_click", Evidence(user_agent="third")),
        ]
        answers = await consent.unsubscribe_from_links_pooled(lambda: pool_connection(pool), asks)
    finally:
        await pool.close()
    assert [a["changed"] if a else None for a in answers] == [True, True, False, False]
    assert {a["topic_name"] for a in answers if a} == {"Weekly news"}
    found = await ledger(conn, world)
    assert [(r["subscriber_id"], r["user_agent"], r["source"]) for r in found] == [
        (ada, "first", "one_click"),
        (bob, "bob", "one_click"),
    ]
    assert await probes().evidence_count(conn) == 2


async def test_a_foreign_topic_in_a_batch_is_404_and_the_others_are_200(
    aiohttp_client, conn, settings, world
):
    """A genuine token naming another tenant's topic, posted with many others at once: that
    one is 404 and changes nothing, as alone; the others are 200 and unsubscribed."""
    other = await seed(conn, subscribers=0, slug="other")
    ada = world.subscribers[0]
    foreign = world.keyring.sign(
        LinkClaims.issue(Purpose.ONE_CLICK, world.tenant, ada, other.topics["news"])
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    rest = world.subscribers[1:40]
    statuses = await asyncio.gather(
        *(post(client, world.one_click(s), "x") for s in rest[:20]),
        post(client, foreign, "foreign"),
        *(post(client, world.one_click(s), "x") for s in rest[20:]),
    )
    assert statuses[20] == 404
    assert statuses[:20] + statuses[21:] == [200] * len(rest)
    assert app[ONE_CLICK_BATCHER].batches < len(rest) + 1
    found = await ledger(conn, world)
    assert sorted(r["subscriber_id"] for r in found) == sorted(rest)
    assert "foreign" not in {r["user_agent"] for r in found}


async def test_a_failing_batch_commits_nothing_and_its_good_requests_are_rerun(
    conn, db_dsn, world, tmp_path
):
    """A statement that fails (one ask's evidence breaks a CHECK constraint) rolls back
    whole: no ledger row, no outbox event, no journal transaction or line. Run through the
    batcher, the same batch is re-run one request at a time: only the bad one fails."""
    folder = tmp_path / "journal"
    ada, bob, cy = world.subscribers[:3]
    news = world.topics["news"]
    good = [
        LinkOptOut(world.tenant, ada, news, "one_click", Evidence(ip="192.0.2.1")),
        LinkOptOut(world.tenant, bob, news, "one_click", Evidence(ip="192.0.2.2")),
    ]
    bad = LinkOptOut(world.tenant, cy, news, "one_click", Evidence(user_agent="x" * 1001))
    pool = await create_pool(db_dsn, min_size=0)
    try:
        with journal.journal_in(folder) as target:
            acquire = lambda: pool_connection(pool)  # noqa: E731
            before = await probes().web_state(conn)
            outbox = [r async for r in probes().outbox_events(conn, tenant_id=world.tenant)]
            with pytest.raises(asyncpg.CheckViolationError, match="user_agent"):
                await consent.unsubscribe_from_links_pooled(acquire, [*good, bad])
            assert await probes().web_state(conn) == before
            assert [r async for r in probes().outbox_events(conn, tenant_id=world.tenant)] == outbox
            assert await probes().journal_transaction_count(conn) == 0
            assert not target.path.exists()

            batcher = OneClickBatcher(acquire)
            # The idle batcher runs the first two asks at once, alone (two slots); the last
            # two queue behind them and go as one batch, which fails and is re-run.
            first = LinkOptOut(world.tenant, world.subscribers[3], news, "one_click", Evidence())
            results = await asyncio.gather(
                *(
                    batcher.unsubscribe(
                        tenant_id=a.tenant_id,
                        subscriber_id=a.subscriber_id,
                        topic_id=a.topic_id,
                        source=a.source,
                        evidence=a.evidence,
                    )
                    for a in [first, *good, bad]
                ),
                return_exceptions=True,
            )
            await batcher.close()
            check = journal.read_file(target.path)
    finally:
        await pool.close()
    assert [not isinstance(r, BaseException) and r["changed"] for r in results[:3]] == [
        True,
        True,
        True,
    ]
    assert isinstance(results[3], asyncpg.CheckViolationError)
    assert sorted(r["subscriber_id"] for r in await ledger(conn, world)) == sorted(
        [world.subscribers[3], ada, bob]
    )
    assert sorted(e.subscriber_id or 0 for e in check.entries) == sorted(
        [world.subscribers[3], ada, bob]
    )
    assert check.problems == []
    assert await probes().subscription_state(conn, subscriber_id=cy, topic_id=news) == "confirmed"


async def test_unknown_topic_through_the_batcher_is_unknown_topic(conn, db_dsn, world):
    pool = await create_pool(db_dsn, min_size=0)
    batcher = OneClickBatcher(lambda: pool_connection(pool))
    try:
        with pytest.raises(UnknownTopic):
            await batcher.unsubscribe(
                tenant_id=world.tenant,
                subscriber_id=world.subscribers[0],
                topic_id=999_999,
                source="one_click",
                evidence=Evidence(),
            )
    finally:
        await batcher.close()
        await pool.close()
    assert await ledger(conn, world) == []


async def test_postgres_cut_mid_way_loses_no_acknowledged_opt_out(
    aiohttp_client, conn, world, pg_proxy, tmp_path
):
    """DESIGN G2: Postgres cut while 200 one-clicks are in flight. Every answer is 200 or 202;
    every 200 was committed and journalled before it went out; every 202 is in the spool and
    is applied once Postgres is back. None is lost, none applied twice."""
    folder = tmp_path / "journal"
    asks = [(s, topic) for s in world.subscribers for topic in ("news", "offers")]
    answered: list[tuple[int, str, int]] = []
    cut = asyncio.Event()

    with journal.journal_in(folder) as target:
        app = create_app(make_settings(pg_proxy.dsn, tmp_path))
        client = await aiohttp_client(app)

        async def click(s: int, topic: str) -> None:
            status = await post(client, world.one_click(s, topic), "x")
            answered.append((s, topic, status))
            if len(answered) == 40:
                cut.set()

        async def cutter() -> None:
            await cut.wait()
            await pg_proxy.cut()

        cutting = asyncio.create_task(cutter())
        await asyncio.gather(*(click(s, topic) for s, topic in asks))
        if not cut.is_set():
            cut.set()
        await cutting
        # Right after the answers, before Postgres is back: each 200 is committed and on disk.
        lines = {(e.subscriber_id, e.topic_id) for e in journal.read_file(target.path).entries}
        committed = {(r["subscriber_id"], r["topic_id"]) for r in await ledger(conn, world)}
        oks = {(s, world.topics[t]) for s, t, status in answered if status == 200}
        spooled = {(s, world.topics[t]) for s, t, status in answered if status == 202}
        assert {status for _, _, status in answered} <= {200, 202}
        assert len(answered) == len(asks)
        assert spooled, "the cut came too late to catch any request"
        assert oks <= committed and oks <= lines
        assert app[SPOOL].depth == len(spooled)

        await pg_proxy.restore()
        wanted = sorted((s, world.topics[t]) for s, t in asks)
        for _ in range(200):  # the spool replays as soon as Postgres answers
            found = sorted((r["subscriber_id"], r["topic_id"]) for r in await ledger(conn, world))
            if found == wanted:
                break
            await asyncio.sleep(0.1)
        # Once each: a 202 whose batch had in fact committed is not applied a second time.
        assert found == wanted


async def test_a_request_cancelled_in_its_batch_does_not_cancel_the_batch(conn, db_dsn, world):
    """A client gone while its batch runs: its own opt-out, and the others of its batch, are
    still committed (nothing is half-done)."""
    pool = await create_pool(db_dsn, min_size=0)
    batcher = OneClickBatcher(lambda: pool_connection(pool))
    news = world.topics["news"]
    people = world.subscribers[:6]
    try:
        waiting = [
            asyncio.create_task(
                batcher.unsubscribe(
                    tenant_id=world.tenant,
                    subscriber_id=s,
                    topic_id=news,
                    source="one_click",
                    evidence=Evidence(),
                )
            )
            for s in people
        ]
        await asyncio.sleep(0)  # each is queued, and the first batches have started
        for task in waiting[::2]:
            task.cancel()
        done = await asyncio.gather(*waiting, return_exceptions=True)
        await batcher.close()
    finally:
        await pool.close()
    assert [isinstance(d, asyncio.CancelledError) for d in done] == [True, False] * 3
    assert sorted(r["subscriber_id"] for r in await ledger(conn, world)) == sorted(people)
