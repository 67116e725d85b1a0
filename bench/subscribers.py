"""Benchmark of the workspace's subscriber search and person page (issue 17) at 1,000,000
subscribers with their consent history, next to a bare aiohttp handler doing one
primary-key SELECT on the same table in the same run.

    .venv/bin/python -m bench.subscribers                            # 1,000,000 people
    .venv/bin/python -m bench.subscribers --people 100000 --requests 300   # a quick check

A fresh database ``optout_bench_subscribers`` (on DATABASE_URL, or an embedded Postgres in a
temporary folder) is seeded set-based: per person a subscription, the sign-up's evidence, two
ledger rows and one sent delivery; ANALYZEd. Both servers run in this process on loopback
(the real app from ``create_app``, signed in as a marketing user; the baseline with its own
pool). Requests go one at a time, the three kinds interleaved so they share the machine's
noise: the search (``?q=`` an exact address, found through its keyed hash), a person's page,
and the baseline. Printed: p50 and p95 of each, and each p95's ratio to the baseline's.
Target: search and person page p95 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import aiosql
from aiohttp import web
from yarl import URL

from bench.common import HASH_KEY, drop_bench_database, recreate_database, server_dsn, settings_for
from mailer import migrations, staff_accounts, staff_sessions, tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.db import connect, create_pool
from mailer.sending import campaigns
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.workspace import app_cookie_name
from unsubscribe_web.keys import POOL

DATABASE = "optout_bench_subscribers"
BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "subscribers.sql", "asyncpg")
TARGET_MS = 100.0
SEED_BATCH = 100_000  # people per seeding statement: bounded memory and WAL per statement


async def prepare(
    admin_dsn: str, data_dir: Path, people: int, sample: int
) -> tuple[str, str, list[tuple[int, str]]]:
    """The seeded database's DSN, a marketing account's session id, and the people to look
    up (staff sign in as accounts: the session is started as a sign-in would start it)."""
    dsn = await recreate_database(admin_dsn, DATABASE)
    conn = await connect(dsn)
    try:
        await migrations.migrate(conn, settings=settings_for(dsn, data_dir))
        tenant = await tenants.create_tenant(
            conn,
            "bench",
            name="Bench",
            sender_address="news@bench.example",
            postal_address="1 Bench Road",
        )
        topic = await tenants.create_topic(
            conn, tenant["id"], slug="news", name="News", kind="marketing"
        )
        campaign = await campaigns.create_draft(
            conn,
            tenant_id=tenant["id"],
            topic_slug="news",
            name="Bench",
            subject="Bench",
            content={"format": "markdown", "body": "[Unsubscribe]({{ unsubscribe_url }})"},
        )
        started = time.perf_counter()
        for done in range(0, people, SEED_BATCH):
            await BENCH_SQL.seed_people(
                conn,
                tenant_id=tenant["id"],
                topic_id=topic["id"],
                campaign_id=campaign["id"],
                first=done + 1,
                n=min(SEED_BATCH, people - done),
            )
        ids = [r["id"] async for r in BENCH_SQL.sample_ids(conn, tenant_id=tenant["id"], n=sample)]
        key = tenant_hash_key(HASH_KEY, tenant["id"])
        emails = [f"person{i}@bench.example" for i in ids]
        await BENCH_SQL.set_keys(
            conn, ids=ids, emails=emails, keys=[suppression_key(key, e) for e in emails]
        )
        await BENCH_SQL.analyze(conn)
        print(f"seeded {people:,} people in {time.perf_counter() - started:.0f} s", flush=True)
        link = await staff_accounts.demo_account(
            conn,
            name="Bench marketer",
            email="marketer@bench.example",
            role="marketing",
            tenant_id=tenant["id"],
            link_seconds=3600,
        )
        session_id = await staff_sessions.start(conn, link.account_id, max_seconds=12 * 3600)
    finally:
        await conn.close()
    return dsn, session_id, list(zip(ids, emails, strict=True))


def baseline_app(dsn: str) -> web.Application:
    """The bare baseline: parse the id, one SELECT by primary key, a short text answer."""
    sql = BENCH_SQL.baseline_select.sql
    app = web.Application()

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(dsn, min_size=2, max_size=4)
        yield
        await app[POOL].close()

    async def person(request: web.Request) -> web.Response:
        async with request.app[POOL].acquire() as conn:
            row = await conn.fetchrow(sql, int(request.match_info["id"]))
        return web.Response(text=f"subscriber {row['id'] if row else '-'}")

    app.cleanup_ctx.append(pool)
    app.router.add_get("/b/{id}", person)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def timed(session: aiohttp.ClientSession, url: str, expect: str) -> float:
    started = time.perf_counter()
    async with session.get(url, allow_redirects=False) as response:
        text = await response.text()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200 or expect not in text:
        raise SystemExit(f"{url}: HTTP {response.status}, {expect!r} not in the answer")
    return elapsed


async def measure(
    dsn: str, secret: str, people: list[tuple[int, str]], requests: int, data_dir: Path
) -> dict[str, list[float]]:
    bare, bare_url = await serve(baseline_app(dsn))
    # The app's links and cookies must name the port it listens on: bind first, then build.
    probe = await serve(web.Application())
    port = int(probe[1].rsplit(":", 1)[1])
    await probe[0].cleanup()
    settings = settings_for(dsn, data_dir, base_url=f"http://127.0.0.1:{port}")
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    times: dict[str, list[float]] = {"search": [], "person": [], "baseline": []}
    try:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            jar.update_cookies({app_cookie_name(runner.app): secret}, URL(url))
            pages = f"{url}/dashboard/t/bench/subscribers"
            order = ["search", "person", "baseline"]
            for i in range(requests + 20):  # the first 20 rounds warm up and are not kept
                subscriber_id, email = people[i % len(people)]
                random.shuffle(order)
                for kind in order:
                    if kind == "search":
                        ms = await timed(
                            session,
                            f"{pages}?{urlencode({'q': email})}",
                            f"subscriber-{subscriber_id}",
                        )
                    elif kind == "person":
                        ms = await timed(session, f"{pages}/{subscriber_id}", email)
                    else:
                        ms = await timed(
                            session, f"{bare_url}/b/{subscriber_id}", str(subscriber_id)
                        )
                    if i >= 20:
                        times[kind].append(ms)
    finally:
        await runner.cleanup()
        await bare.cleanup()
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def report(times: dict[str, list[float]]) -> bool:
    base = p95(times["baseline"])
    ok = True
    print(f"{'':>9} {'p50 ms':>8} {'p95 ms':>8} {'p95 / baseline':>15}")
    for kind in ("search", "person", "baseline"):
        values = times[kind]
        high = p95(values)
        print(f"{kind:>9} {statistics.median(values):>8.2f} {high:>8.2f} {high / base:>14.1f}x")
        if kind != "baseline" and high >= TARGET_MS:
            ok = False
    print(f"target: search and person page p95 < {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000, help="of each kind")
    parser.add_argument("--sample", type=int, default=500, help="distinct people looked up")
    args = parser.parse_args()
    with server_dsn() as admin_dsn, tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        try:
            dsn, secret, people = asyncio.run(
                prepare(admin_dsn, Path(tmp), args.people, args.sample)
            )
            times = asyncio.run(measure(dsn, secret, people, args.requests, Path(tmp)))
        finally:
            asyncio.run(drop_bench_database(admin_dsn, DATABASE))
    return 0 if report(times) else 1


if __name__ == "__main__":
    sys.exit(main())
