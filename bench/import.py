"""Benchmark of the CSV import: `optout import` against Postgres COPY of the same file into a
bare table, at 100,000 and 1,000,000 rows, with our peak RSS at each size.

    .venv/bin/python -m bench.import [--sizes 100000,1000000] [--existing-consent]
                                     [--with-endpoint]

For each size a CSV (email,name) is generated in a temporary folder and a fresh database
``optout_bench_import`` is migrated (on DATABASE_URL, or on an embedded Postgres in a temporary
folder). The import runs as the real command in a child process, so its peak RSS is that
process's own (its VmHWM, bench.common.wait_with_peak); it validates every row, signs people
up through the consent core, writes the ledger and evidence, and queues the double opt-in mail
(unless ``--existing-consent``). COPY then loads the same file into a bare two-column table over the
same server. Printed per size: rows/s of both, their ratio, and the import's peak RSS, which
must stay flat as the file grows (the file is streamed, never held).

``--with-endpoint`` (issue 22) imports the same file a second time into a fresh database whose
tenant has an event endpoint taking every type, so each person's events are also queued for
delivery (the set-based fan-out in the import's own statements); it prints the rows/s with the
endpoint next to those without, and their ratio (target >= 0.8). Nothing is delivered during
the import: the queued deliveries are what an endpoint adds to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    HASH_KEY,
    KEYS,
    drop_bench_database,
    recreate_database,
    server_dsn,
    settings_for,
    wait_with_peak,
)
from mailer import event_endpoints, migrations, tenants
from mailer.db import connect, queries

DATABASE = "optout_bench_import"


@dataclass
class Result:
    rows: int
    import_seconds: float
    copy_seconds: float
    peak_rss_mb: float
    summary: str
    # The same import with an event endpoint configured (--with-endpoint).
    endpoint_seconds: float | None = None


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\n")
        for i in range(rows):
            out.write(f"person{i}@example{i % 97}.com,Person {i}\n")


async def fresh_database(admin_dsn: str, data_dir: Path, *, with_endpoint: bool = False) -> str:
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
            contact_web="https://bench.example/contact",
        )
        await tenants.create_topic(conn, tenant["id"], slug="news", name="News", kind="marketing")
        if with_endpoint:
            await event_endpoints.create(
                conn,
                settings_for(dsn, data_dir),
                tenant_id=tenant["id"],
                url="https://crm.bench.example/in",
            )
    finally:
        await conn.close()
    return dsn


def run_import(dsn: str, path: Path, existing_consent: bool) -> tuple[float, float, str]:
    """Seconds and peak RSS (MiB) of `optout import` as a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(
        DATABASE_URL=dsn,
        OPTOUT_JOURNAL_DIR=str(Path(tempfile.gettempdir()) / "optout-bench-journal"),
        OPTOUT_SECRET_KEYS=",".join(f"{k}:{v.decode()}" for k, v in KEYS),
        OPTOUT_HASH_KEY=HASH_KEY.decode(),
        OPTOUT_BASE_URL="https://optout.example",
    )
    args = [sys.executable, "-m", "mailer.cli", "import", str(path), "--tenant", "bench"]
    args += ["--topic", "news", "--lawful-basis", "consent", "--source", "bench"]
    args += ["--age-attested"]
    if existing_consent:
        args += ["--existing-consent", "--evidence", "benchmark"]
    started = time.perf_counter()
    child = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    status, _, peak_mb = wait_with_peak(child)
    seconds = time.perf_counter() - started
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"optout import failed ({child.returncode}): {err[-2000:]}")
    return seconds, peak_mb, out.strip().splitlines()[-1]


async def copy_baseline(dsn: str, path: Path) -> float:
    conn = await connect(dsn)
    try:
        await queries().imports.create_bench_table(conn)
        started = time.perf_counter()
        await conn.copy_to_table("bench_copy", source=path, format="csv", header=True)
        return time.perf_counter() - started
    finally:
        await conn.close()


def bench_size(
    admin_dsn: str, rows: int, existing_consent: bool, folder: Path, with_endpoint: bool
) -> Result:
    path = folder / f"list-{rows}.csv"
    write_csv(path, rows)
    dsn = asyncio.run(fresh_database(admin_dsn, folder))
    seconds, rss, summary = run_import(dsn, path, existing_consent)
    copy_seconds = asyncio.run(copy_baseline(dsn, path))
    endpoint_seconds = None
    if with_endpoint:
        dsn = asyncio.run(fresh_database(admin_dsn, folder, with_endpoint=True))
        endpoint_seconds, _, _ = run_import(dsn, path, existing_consent)
    path.unlink()
    return Result(rows, seconds, copy_seconds, rss, summary, endpoint_seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    parser.add_argument(
        "--existing-consent", action="store_true", help="no confirmation mail per person"
    )
    parser.add_argument(
        "--with-endpoint",
        action="store_true",
        help="also import with an event endpoint configured; print the ratio",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    with server_dsn() as admin_dsn, tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        try:
            for rows in sizes:
                result = bench_size(
                    admin_dsn, rows, args.existing_consent, Path(tmp), args.with_endpoint
                )
                results.append(result)
                print(f"{rows:>9} rows: {result.summary}", flush=True)
        finally:
            asyncio.run(drop_bench_database(admin_dsn, DATABASE))
    print()
    print(
        f"{'rows':>9} {'import rows/s':>14} {'COPY rows/s':>12} {'COPY/import':>12} {'peak RSS':>9}"
    )
    for r in results:
        ours = r.rows / r.import_seconds
        copy = r.rows / r.copy_seconds
        ratio = copy / ours
        print(f"{r.rows:>9} {ours:>14,.0f} {copy:>12,.0f} {ratio:>11.1f}x {r.peak_rss_mb:>7.0f}MB")
    for r in results:
        if r.endpoint_seconds is not None:
            ours, hooked = r.rows / r.import_seconds, r.rows / r.endpoint_seconds
            print(
                f"{r.rows:>9} rows with an event endpoint: {hooked:,.0f} rows/s against "
                f"{ours:,.0f} without: ratio {hooked / ours:.2f}   (target >= 0.8), "
                f"load average {os.getloadavg()[0]:.1f}"
            )
    if len(results) > 1:
        growth = results[-1].peak_rss_mb / results[0].peak_rss_mb
        print(
            f"peak RSS at {results[-1].rows:,} rows is {growth:.2f}x the one at "
            f"{results[0].rows:,} rows ({results[-1].rows / results[0].rows:.0f}x the file): "
            f"growth {(growth - 1) * 100:+.1f}%   (target < 20%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
