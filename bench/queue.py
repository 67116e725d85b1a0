"""Benchmark of the worker's database side alone: claim and result write per batch, lease
renewal, completion check and campaign statistics, at a small and a large outbox, side by side.

    .venv/bin/python -m bench.queue [--recipients 20000,1000000] [--batches 300] [--batch 100]

For each size a fresh database ``optout_bench_queue`` (on DATABASE_URL, or an embedded Postgres
in a temporary folder) gets N confirmed subscribers (generate_series) and a started campaign
to them. Then, on one connection, BATCHES rounds of what a worker does per batch run without
SMTP: claim BATCH deliveries (the real query, consent tests included), renew the lease, record
them sent, check completion; each query is timed. It is done twice per size: at the head of the
outbox, and again after half of it was claimed and recorded (each point takes at most a tenth
of the outbox, so BATCHES is lowered for small sizes) (the dead index entries a long send
leaves behind until autovacuum), with ``EXPLAIN (ANALYZE, BUFFERS)`` of the claim at both
points. Printed: milliseconds per batch of each query (median), the deliveries per second one
connection claims and records, the large size against the small one (target: within 10%), and
the buffers the claim touched.

The claim and result-write rate is what tells how many workers one Postgres carries: a worker
sending S messages a second spends about S / rate of a connection on them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosql

from bench.common import server_dsn, settings_for
from mailer import migrations, tenants
from mailer.admin_db import create_database, drop_database
from mailer.db import connect, queries, rows, with_database
from mailer.sending import campaigns

DATABASE = "optout_bench_queue"
BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "queue.sql", "asyncpg")
CONTENT = {"headline": "News", "intro": "Hello.", "blocks": []}
OWNER = "bench-worker"


async def record(conn: Any, ids: list[int]) -> None:
    """The batch's results, all sent, in the worker's one statement."""
    n = len(ids)
    await rows(
        queries().deliveries.record(
            conn,
            owner=OWNER,
            relays=["bench"] * n,
            give_up_seconds=86400,
            ids=ids,
            states=["sent"] * n,
            codes=[250] * n,
            replies=["2.0.0 OK"] * n,
            message_ids=[f"<b{i}@bench>" for i in ids],
            delays=[0.0] * n,
        )
    )


async def measure(
    conn: Any, campaign_id: int, tenant_id: int, batches: int, batch: int
) -> dict[str, float]:
    """Median milliseconds of each step over ``batches`` rounds."""
    q = queries().deliveries
    times: dict[str, list[float]] = {k: [] for k in ("claim", "renew", "record", "finish", "stats")}
    for _ in range(batches):
        t0 = time.perf_counter()
        claimed = await rows(q.claim(conn, owner=OWNER, lease_seconds=60, lim=batch))
        t1 = time.perf_counter()
        await q.renew_leases(conn, owner=OWNER, lease_seconds=60)
        t2 = time.perf_counter()
        await record(conn, [r["id"] for r in claimed])
        t3 = time.perf_counter()
        await rows(queries().campaigns.finish_campaigns(conn, ids=[campaign_id]))
        t4 = time.perf_counter()
        await campaigns.stats(conn, tenant_id, campaign_id)
        t5 = time.perf_counter()
        for key, a, b in (
            ("claim", t0, t1),
            ("renew", t1, t2),
            ("record", t2, t3),
            ("finish", t3, t4),
            ("stats", t4, t5),
        ):
            times[key].append((b - a) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


async def claim_plan(conn: Any, batch: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of one claim, rolled back: the index walk's buffers."""
    query = queries().deliveries.claim
    order = queries().deliveries.driver_adapter.var_sorted["claim"]
    values = {"owner": OWNER, "lease_seconds": 60, "lim": batch}
    tr = conn.transaction()
    await tr.start()
    try:
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + query.sql, *[values[p] for p in order]
        )
    finally:
        await tr.rollback()
    lines = [r[0] for r in plan]
    walk = next((i for i, line in enumerate(lines) if "deliveries_due" in line), None)
    picked = lines[walk : walk + 5] if walk is not None else []
    total = [line for line in lines if "Execution Time" in line]
    return "\n".join(
        line.strip()
        for line in picked + total
        if "Buffers" in line or "Time" in line or "Index" in line
    )


async def run_size(admin: str, n: int, batches: int, batch: int) -> list[dict[str, float]]:
    conn = await connect(admin)
    try:
        await drop_database(conn, DATABASE)
        await create_database(conn, DATABASE)
    finally:
        await conn.close()
    dsn = with_database(admin, DATABASE)
    conn = await connect(dsn)
    try:
        with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
            await migrations.migrate(conn, settings=settings_for(dsn, Path(tmp)))
        tenant = await tenants.create_tenant(
            conn,
            "bench",
            name="Bench",
            sender_address="news@bench.example",
            postal_address="1 Bench Street",
            contact_web="https://bench.example/contact",
        )
        topic = await tenants.create_topic(
            conn, tenant["id"], slug="newsletter", name="Newsletter", kind="marketing"
        )
        campaign = await campaigns.create(
            conn,
            tenant_id=tenant["id"],
            topic_slug="newsletter",
            name="Bench",
            template="newsletter",
            subject="News",
            content=CONTENT,
        )
        await BENCH_SQL.seed_people(conn, tenant_id=tenant["id"], topic_id=topic["id"], n=n)
        await BENCH_SQL.start_campaign(conn, campaign_id=campaign["id"])
        await queries().campaigns.enqueue(conn, campaign_id=campaign["id"])
        await queries().campaigns.analyze_deliveries(conn)
        out = []
        # Each point consumes rounds x batch deliveries: at most a tenth of the outbox each.
        rounds = max(1, min(batches, n // (10 * batch)))
        for label in ("head", "half"):
            if label == "half":
                # Claim and record half the outbox the way the worker does, in big batches.
                await BENCH_SQL.claim_half(conn, campaign_id=campaign["id"], n=n // 2)
                await BENCH_SQL.record_half(conn)
            plan = await claim_plan(conn, batch)
            figures = await measure(conn, campaign["id"], tenant["id"], rounds, batch)
            print(f"\n{n} recipients, at the {label} of the outbox: claim plan\n{plan}", flush=True)
            out.append(figures)
        return out
    finally:
        await conn.close()
        conn = await connect(admin)
        try:
            await drop_database(conn, DATABASE)
        finally:
            await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", default="20000,1000000")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    sizes = [int(v) for v in args.recipients.split(",")]
    results: dict[int, list[dict[str, float]]] = {}
    with server_dsn() as admin:
        for n in sizes:
            results[n] = asyncio.run(run_size(admin, n, args.batches, args.batch))
    print()
    print(
        f"{'recipients':>10} {'where':>5} "
        + " ".join(f"{k + ' ms':>10}" for k in results[sizes[0]][0])
        + "  claim+record deliveries/s per connection"
    )
    rates: dict[int, float] = {}
    for n, points in results.items():
        for label, f in zip(("head", "half"), points, strict=True):
            rate = args.batch / ((f["claim"] + f["record"] + f["renew"] + f["finish"]) / 1000)
            rates.setdefault(n, rate)
            rates[n] = min(rates[n], rate)
            print(
                f"{n:>10} {label:>5} "
                + " ".join(f"{v:>10.2f}" for v in f.values())
                + f"  {rate:,.0f}"
            )
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        print(
            f"slowest point at {last}: {rates[last]:,.0f}/s vs {rates[first]:,.0f}/s at {first}: "
            f"{(rates[last] / rates[first] - 1) * 100:+.1f}%   (target within 10%)"
        )


if __name__ == "__main__":
    main()
