"""Benchmark of several worker processes on one Postgres: 1, 2 and 4 `optout worker` processes
send one campaign into 2 sink processes; the baseline is the single worker of the same run.

    .venv/bin/python -m bench.workers [--recipients 20000] [--workers 1,2,4] [--concurrency 4]

For each worker count a fresh database ``optout_bench_send`` gets N confirmed subscribers and
a started campaign (bench/send.py's setup); the workers start together, worker i sending
through sink i mod 2 (each sink is an aiosmtpd server in its own process; each is its own
relay, with its own shared budget row, set far above what the machine can send). Printed per
count: messages per second (first to last arrival over both sinks), the scaling factor
against one worker, the workers' CPU (user+sys), and for each worker the time its Postgres
connections spent waiting on a lock (pg_stat_activity sampled every 10 ms, backends told
apart by application_name), as seconds and as a share of its run. The cores cap the scaling
(the figure printed next to it); lock waits near zero show that nothing in claims, budgets or
result writes serialises the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosql

from bench.common import optout_env, server_dsn
from bench.send import Sink, _drop, _sent, begin, prepare
from mailer.db import connect

BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "workers.sql", "asyncpg")
SAMPLE_SECONDS = 0.01
APP_PREFIX = "bench-worker-"


@dataclasses.dataclass(frozen=True)
class Run:
    workers: int
    recipients: int
    seconds: float  # first to last arrival over both sinks
    cpu: float  # user+sys of all worker processes
    lock_wait: dict[str, float]  # per worker: seconds its backends waited on a lock
    wall: dict[str, float]  # per worker: its run time

    @property
    def rate(self) -> float:
        return self.recipients / max(self.seconds, 1e-9)


def worker_env(dsn: str, port: int, name: str) -> dict[str, str]:
    separator = "&" if "?" in dsn else "?"
    # asyncpg passes unknown DSN parameters on as server settings: each worker's backends
    # carry its name in pg_stat_activity.
    return optout_env(
        f"{dsn}{separator}application_name={name}",
        port,
        OPTOUT_RELAY_PER_SECOND="100000",
        OPTOUT_RELAY_PER_HOUR="100000000",
    )


async def _sample_locks(
    dsn: str, stop: asyncio.Event, waits: dict[str, float], seen: dict[str, int]
) -> None:
    """Every 10 ms: which workers' backends wait on a heavyweight lock; time accumulates.
    ``seen`` counts the samples in which each worker had backends at all."""
    conn = await connect(dsn)
    try:
        last = time.monotonic()
        while not stop.is_set():
            rows = [r async for r in BENCH_SQL.lock_waits(conn, prefix=APP_PREFIX)]
            now = time.monotonic()
            for row in rows:
                name = row["application_name"]
                waits[name] = waits.get(name, 0.0) + row["waiting"] * (now - last)
                seen[name] = seen.get(name, 0) + 1
            last = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
    finally:
        await conn.close()


def spawn_workers(
    dsn: str, sinks: list[Sink], count: int, concurrency: int
) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """``count`` `optout worker --until-idle` processes, worker i through sink i mod 2."""
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    for i in range(count):
        name = f"{APP_PREFIX}{i + 1}"
        command = [sys.executable, "-m", "mailer.cli", "worker", "--until-idle", "--quiet"]
        command += ["--concurrency", str(concurrency)]
        env = worker_env(dsn, sinks[i % len(sinks)].port, name)
        processes.append((name, subprocess.Popen(command, env=env)))
    return processes


async def _run_workers(
    dsn: str, sinks: list[Sink], count: int, concurrency: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Start ``count`` workers together; wait for all; sample lock waits meanwhile."""
    waits: dict[str, float] = {}
    seen: dict[str, int] = {}
    wall: dict[str, float] = {}
    cpu = 0.0
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_locks(dsn, stop, waits, seen))
    started = time.monotonic()
    processes = spawn_workers(dsn, sinks, count, concurrency)
    loop = asyncio.get_running_loop()
    for name, process in processes:
        _, status, usage = await loop.run_in_executor(None, os.wait4, process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"{name} exited with {process.returncode}")
        wall[name] = time.monotonic() - started
        cpu += usage.ru_utime + usage.ru_stime
    stop.set()
    await sampler
    missing = [name for name, _ in processes if not seen.get(name)]
    if missing:
        raise SystemExit(f"the lock sampler never saw the backends of {missing}")
    samples = {name: seen[name] for name, _ in processes}
    print(f"lock sampler: samples with backends per worker {samples}", flush=True)
    return cpu, {name: waits.get(name, 0.0) for name, _ in processes}, wall


def run_count(admin: str, recipients: int, count: int, concurrency: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"{count} worker(s): setting up {recipients} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, folder, recipients))
        sinks = [Sink(), Sink()]
        try:
            asyncio.run(begin(dsn, folder, campaign_id, sinks[0].port))
            for sink in sinks:
                sink.ask("reset")
            print(f"{count} worker(s): sending ...", flush=True)
            cpu, waits, wall = asyncio.run(_run_workers(dsn, sinks, count, concurrency))
            stats = [sink.ask("stats") for sink in sinks]
        finally:
            for sink in sinks:
                sink.close()
        sent = asyncio.run(_sent(dsn, campaign_id))
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin))
    delivered = sum(s["count"] for s in stats)
    if delivered != recipients or sent != recipients:
        raise SystemExit(f"incomplete run: {delivered} delivered, {sent} recorded sent")
    spans = [(s["first"], s["last"]) for s in stats if s["count"]]
    seconds = max(last for _, last in spans) - min(first for first, _ in spans)
    return Run(count, recipients, seconds, cpu, waits, wall)


def report(runs: list[Run], concurrency: int) -> None:
    base = runs[0]
    cores = os.cpu_count() or 1
    print()
    print(
        f"recipients {base.recipients}, {concurrency} SMTP connections per worker, "
        f"2 sink processes, {cores} cores, load {os.getloadavg()[0]:.2f}"
    )
    print("workers  msg/s    scaling  (cores cap)  worker CPU  lock wait per worker")
    for run in runs:
        cap = min(run.workers, cores)
        waits = ", ".join(
            f"{name.removeprefix(APP_PREFIX)}: {run.lock_wait[name] * 1000:.0f} ms "
            f"({run.lock_wait[name] / max(run.wall[name], 1e-9):.2%})"
            for name in sorted(run.lock_wait)
        )
        print(
            f"{run.workers:7d}  {run.rate:7.1f}  {run.rate / base.rate:6.2f}x  ({cap}x)"
            f"        {run.cpu:6.1f} s    {waits}"
        )
    print(f"baseline: 1 worker in the same run, {base.rate:.1f} msg/s")


def counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 or v > 16 for v in values):
        raise argparse.ArgumentTypeError("expected worker counts from 1 to 16, comma-separated")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--workers", type=counts, default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.recipients <= 0:
        parser.error("--recipients must be positive")
    runs: list[Run] = []
    with server_dsn() as admin:
        for count in args.workers:
            runs.append(run_count(admin, args.recipients, count, args.concurrency))
    report(runs, args.concurrency)


if __name__ == "__main__":
    main()
