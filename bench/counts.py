"""Counting while sending (issue 20): a campaign's statistics read while the worker sends it,
next to the same reads of an idle campaign of 20,000 in the same run.

    .venv/bin/python -m bench.counts [--recipients 1000000] [--baseline 20000]
                                     [--warm 30] [--seconds 60] [--concurrency 4]

One database ``optout_bench_counts`` (on DATABASE_URL, or an embedded Postgres in a temporary
folder) holds two tenants: ``bench`` with N confirmed subscribers and ``idle`` with BASELINE.
Both campaigns are started (queued); the idle one is paused at once, so nothing of it moves.
Three reads are timed in turn every 0.2 s (bench/send.py's ``Watcher``): ``campaigns.stats`` on
a connection (what ``optout campaign status`` runs, without the interpreter's start), the
admin API's ``GET /api/v1/tenants/{slug}/campaigns/{id}/stats`` with a token, and the staff
dashboard's page of a signed-in marketing account, over loopback HTTP from the real app.

1. Baseline: the idle campaign's reads for SECONDS, nothing sending.
2. ``optout worker`` (its own process) sends the big campaign into an aiosmtpd sink in another
   process; after WARM seconds the big campaign's reads run for SECONDS while it sends; then
   the worker is stopped (SIGTERM, by its PID).

Prints p50, p95 and max of each read on both sides, the p95 ratio, the messages the worker sent
during the reads, and the load average (target: p95 < 100 ms while sending at 1,000,000).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import optout_env, server_dsn
from bench.send import (
    Sink,
    Started,
    Watcher,
    _drop,
    percentile,
    prepare,
    readers,
    seed_tenant,
    sink_settings,
)
from mailer import tenants
from mailer.db import connect
from mailer.sending import campaigns

DATABASE = "optout_bench_counts"
WAIT_LIMIT = 600.0  # seconds: a bound on waiting for the worker's first message


async def start_both(
    dsn: str, folder: Path, big_id: int, baseline: int, port: int
) -> tuple[Started, Started, int]:
    """Start the big campaign; seed, start and pause the idle one. Returns both readers'
    credentials and the idle campaign's id."""
    settings = sink_settings(dsn, folder, port)
    conn = await connect(dsn)
    try:
        idle_id = await seed_tenant(conn, folder / "dkim.pem", "idle", baseline)
        started: list[Started] = []
        for slug, campaign_id in (("bench", big_id), ("idle", idle_id)):
            tenant = await tenants.get_tenant(conn, slug)
            await campaigns.start(conn, settings, tenant["id"], campaign_id)
            token, session = await readers(conn, tenant["id"])
            started.append(Started([], 0.0, 0.0, None, None, tenant["id"], token, session))
        await campaigns.pause(conn, started[1].tenant_id, idle_id, "idle: the baseline")
        return started[0], started[1], idle_id
    finally:
        await conn.close()


def read_for(
    dsn: str, folder: Path, campaign_id: int, started: Started, slug: str, seconds: float
) -> Watcher:
    with Watcher(dsn, folder, campaign_id, started, tenant_slug=slug) as watcher:
        time.sleep(seconds)
    if watcher.errors:
        raise SystemExit(f"statistics reads failed: {watcher.errors[:3]}")
    return watcher


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker we started (it finishes its batch), then kill it if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report(idle: Watcher, busy: Watcher, n: int, baseline: int) -> None:
    print()
    print(
        f"{'read':<17} {'idle ' + format(baseline, ',') + ' (baseline)':<30} "
        f"{format(n, ',') + ' while sending':<30} {'p95 ratio':<10} target"
    )
    for name, base, live in (
        ("campaign status", idle.status_ms, busy.status_ms),
        ("admin API stats", idle.api_ms, busy.api_ms),
        ("dashboard page", idle.dashboard_ms, busy.dashboard_ms),
    ):
        b95, l95 = percentile(base, 95), percentile(live, 95)
        print(
            f"{name:<17} "
            f"{_cell(base):<30} {_cell(live):<30} {l95 / max(b95, 1e-9):<10.2f} p95 < 100 ms"
        )
    if idle.status_pg_ms is not None and busy.status_pg_ms is not None:
        idle_pg = idle.status_pg_ms / max(len(idle.status_ms), 1)
        busy_pg = busy.status_pg_ms / max(len(busy.status_ms), 1)
        print(
            f"Postgres CPU per `campaign status` read: {idle_pg:.2f} ms idle, "
            f"{busy_pg:.2f} ms while sending ({busy_pg / max(idle_pg, 1e-9):.2f})"
        )
    print("Python CPU per read (client and handler, this process; Postgres not included):")
    for name, key in (
        ("campaign status", "status"),
        ("admin API stats", "api"),
        ("dashboard page", "dashboard"),
    ):
        idle_cpu = idle.cpu_ms[key] / max(len(idle.status_ms), 1)
        busy_cpu = busy.cpu_ms[key] / max(len(busy.status_ms), 1)
        ratio = busy_cpu / max(idle_cpu, 1e-9)
        print(f"{name:<17} {idle_cpu:.2f} ms idle, {busy_cpu:.2f} ms while sending ({ratio:.2f})")


def _cell(values: list[float]) -> str:
    return (
        f"{percentile(values, 50):.1f} / {percentile(values, 95):.1f} / "
        f"{max(values, default=0):.1f} ms ({len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=20_000)
    parser.add_argument("--warm", type=float, default=30.0, help="seconds of sending first")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of reads per side")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with server_dsn() as admin, tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"setting up {args.recipients:,} + {args.baseline:,} subscribers ...", flush=True)
        dsn, big_id = asyncio.run(prepare(admin, folder, args.recipients, DATABASE))
        sink = Sink()
        worker: subprocess.Popen[bytes] | None = None
        try:
            big, idle, idle_id = asyncio.run(
                start_both(dsn, folder, big_id, args.baseline, sink.port)
            )
            print(f"baseline: reads of the idle campaign for {args.seconds:.0f} s", flush=True)
            idle_reads = read_for(dsn, folder, idle_id, idle, "idle", args.seconds)
            load_idle = os.getloadavg()
            env = optout_env(
                dsn, sink.port, OPTOUT_RELAY_PER_SECOND="100000", OPTOUT_RELAY_PER_HOUR="100000000"
            )
            command = [sys.executable, "-m", "mailer.cli", "worker", "--quiet"]
            worker = subprocess.Popen([*command, "--concurrency", str(args.concurrency)], env=env)
            deadline = time.monotonic() + WAIT_LIMIT
            while sink.ask("stats")["count"] == 0 and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(args.warm)
            before = sink.ask("stats")["count"]
            print(f"sending ({before:,} sent): reads for {args.seconds:.0f} s", flush=True)
            busy_reads = read_for(dsn, folder, big_id, big, "bench", args.seconds)
            after = sink.ask("stats")["count"]
            load_busy = os.getloadavg()
        finally:
            if worker is not None:
                stop(worker)
            sink.close()
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin, DATABASE))
    report(idle_reads, busy_reads, args.recipients, args.baseline)
    print(
        f"the worker sent {after - before:,} messages during the reads "
        f"({(after - before) / args.seconds:.0f} msg/s; {after:,} of {args.recipients:,} by then)"
    )
    print(f"load average: idle reads {load_idle}, reads while sending {load_busy}")


if __name__ == "__main__":
    main()
