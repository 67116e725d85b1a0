"""What the consent journal costs the opt-out hot path: the same one-click opt-outs
(``mailer.consent.unsubscribe_from_link``, the statement behind ``POST /u/{token}``), through one
pool, without and then with a journal open, alternating.

    .venv/bin/python -m bench.journal [--opt-outs 2000] [--concurrency 16] [--rounds 3]

Uses the ``optout_bench_web`` database of bench/web.py (built, or reused when it has
``--subscribers``). Each round resets the subscriptions, then runs half the opt-outs without a
journal and half with one (in a temporary folder); it prints opt-outs per second of each, their
ratio (journalled / not journalled), and the fsyncs per journalled opt-out (below 1 when
transactions that commit during an fsync share the next one). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import HASH_KEY, KEYS, server_dsn
from bench.web import DATABASE, prepare_database, subscriber_ids
from mailer import journal
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.db import connect, create_pool, queries, with_database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--opt-outs", type=int, default=2_000, help="per round, both halves")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_dsn() as admin_dsn:
        return asyncio.run(bench(admin_dsn, args))


async def bench(admin_dsn: str, args: argparse.Namespace) -> int:
    dsn = with_database(admin_dsn, DATABASE)
    settings = Settings(None, Path("."), "http://127.0.0.1", KEYS, HASH_KEY)
    tenant_id, topic_id = await prepare_database(admin_dsn, dsn, settings, args.subscribers)
    ids = await subscriber_ids(dsn, tenant_id, min(args.opt_outs, args.subscribers))
    half = len(ids) // 2
    synced: list[object] = []
    real_fsync = os.fsync

    def counting_fsync(fd: Any) -> None:
        synced.append(fd)
        real_fsync(fd)

    os.fsync = counting_fsync  # counts the journal's fsyncs; the same real fsync runs
    plain: list[float] = []
    journalled: list[float] = []
    per_opt_out: list[float] = []
    pool = await create_pool(dsn, min_size=args.concurrency, max_size=args.concurrency)
    try:
        for number in range(1, args.rounds + 1):
            conn = await connect(dsn)
            try:
                await queries().bench_web.reset_subscriptions(conn, topic_id=topic_id)
            finally:
                await conn.close()
            rate = await _run(pool, tenant_id, topic_id, ids[:half], args.concurrency)
            plain.append(rate)
            with tempfile.TemporaryDirectory(prefix="optout-bench-journal-") as folder:
                synced.clear()
                with journal.journal_in(Path(folder)):
                    rate = await _run(pool, tenant_id, topic_id, ids[half:], args.concurrency)
                journalled.append(rate)
                per_opt_out.append(len(synced) / (len(ids) - half))
            print(
                f"round {number}: without journal {plain[-1]:.0f}/s, with journal "
                f"{journalled[-1]:.0f}/s, fsyncs per opt-out {per_opt_out[-1]:.2f}",
                flush=True,
            )
    finally:
        os.fsync = real_fsync
        await pool.close()
    a, b = statistics.median(plain), statistics.median(journalled)
    print(
        f"\n{args.concurrency} at a time, medians of {args.rounds} rounds: without journal "
        f"{a:.0f} opt-outs/s, with journal {b:.0f} opt-outs/s, ratio {b / a:.2f}; "
        f"fsyncs per journalled opt-out {statistics.median(per_opt_out):.2f}"
    )
    return 0


async def _run(
    pool: asyncpg.Pool, tenant_id: int, topic_id: int, ids: list[int], concurrency: int
) -> float:
    gate = asyncio.Semaphore(concurrency)
    evidence = consent.Evidence(ip="192.0.2.1", user_agent="bench", detail={"channel": "bench"})

    async def one(subscriber_id: int) -> None:
        async with gate, pool.acquire() as conn:
            await consent.unsubscribe_from_link(
                conn,
                tenant_id=tenant_id,
                subscriber_id=subscriber_id,
                topic_id=topic_id,
                source="one_click",
                evidence=evidence,
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in ids))
    return len(ids) / (time.perf_counter() - started)


if __name__ == "__main__":
    raise SystemExit(main())
