"""The enqueue statement alone (issue 20): Postgres backend CPU of queuing a campaign's N
deliveries, next to a bare ``INSERT ... SELECT`` of the same rows and to the enqueue as it was
before migration 0210, alternating in the same run.

    .venv/bin/python -m bench.enqueue [--recipients 1000000] [--rounds 3]

A fresh database ``optout_bench_enqueue`` (on DATABASE_URL, or an embedded Postgres in a
temporary folder) gets N confirmed subscribers (bench/send.py's setup, settled by VACUUM
ANALYZE). Each round runs three statements, each from an empty outbox after a checkpoint and
each in a transaction rolled back after it, so every one writes the same rows into the same
empty tables:

* ``enqueue``: what ``campaign send`` runs (campaigns.sql ``enqueue``, with the per-statement
  subscriber check skipped for it, as ``campaigns.start`` does);
* ``before``: the enqueue before migration 0210 (RETURNING counted in a CTE, the subscriber
  check over all its rows; bench/sql/enqueue.sql);
* ``bare``: the same rows into a table shaped like deliveries (columns, defaults, identity,
  indexes, checks) without triggers or consent tests (bench/sql/send.sql ``bare_insert``).

Prints each statement's backend CPU seconds (user+sys from /proc: the server must run on
this machine) and wall seconds per round, their medians and the ratios to ``bare``. The
backend's CPU moves much less with the machine's load than the wall time does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosql

from bench.common import server_dsn
from bench.send import BENCH_SQL, _drop, backend_cpu, prepare
from mailer.db import connect, queries

DATABASE = "optout_bench_enqueue"
ENQUEUE_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "enqueue.sql", "asyncpg")


async def app_enqueue(conn: Any, campaign_id: int) -> int:
    """The enqueue as ``campaigns.start`` runs it."""
    q = queries().campaigns
    await q.subscribers_checked(conn, value="on")
    tag: str = await q.enqueue(conn, campaign_id=campaign_id)
    await q.subscribers_checked(conn, value="off")
    return int(tag.split()[-1])


async def before_enqueue(conn: Any, campaign_id: int) -> int:
    count: int = await ENQUEUE_SQL.enqueue_before(conn, campaign_id=campaign_id)
    return count


async def bare_insert(conn: Any, campaign_id: int) -> int:
    tag: str = await BENCH_SQL.bare_insert(conn, campaign_id=campaign_id)
    return int(tag.split()[-1])


STATEMENTS: dict[str, Callable[[Any, int], Awaitable[int]]] = {
    "enqueue": app_enqueue,
    "before": before_enqueue,
    "bare": bare_insert,
}


async def rounds(
    dsn: str, campaign_id: int, count: int, n: int
) -> dict[str, list[tuple[float, float]]]:
    conn = await connect(dsn)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in STATEMENTS}
    try:
        pid: int = await BENCH_SQL.backend_pid(conn)
        for round_ in range(count):
            for name, statement in STATEMENTS.items():
                await ENQUEUE_SQL.empty_outbox(conn)
                transaction = conn.transaction()
                await transaction.start()
                try:
                    cpu = backend_cpu(pid)
                    started = time.perf_counter()
                    rows = await statement(conn, campaign_id)
                    wall = time.perf_counter() - started
                    used = (backend_cpu(pid) or 0.0) - (cpu or 0.0)
                    written = await ENQUEUE_SQL.outbox_rows(conn)
                finally:
                    await transaction.rollback()
                if rows != n or written != n:
                    raise SystemExit(f"{name} wrote {written} rows (said {rows}), not {n}")
                results[name].append((used, wall))
                print(
                    f"round {round_ + 1} {name:<8} backend CPU {used:6.2f} s   wall {wall:6.2f} s"
                    f"   load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        await conn.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with server_dsn() as admin, tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        print(f"setting up {args.recipients:,} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, Path(tmp), args.recipients, DATABASE))
        results = asyncio.run(rounds(dsn, campaign_id, max(1, args.rounds), args.recipients))
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin, DATABASE))
    bare_cpu = statistics.median(c for c, _ in results["bare"])
    bare_wall = statistics.median(w for _, w in results["bare"])
    print()
    print(f"{args.recipients:,} deliveries, medians of {args.rounds} rounds (min-max)")
    for name, runs in results.items():
        cpu = [c for c, _ in runs]
        wall = [w for _, w in runs]
        print(
            f"{name:<8} backend CPU {statistics.median(cpu):6.2f} s ({min(cpu):.2f}-{max(cpu):.2f})"
            f"  / bare {statistics.median(cpu) / max(bare_cpu, 0.01):.2f}"
            f"   wall {statistics.median(wall):6.2f} s ({min(wall):.2f}-{max(wall):.2f})"
            f"  / bare {statistics.median(wall) / max(bare_wall, 0.01):.2f}"
        )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
