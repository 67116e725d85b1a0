"""Benchmark of RFC 8058 one-click: ``POST /u/{token}`` of the real app against a bare aiohttp
handler doing one asyncpg UPDATE by primary key on the same table.

    .venv/bin/python -m bench.web [--subscribers 1000000] [--duration 10] [--rounds 3]
                                  [--wrong-passwords] [--with-endpoint] [--profile FILE]

A database ``optout_bench_web`` with SUBSCRIBERS confirmed subscribers is built (on DATABASE_URL,
or on an embedded Postgres in a temporary folder). wrk (Debian's package) drives each server
with bench/web_tokens.lua, which sends every pre-signed token at most once; subscriptions are
reset before every run. The two servers alternate ROUNDS times, at 64 connections (throughput)
and at 8 connections (p99 latency); medians and ratios are printed. Both servers are single
processes with the load generator on the same machine. With ``--wrong-passwords`` a second
client (bench/password_flood.py) posts wrong staff passwords to Optout's sign-in form as fast
as it can during each of Optout's runs (issue 24: the one-click ratio must stay >= 0.5). With
``--with-endpoint`` the bench tenant has a webhook endpoint taking every event type (issue 22),
so each opt-out also queues an event delivery row; its URL is a loopback port nobody listens
on and no worker runs, so the deliveries stay queued: what is measured is the one-click path's
own cost of the fan-out, not the sending. With ``--profile FILE`` Optout's server runs under
cProfile timed by its main thread's CPU clock (not the wall clock, so waiting and other
processes' load count for nothing); the stats go to FILE (read them with ``pstats``) and the
costliest functions are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import os
import pstats
import re
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiohttp import web

from bench.common import HASH_KEY, KEYS, drop_bench_database, server_dsn
from mailer import event_endpoints, migrations, staff_accounts, tenants
from mailer.admin_db import create_database, drop_database
from mailer.config import Settings
from mailer.db import connect, create_pool, queries, rows, with_database
from mailer.passwords import Hasher
from mailer.tokens import Keyring, LinkClaims, Purpose

LUA = Path(__file__).with_name("web_tokens.lua")
DATABASE = "optout_bench_web"
BODY = "List-Unsubscribe=One-Click"
POOL = web.AppKey("pool", asyncpg.Pool)
# With --wrong-passwords this account signs in with its right password during the flood.
STAFF_ACCOUNT = ("bench-admin@bench.example", "the right passphrase of the bench admin")


@dataclass
class Run:
    requests_per_second: float
    p99_ms: float
    requests: int


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=0, help="default: 12,000 per second")
    parser.add_argument("--keep", action="store_true", help="keep the database for next time")
    parser.add_argument(
        "--wrong-passwords",
        action="store_true",
        help="a second client floods Optout's staff sign-in with wrong passwords meanwhile",
    )
    parser.add_argument(
        "--with-endpoint",
        action="store_true",
        help="the bench tenant has a webhook endpoint: every opt-out queues an event delivery",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="profile Optout's server (main thread's CPU clock) into FILE; prints the top",
    )
    parser.add_argument(
        "--baseline-server", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--profiled-server", nargs=2, metavar=("FILE", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.profiled_server:
        profiled_server(Path(args.profiled_server[0]), int(args.profiled_server[1]))
        return 0
    if args.baseline_server:
        port, dsn = args.baseline_server
        web.run_app(
            baseline_app(dsn), host="127.0.0.1", port=int(port), print=None, access_log=None
        )
        return 0
    if shutil.which("wrk") is None:
        print("bench/web.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    with server_dsn() as admin_dsn:
        return bench(admin_dsn, args)


def baseline_app(dsn: str) -> web.Application:
    """The bare baseline: parse the id, one UPDATE by primary key, a short text answer."""
    sql = queries().bench_web.baseline_unsubscribe.sql
    app = web.Application()

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await create_pool(dsn, min_size=4, max_size=10)
        yield
        await app[POOL].close()

    async def unsubscribe(request: web.Request) -> web.Response:
        await request.read()
        subscriber_id, topic_id = (int(x) for x in request.match_info["ids"].split("-"))
        async with request.app[POOL].acquire() as conn:
            await conn.execute(sql, subscriber_id, topic_id)
        return web.Response(text="You are unsubscribed.")

    app.cleanup_ctx.append(pool)
    app.router.add_post("/b/{ids}", unsubscribe)
    return app


def profiled_server(out: Path, port: int) -> None:
    """``optout web --port PORT`` under cProfile; the stats are written when it stops (SIGTERM
    ends web.run_app normally)."""
    # thread_time: the event loop's own CPU; the journal's fsync thread is not the web path's.
    profile = cProfile.Profile(time.thread_time)
    sys.argv = ["optout", "web", "--port", str(port)]
    profile.enable()
    try:
        runpy.run_module("mailer.cli", run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)


def bench(admin_dsn: str, args: argparse.Namespace) -> int:
    dsn = with_database(admin_dsn, DATABASE)
    keyring = Keyring(KEYS)
    settings = Settings(None, Path("."), "http://127.0.0.1", KEYS, HASH_KEY)
    tenant_id, topic_id = asyncio.run(prepare_database(admin_dsn, dsn, settings, args.subscribers))
    asyncio.run(set_endpoint(dsn, settings, tenant_id, wanted=args.with_endpoint))
    if args.wrong_passwords:
        asyncio.run(staff_account(dsn))
    count = args.tokens or max(12_000 * args.duration, 20_000)
    count = min(count, args.subscribers)
    ids = asyncio.run(subscriber_ids(dsn, tenant_id, count))
    work = Path(tempfile.mkdtemp(prefix="optout-bench-web-"))
    ours_paths = work / "ours.txt"
    base_paths = work / "baseline.txt"
    ours_paths.write_text(
        "".join(
            "/u/" + keyring.sign(LinkClaims.issue(Purpose.ONE_CLICK, tenant_id, i, topic_id)) + "\n"
            for i in ids
        )
    )
    base_paths.write_text("".join(f"/b/{i}-{topic_id}\n" for i in ids))
    ours_port, base_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")} | {
        "DATABASE_URL": dsn,
        "OPTOUT_SECRET_KEYS": ",".join(f"{k}:{v.decode()}" for k, v in KEYS),
        "OPTOUT_HASH_KEY": HASH_KEY.decode(),
        "OPTOUT_BASE_URL": "http://127.0.0.1:8080",
        "OPTOUT_DATA_DIR": str(work / "data"),
        # Opt-outs are journalled (fsynced once per transaction), as in production.
        "OPTOUT_JOURNAL_DIR": str(work / "journal"),
    }
    log = (work / "web.log").open("wb")
    ours_command = [sys.executable, "-m", "mailer.cli", "web", "--port", str(ours_port)]
    if args.profile:
        ours_command = [sys.executable, "-m", "bench.web", "--profiled-server"]
        ours_command += [str(args.profile), str(ours_port)]
    servers = [
        subprocess.Popen(
            ours_command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "bench.web", "--baseline-server", str(base_port), dsn],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        for port in (ours_port, base_port):
            wait_for_port(port)
        targets = {
            "optout": (f"http://127.0.0.1:{ours_port}", ours_paths, servers[0].pid),
            "baseline": (f"http://127.0.0.1:{base_port}", base_paths, servers[1].pid),
        }
        results: dict[tuple[str, int], list[Run]] = {}
        postmaster = asyncio.run(postgres_server_pid(dsn))
        for url, paths, _ in targets.values():  # warm both up (pools, caches)
            asyncio.run(reset(dsn, topic_id))
            wrk(url, paths, connections=8, duration=2)
        for round_number in range(1, args.rounds + 1):
            for connections in (64, 8):
                for name, (url, paths, pid) in targets.items():
                    asyncio.run(reset(dsn, topic_id))
                    flood = None
                    if args.wrong_passwords and name == "optout":
                        flood = subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "bench.password_flood",
                                url,
                                str(args.duration),
                                *STAFF_ACCOUNT,
                            ]
                        )
                    queued_before = None
                    if args.with_endpoint and name == "optout":
                        queued_before = asyncio.run(queued_deliveries(dsn, tenant_id))
                    cpu = cpu_seconds(pid)
                    db_cpu = postgres_cpu_seconds(postmaster)
                    run = wrk(url, paths, connections=connections, duration=args.duration)
                    if flood is not None:
                        flood.wait(args.duration + 60)
                    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / max(run.requests, 1)
                    db_ms = (
                        (postgres_cpu_seconds(postmaster) - db_cpu) * 1000 / max(run.requests, 1)
                    )
                    applied = asyncio.run(unsubscribed(dsn, topic_id))
                    if queued_before is not None:
                        queued = asyncio.run(queued_deliveries(dsn, tenant_id)) - queued_before
                    if run.requests > count:
                        print(f"warning: {name} used more than the {count} tokens", file=sys.stderr)
                    results.setdefault((name, connections), []).append(run)
                    print(
                        f"round {round_number} {name:8} c={connections:2}: "
                        f"{run.requests_per_second:8.0f} req/s  p99 {run.p99_ms:7.2f} ms  "
                        f"server CPU {cpu_ms:.2f} ms/request "
                        + (f"Postgres CPU {db_ms:.2f} ms/request " if postmaster else "")
                        + f"({run.requests} requests, {applied} unsubscribed"
                        + (
                            f", {queued} event deliveries queued)"
                            if queued_before is not None
                            else ")"
                        ),
                        flush=True,
                    )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            asyncio.run(drop_bench_database(admin_dsn, DATABASE))
    if args.profile:
        stats = pstats.Stats(str(args.profile))
        print(f"\nprofile of Optout's server in {args.profile}, by own time:")
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
    ours64 = statistics.median(r.requests_per_second for r in results[("optout", 64)])
    base64 = statistics.median(r.requests_per_second for r in results[("baseline", 64)])
    ours8 = statistics.median(r.p99_ms for r in results[("optout", 8)])
    base8 = statistics.median(r.p99_ms for r in results[("baseline", 8)])
    print(
        f"\nsubscribers: {args.subscribers:,}; {args.rounds} rounds of {args.duration} s, medians"
        + ("; optout under a wrong-password flood" if args.wrong_passwords else "")
        + ("; a webhook endpoint configured" if args.with_endpoint else "")
    )
    print(
        f"64 connections: optout {ours64:.0f} req/s, baseline {base64:.0f} req/s, "
        f"ratio {ours64 / base64:.2f} (target >= 0.5)"
    )
    print(
        f" 8 connections: optout p99 {ours8:.2f} ms, baseline p99 {base8:.2f} ms, "
        f"ratio {ours8 / base8:.2f} (target <= 2)"
    )
    return 0


async def prepare_database(
    admin_dsn: str, dsn: str, settings: Settings, subscribers: int
) -> tuple[int, int]:
    """Create, migrate and seed the bench database, or reuse one of the same size."""
    admin = await connect(admin_dsn)
    try:
        with contextlib.suppress(Exception):
            conn = await connect(dsn)
            try:
                tenant = await queries().tenants.get_tenant_by_slug(conn, slug="bench")
                if tenant is not None:
                    topic = await tenants.get_topic(conn, tenant["id"], "news")
                    size = await queries().bench_web.count_subscribers(conn, tenant_id=tenant["id"])
                    if size == subscribers:
                        print(f"reusing {DATABASE} ({size:,} subscribers)", flush=True)
                        return tenant["id"], topic["id"]
            finally:
                await conn.close()
        await drop_database(admin, DATABASE)
        await create_database(admin, DATABASE)
    finally:
        await admin.close()
    started = time.monotonic()
    conn = await connect(dsn)
    try:
        await migrations.migrate(conn, settings=settings)
        tenant = await tenants.create_tenant(
            conn,
            "bench",
            name="Bench",
            sender_address="news@bench.example",
            postal_address="1 Bench Road",
            contact_web="https://bench.example/contact",
        )
        topic = await tenants.create_topic(
            conn, tenant["id"], slug="news", name="News", kind="marketing"
        )
        q = queries().bench_web
        await q.seed_subscribers(conn, tenant_id=tenant["id"], n=subscribers)
        await q.seed_subscriptions(conn, tenant_id=tenant["id"], topic_id=topic["id"])
        await q.vacuum_subscriptions(conn)
    finally:
        await conn.close()
    print(f"seeded {subscribers:,} subscribers in {time.monotonic() - started:.0f} s", flush=True)
    return tenant["id"], topic["id"]


async def set_endpoint(dsn: str, settings: Settings, tenant_id: int, *, wanted: bool) -> None:
    """One webhook endpoint for the bench tenant when ``wanted``, none otherwise (a reused
    database may hold one from an earlier run)."""
    # A loopback URL needs the development switch; the port is closed and nothing sends.
    settings = dataclasses.replace(
        settings, events=dataclasses.replace(settings.events, allow_http_loopback=True)
    )
    conn = await connect(dsn)
    try:
        existing = await event_endpoints.list_endpoints(conn, tenant_id)
        if wanted and not existing:
            url = f"http://127.0.0.1:{free_port()}/optout-events"
            await event_endpoints.create(conn, settings, tenant_id=tenant_id, url=url)
        if not wanted:
            for endpoint in existing:
                await event_endpoints.remove(conn, tenant_id, endpoint["id"])
    finally:
        await conn.close()


async def staff_account(dsn: str) -> None:
    """The staff account whose right password must get in during the flood (made once, the
    real way: invited, then its password set from the link)."""
    email, password = STAFF_ACCOUNT
    conn = await connect(dsn)
    hasher = Hasher(1)
    try:
        if await staff_accounts.by_email(conn, email) is None:
            link = await staff_accounts.invite(
                conn, email=email, installation_admin=True, valid_seconds=3600, actor="bench"
            )
            await staff_accounts.set_password_by_link(
                conn, hasher, link.secret, staff_accounts.INVITE, password
            )
    finally:
        hasher.close()
        await conn.close()


async def queued_deliveries(dsn: str, tenant_id: int) -> int:
    conn = await connect(dsn)
    try:
        count: int = await queries().bench_web.count_event_deliveries(conn, tenant_id=tenant_id)
        return count
    finally:
        await conn.close()


async def subscriber_ids(dsn: str, tenant_id: int, count: int) -> list[int]:
    conn = await connect(dsn)
    try:
        found = await rows(queries().bench_web.subscriber_ids(conn, tenant_id=tenant_id, n=count))
        return [row["id"] for row in found]
    finally:
        await conn.close()


async def reset(dsn: str, topic_id: int) -> None:
    conn = await connect(dsn)
    try:
        await queries().bench_web.reset_subscriptions(conn, topic_id=topic_id)
        await queries().bench_web.vacuum_subscriptions(conn)
    finally:
        await conn.close()


async def unsubscribed(dsn: str, topic_id: int) -> int:
    conn = await connect(dsn)
    try:
        count: int = await queries().bench_web.count_unsubscribed(conn, topic_id=topic_id)
        return count
    finally:
        await conn.close()


def wrk(url: str, paths: Path, *, connections: int, duration: int) -> Run:
    threads = 2 if connections >= 2 else 1
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(LUA),
            url,
            "--",
            str(paths),
            BODY,
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    )
    out = result.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not (rate and p99 and total):
        raise RuntimeError(f"cannot read wrk's output:\n{out}\n{result.stderr}")
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed requests against {url}:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return Run(float(rate.group(1)), float(p99.group(1)) * scale, int(total.group(1)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc): what a request costs, load aside."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def postgres_server_pid(dsn: str) -> int | None:
    """The Postgres server's main process when it runs on this machine (its backends are its
    children), else None: a remote server's CPU cannot be read here."""
    conn = await connect(dsn)
    try:
        backend: int = await queries().bench_web.backend_pid(conn)
        # Read while the backend still runs: it exits when the connection closes.
        return _parent_pid(backend)
    except OSError:
        return None
    finally:
        await conn.close()


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def postgres_cpu_seconds(postmaster: int | None) -> float:
    """User + system CPU of the Postgres server's live processes: the one-click statement's
    cost on the database side (its triggers, writes and WAL fsync), which the server's own
    CPU leaves out. Every database of that server counts: meaningful on the embedded one."""
    if postmaster is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(stat.parent.name)
            if pid == postmaster or _parent_pid(pid) == postmaster:
                total += cpu_seconds(pid)
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no server on port {port} after {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
