"""Benchmark of campaign sending, end to end, against a raw aiosmtplib baseline in the same run.

    .venv/bin/python -m bench.send [--recipients 20000[,1000000]] [--concurrency 4]
                                   [--repeat 3] [--sample 200000] [--queue-only]
                                   [--stop-at-sample]

A fresh database ``optout_bench_send`` is migrated (on DATABASE_URL, or an embedded Postgres in
a temporary folder) with a tenant that has a 2048-bit DKIM key and N confirmed subscribers. An
aiosmtpd sink runs in its own process and times the first and last arrival (and the arrival of
message SAMPLE). Then, each in its own process so its CPU time and peak RSS are its own
(``wait4``):

1. ``campaign send``'s work (``campaigns.start``: checks, the set-based enqueue, ANALYZE) is
   timed, next to a bare ``INSERT ... SELECT`` of the same rows into a table shaped like
   deliveries (same columns, indexes and checks; no foreign keys, no counters, no consent
   tests), in the same run;
2. the real worker (``optout worker --until-idle``) sends the campaign: claim, render, sign,
   send, record. Meanwhile the campaign statistics are read every 0.2 s the way
   ``campaign status`` reads them (``campaigns.stats``), through the admin API's
   ``GET .../campaigns/{id}/stats`` and the staff dashboard's page of the real app, and their
   latencies are kept (``--watch DSN CAMPAIGN SECONDS`` does only this, against the database
   of a run in progress);
3. the baseline: a plain aiosmtplib loop sending pre-built messages (same sizes, same number of
   connections) into the same sink: SAMPLE of them (all N when N <= SAMPLE), compared with the
   worker's rate over its first SAMPLE messages. The statistics reads run beside it as well,
   so both sides share the machine with them alike.

Printed per run: messages/s of both and their ratio, the sender's CPU seconds per 1,000
messages (user+sys), one RSA-2048 signature's cost through OpenSSL, the overhead factor (worker
CPU per message / (one signature + one raw send)), the worker's peak RSS, the enqueue time and
its ratio to the bare insert, the bytes Postgres holds per delivery (table plus indexes), and
the statistics' p50/p95 latency while sending. With several sizes each runs in turn in a fresh
database; ``--repeat R`` runs the whole list R times, alternating the sizes, and prints each
size's median and spread, the median rate of the last size against the first, and the growth
of the worker's peak RSS. ``--queue-only`` stops each run after step 1 (the queuing figures
and the bytes per delivery, without sending), so the queuing is measured at 1,000,000 in
minutes rather than an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosql

from bench.common import HASH_KEY, optout_env, server_dsn, settings_for, wait_with_peak
from mailer import api_tokens, migrations, staff_accounts, staff_sessions, tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.admin_db import create_database, drop_database
from mailer.config import Settings, SmtpRelay
from mailer.db import connect, with_database
from mailer.sending import campaigns
from mailer.sending.dkim import generate_rsa_key_pem
from mailer.sending.worker import Composer

DATABASE = "optout_bench_send"
DOMAIN = "news.bench.example"
CONTENT = {
    "headline": "Benchmark news",
    "intro": ["A paragraph of the kind a newsletter has. " * 4] * 3,
    "blocks": [
        {"title": f"Story {i}", "body": "Text of the story. " * 12, "link": "https://x.example/"}
        for i in range(3)
    ],
}
BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "send.sql", "asyncpg")


# --- the sink process -------------------------------------------------------------------------


def run_sink() -> None:
    """An aiosmtpd server that counts messages; answers "stats" and "reset" on stdin."""
    from aiosmtpd.smtp import SMTP

    class Counter:
        def __init__(self) -> None:
            self.reset()

        def reset(self) -> None:
            self.count = 0
            self.bytes = 0
            self.first = 0.0
            self.last = 0.0
            self.mark = 0  # the arrival whose time is kept (the sample's end)
            self.marked = 0.0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()
            if not self.count:
                self.first = now
            self.last = now
            self.count += 1
            if self.count == self.mark:
                self.marked = now
            self.bytes += len(envelope.original_content or b"")
            return "250 2.0.0 OK"

    async def main() -> None:
        counter = Counter()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(counter, hostname="sink.bench"), "127.0.0.1", 0
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = line.decode().strip()
            if command == "reset":
                counter.reset()
            elif command.startswith("mark "):
                counter.mark = int(command.split()[1])
            stats = {"count": counter.count, "seconds": counter.last - counter.first}
            # The monotonic clock is the host's: bench/workers.py spans several sinks with it.
            stats |= {"first": counter.first, "last": counter.last}
            stats["marked"] = counter.marked - counter.first if counter.marked else 0.0
            print(json.dumps(stats | {"bytes": counter.bytes}), flush=True)
        server.close()

    asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.send", "--sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.port = int(self.process.stdout.readline())

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdout is not None and self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        result: dict[str, Any] = json.loads(self.process.stdout.readline())
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the raw baseline process ----------------------------------------------------------------


def run_raw(port: int, count: int, concurrency: int, sample: Path) -> None:
    """Send ``count`` pre-built messages (cycling the sample) with aiosmtplib, no DB, no DKIM."""
    import aiosmtplib

    messages = json.loads(sample.read_text())
    prebuilt = [(m["from"], m["to"], m["data"].encode("ascii")) for m in messages]

    async def main() -> None:
        todo = iter(range(count))

        async def connection() -> None:
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=port, start_tls=False, local_hostname="bench"
            )
            await client.connect()
            for i in todo:
                sender, rcpt, data = prebuilt[i % len(prebuilt)]
                await client.sendmail(sender, [rcpt], data)
            await client.quit()

        await asyncio.gather(*(connection() for _ in range(concurrency)))

    asyncio.run(main())


# --- setup -----------------------------------------------------------------------------------


async def prepare(
    admin_dsn: str, folder: Path, recipients: int, database: str = DATABASE
) -> tuple[str, int]:
    """A migrated database with the tenant, N subscribers and a draft campaign to them."""
    admin = await connect(admin_dsn)
    try:
        await drop_database(admin, database)
        await create_database(admin, database)
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, database)
    settings = settings_for(dsn, folder, "https://optout.bench.example")
    conn = await connect(dsn)
    try:
        await migrations.migrate(conn, settings=settings)
        key_path = folder / "dkim.pem"
        key_path.write_bytes(generate_rsa_key_pem())
        campaign_id = await seed_tenant(conn, key_path, "bench", recipients)
        await BENCH_SQL.settle_seeded(conn)
        return dsn, campaign_id
    finally:
        await conn.close()


async def seed_tenant(conn: Any, key_path: Path, slug: str, recipients: int) -> int:
    """A tenant with N confirmed newsletter subscribers and a draft campaign to them; returns
    the campaign's id."""
    tenant = await tenants.create_tenant(
        conn,
        slug,
        name="Bench News",
        sender_address=f"news@{DOMAIN}",
        postal_address="Bench Inc.\n1 Example Street\n75001 Paris",
        contact_web="https://bench.example/contact",
        dkim_selector="bench",
        dkim_key_path=str(key_path),
    )
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="newsletter", name="Newsletter", kind="marketing"
    )
    tenant_key = tenant_hash_key(HASH_KEY, tenant["id"])
    for start in range(0, recipients, 10_000):
        emails = [
            f"person{i}@example{i % 97}.com" for i in range(start, min(recipients, start + 10_000))
        ]
        await BENCH_SQL.bulk_confirmed_subscribers(
            conn,
            tenant_id=tenant["id"],
            topic_id=topic["id"],
            emails=emails,
            keys=[suppression_key(tenant_key, e) for e in emails],
        )
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug="newsletter",
        name="Bench",
        template="newsletter",
        subject="Benchmark news for you",
        content=CONTENT,
    )
    campaign_id: int = campaign["id"]
    return campaign_id


def sink_settings(dsn: str, folder: Path, port: int) -> Settings:
    """The benchmark's settings, mailing through the sink at ``port``."""
    return dataclasses.replace(
        settings_for(dsn, folder, "https://optout.bench.example"),
        smtp=SmtpRelay("127.0.0.1", port, False, "off"),
    )


async def begin(dsn: str, folder: Path, campaign_id: int, port: int) -> int:
    """Start the benchmark's campaign (its deliveries are queued); returns the tenant's id."""
    conn = await connect(dsn)
    try:
        tenant = await tenants.get_tenant(conn, "bench")
        await campaigns.start(conn, sink_settings(dsn, folder, port), tenant["id"], campaign_id)
        tenant_id: int = tenant["id"]
        return tenant_id
    finally:
        await conn.close()


@dataclasses.dataclass(frozen=True)
class Started:
    """What starting the campaign measured, and what the rest of the run needs."""

    sample: list[dict[str, str]]  # messages built as the worker builds them
    enqueue_seconds: float  # campaigns.start: checks, enqueue, ANALYZE
    bare_seconds: float  # INSERT ... SELECT of the same rows into a bare copy
    enqueue_cpu: float | None  # the Postgres backend's CPU seconds for each (local server)
    bare_cpu: float | None
    tenant_id: int
    token: str  # an API token of the tenant, for the statistics watcher
    session: str  # a signed-in staff session of the tenant (marketing), for the dashboard


async def start_campaign(dsn: str, folder: Path, campaign_id: int, port: int) -> Started:
    """Start the campaign (timed, next to the bare insert of the same rows); build 50 messages
    as the worker builds them, for the raw baseline to send pre-built (same sizes, same
    headers, already signed)."""
    settings = sink_settings(dsn, folder, port)
    conn = await connect(dsn)
    try:
        tenant = await tenants.get_tenant(conn, "bench")
        backend = await BENCH_SQL.backend_pid(conn)
        cpu = backend_cpu(backend)
        started = time.perf_counter()
        await campaigns.start(conn, settings, tenant["id"], campaign_id)
        enqueue_seconds = time.perf_counter() - started
        enqueue_cpu = cpu_since(backend, cpu)
        await BENCH_SQL.bare_table(conn)
        cpu = backend_cpu(backend)
        started = time.perf_counter()
        await BENCH_SQL.bare_insert(conn, campaign_id=campaign_id)
        bare_seconds = time.perf_counter() - started
        bare_cpu = cpu_since(backend, cpu)
        await BENCH_SQL.drop_bare(conn)
        token, session = await readers(conn, tenant["id"])
        rows: list[Any] = [
            {
                "id": i + 1,
                "kind": "campaign",
                "tenant_id": tenant["id"],
                "campaign_id": campaign_id,
                "subscriber_id": i + 1,
                "template": None,
                "payload": {},
                "address": f"person{i}@example{i % 97}.com",
                "name": None,
            }
            for i in range(50)
        ]
        composer = Composer(settings)
        await composer.load(conn, rows)
        built = [composer.build(row) for row in rows]
    finally:
        await conn.close()
    return Started(
        [{"from": m.mail_from, "to": m.rcpt, "data": m.data.decode("ascii")} for m in built],
        enqueue_seconds,
        bare_seconds,
        enqueue_cpu,
        bare_cpu,
        tenant["id"],
        token,
        session,
    )


async def readers(
    conn: Any, tenant_id: int, email: str = "marketer@bench.example"
) -> tuple[str, str]:
    """Who reads the statistics: an API token of the tenant and a signed-in staff session of a
    marketing account in it (staff sign in as accounts; the session is started as a sign-in
    would start it)."""
    token = await api_tokens.create_token(
        conn, role="marketing", tenant_id=tenant_id, label=f"bench {email}"
    )
    link = await staff_accounts.demo_account(
        conn,
        name="Bench marketer",
        email=email,
        role="marketing",
        tenant_id=tenant_id,
        link_seconds=3600,
    )
    session = await staff_sessions.start(conn, link.account_id, max_seconds=12 * 3600)
    return token.secret, session


def backend_cpu(pid: int) -> float | None:
    """User+system CPU seconds of a Postgres backend on this machine (None when the server is
    elsewhere): unlike wall time, it hardly moves with the other work on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_since(pid: int, before: float | None) -> float | None:
    after = backend_cpu(pid)
    return None if before is None or after is None else after - before


class Watcher:
    """Reads the campaign's statistics every 0.2 s while the worker sends, in a thread of its
    own: ``campaigns.stats`` on a connection (what ``campaign status`` runs, without the
    interpreter's start) and ``GET /api/v1/tenants/bench/campaigns/{id}/stats`` of the real
    app over loopback HTTP. Keeps each read's latency in milliseconds."""

    LIMIT = 6 * 3600.0  # seconds: a bound on the loop whatever happens to the worker

    def __init__(
        self,
        dsn: str,
        folder: Path,
        campaign_id: int,
        started: Started,
        tenant_slug: str = "bench",
        interval: float = 0.2,
    ) -> None:
        self.dsn, self.folder, self.campaign_id, self.started = dsn, folder, campaign_id, started
        self.tenant_slug, self.interval = tenant_slug, interval
        self.status_ms: list[float] = []
        self.api_ms: list[float] = []
        self.dashboard_ms: list[float] = []
        # CPU milliseconds of this thread per read of each kind, summed: the client and the
        # app's handler (served from this thread's event loop), steadier than wall time on a
        # loaded machine. Postgres's side is not in it.
        self.cpu_ms = {"status": 0.0, "api": 0.0, "dashboard": 0.0}
        # The Postgres backend's CPU for the `campaign status` reads (its own connection),
        # summed; None when the server is not on this machine.
        self.status_pg_ms: float | None = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        import aiohttp
        from aiohttp import web

        from unsubscribe_web.app import create_app
        from unsubscribe_web.dashboard.workspace import app_cookie_name

        settings = settings_for(self.dsn, self.folder, "https://optout.bench.example")
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/api/v1/tenants/{self.tenant_slug}/campaigns/{self.campaign_id}/stats"
        headers = {"Authorization": f"Bearer {self.started.token}"}
        # The staff dashboard's page, signed in: the session's cookie, as a browser sends it.
        page = f"{base}/dashboard?tenant={self.tenant_slug}"
        cookie = {"Cookie": f"{app_cookie_name(runner.app)}={self.started.session}"}
        conn = await connect(self.dsn)
        backend: int = await BENCH_SQL.backend_pid(conn)
        deadline = time.monotonic() + self.LIMIT
        try:
            async with aiohttp.ClientSession() as http:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    began, cpu = time.perf_counter(), time.thread_time()
                    pg = backend_cpu(backend)
                    await campaigns.stats(conn, self.started.tenant_id, self.campaign_id)
                    self.status_ms.append((time.perf_counter() - began) * 1000)
                    self.cpu_ms["status"] += (time.thread_time() - cpu) * 1000
                    used = cpu_since(backend, pg)
                    if used is None or self.status_pg_ms is None:
                        self.status_pg_ms = None
                    else:
                        self.status_pg_ms += used * 1000
                    began, cpu = time.perf_counter(), time.thread_time()
                    async with http.get(url, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            self.errors.append(f"API answered {response.status}")
                    self.api_ms.append((time.perf_counter() - began) * 1000)
                    self.cpu_ms["api"] += (time.thread_time() - cpu) * 1000
                    began, cpu = time.perf_counter(), time.thread_time()
                    async with http.get(page, headers=cookie) as response:
                        body = await response.text()
                        # The campaign's line on the signed-in page (not the sign-in form).
                        if (
                            response.status != 200
                            or f'id="campaign-{self.campaign_id}"' not in body
                        ):
                            self.errors.append(f"dashboard answered {response.status}")
                    self.dashboard_ms.append((time.perf_counter() - began) * 1000)
                    self.cpu_ms["dashboard"] += (time.thread_time() - cpu) * 1000
                    await asyncio.sleep(self.interval)
        finally:
            await conn.close()
            await runner.cleanup()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def signature_cost(key_pem: bytes, rounds: int = 300) -> float:
    """Seconds of CPU for one RSA-2048 PKCS#1 v1.5 SHA-256 signature through OpenSSL."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    data = b"x" * 600
    started = time.process_time()
    for _ in range(rounds):
        key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return (time.process_time() - started) / rounds


class SampleReached:
    """True once the sink holds SAMPLE messages (asked at most once a second)."""

    def __init__(self, sink: Sink, sample: int) -> None:
        self.sink, self.sample, self.asked = sink, sample, 0.0

    def __call__(self) -> bool:
        if time.monotonic() - self.asked < 1.0:
            return False
        self.asked = time.monotonic()
        return int(self.sink.ask("stats")["count"]) >= self.sample


def run_child(
    command: list[str], env: dict[str, str], stop: Callable[[], bool] | None = None
) -> tuple[float, float, float]:
    """Run a child to completion: (wall seconds, user+sys CPU seconds, peak RSS in MB);
    ``stop`` true: the child is sent SIGTERM (once) and waited for."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env)
    status, cpu, peak_mb = wait_with_peak(process, stop)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} exited with {process.returncode}")
    return time.monotonic() - started, cpu, peak_mb


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one size's run measured."""

    recipients: int
    sample: int  # the worker's rate and the baseline are compared over this many messages
    messages: int  # what the worker sent: all N, or its first SAMPLE with --stop-at-sample
    worker_rate: float  # over the whole campaign
    worker_sample_rate: float  # over its first `sample` messages
    raw_rate: float
    worker_cpu: float
    raw_cpu: float
    signature: float
    worker_rss: float
    enqueue_seconds: float
    bare_seconds: float
    enqueue_cpu: float | None
    bare_cpu: float | None
    bytes_per_delivery: float
    counter_bytes: int
    status_ms: list[float]
    api_ms: list[float]
    dashboard_ms: list[float]

    @property
    def ratio(self) -> float:
        return self.worker_sample_rate / self.raw_rate


def run_size(
    n: int, concurrency: int, admin: str, sample_limit: int, stop_at_sample: bool = False
) -> Figures:
    """Set up N subscribers, send the campaign with the worker, then the raw baseline. With
    ``stop_at_sample`` the worker is stopped (SIGTERM: it finishes its batch) once the sink has
    the first SAMPLE messages, so a run at 1,000,000 measures its first SAMPLE in minutes."""
    sample_n = min(n, sample_limit)
    stopping = stop_at_sample and sample_n < n
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"setting up {n} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, folder, n))
        sink = Sink()
        try:
            started = asyncio.run(start_campaign(dsn, folder, campaign_id, sink.port))
            sample_path = folder / "sample.json"
            sample_path.write_text(json.dumps(started.sample))
            env = optout_env(
                dsn,
                sink.port,
                OPTOUT_RELAY_PER_SECOND="100000",
                OPTOUT_RELAY_PER_HOUR="100000000",
            )
            sink.ask("reset")
            sink.ask(f"mark {sample_n}")
            print("worker: sending the campaign ...", flush=True)
            worker_cmd = [sys.executable, "-m", "mailer.cli", "worker", "--quiet"]
            worker_cmd += ["--concurrency", str(concurrency)]
            if not stopping:
                worker_cmd.append("--until-idle")
            with Watcher(dsn, folder, campaign_id, started) as watcher:
                _, worker_cpu, worker_rss = run_child(
                    worker_cmd, env, stop=SampleReached(sink, sample_n) if stopping else None
                )
            if watcher.errors:
                raise SystemExit(f"statistics reads failed: {watcher.errors[:3]}")
            worker = sink.ask("stats")
            sink.ask("reset")
            print(f"baseline: raw aiosmtplib loop, {sample_n} messages ...", flush=True)
            raw_cmd = [sys.executable, "-m", "bench.send", "--raw", str(sink.port), str(sample_n)]
            raw_cmd += [str(concurrency), str(sample_path)]
            # The same statistics reads run beside the baseline too, so both sides of the
            # ratio share the machine with them alike.
            with Watcher(dsn, folder, campaign_id, started):
                _, raw_cpu, _ = run_child(raw_cmd, env)
            raw = sink.ask("stats")
        finally:
            sink.close()
        sent, size = asyncio.run(_after(dsn, campaign_id))
        signature = signature_cost((folder / "dkim.pem").read_bytes())
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin))
    expected = (
        (worker["count"] >= sample_n and sent == worker["count"])
        if stopping
        else (worker["count"] == n and sent == n)
    )
    if not expected or raw["count"] != sample_n:
        raise SystemExit(
            f"incomplete run: worker {worker['count']} (recorded {sent}), raw {raw['count']}"
        )
    messages = worker["count"]
    worker_rate = messages / max(worker["seconds"], 1e-9)
    return Figures(
        recipients=n,
        sample=sample_n,
        worker_rate=worker_rate,
        worker_sample_rate=(
            sample_n / max(worker["marked"], 1e-9) if sample_n < n else worker_rate
        ),
        raw_rate=sample_n / max(raw["seconds"], 1e-9),
        worker_cpu=worker_cpu,
        raw_cpu=raw_cpu * messages / sample_n,  # scaled to the worker's messages
        messages=messages,
        signature=signature,
        worker_rss=worker_rss,
        enqueue_seconds=started.enqueue_seconds,
        bare_seconds=started.bare_seconds,
        enqueue_cpu=started.enqueue_cpu,
        bare_cpu=started.bare_cpu,
        bytes_per_delivery=size["total"] / max(size["rows"], 1),
        counter_bytes=size["counters"],
        status_ms=watcher.status_ms,
        api_ms=watcher.api_ms,
        dashboard_ms=watcher.dashboard_ms,
    )


def queue_only(n: int, admin: str) -> tuple[Started, float]:
    """Set up N subscribers and start the campaign (timed, next to the bare insert); returns
    the enqueue's and the bare insert's seconds and the bytes per delivery. Nothing is sent."""
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"setting up {n} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, folder, n))
        # Port 9 (discard): starting checks that a relay is configured, and sends nothing.
        started = asyncio.run(start_campaign(dsn, folder, campaign_id, 9))
        _, size = asyncio.run(_after(dsn, campaign_id))
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin))
    return started, size["total"] / max(size["rows"], 1)


def report_queue(n: int, started: Started, bytes_per_delivery: float) -> None:
    print()
    print(f"recipients                 {n}")
    print_queue(started.enqueue_seconds, started.bare_seconds)
    print_queue_cpu(started.enqueue_cpu, started.bare_cpu)
    print(f"Postgres per delivery      {bytes_per_delivery:.0f} bytes (table, TOAST and indexes)")


def print_queue(enqueue: float, bare: float) -> None:
    print(f"campaign send (enqueue)    {enqueue:8.2f} s   (target < 20 s at 1,000,000)")
    print(f"bare INSERT ... SELECT     {bare:8.2f} s   (enqueue / bare = {enqueue / bare:.2f})")


def print_queue_cpu(enqueue: float | None, bare: float | None) -> None:
    if enqueue is not None and bare is not None:
        print(
            f"Postgres backend CPU       {enqueue:8.2f} s enqueue, {bare:.2f} s bare "
            f"(ratio {enqueue / max(bare, 0.01):.2f})"
        )


def report(f: Figures, concurrency: int) -> None:
    n = f.recipients
    m = f.messages  # CPU figures are per message the worker sent
    raw_cpu_per = f.raw_cpu / m
    overhead = (f.worker_cpu / m) / (f.signature + raw_cpu_per)
    over = f"its first {f.sample}" if f.sample < n else "all"
    print()
    print(f"recipients                 {n}  (concurrency {concurrency})")
    print_queue(f.enqueue_seconds, f.bare_seconds)
    print_queue_cpu(f.enqueue_cpu, f.bare_cpu)
    whole = "whole campaign" if m == n else f"{m} sent, stopped"
    print(f"worker, {whole:<19}{f.worker_rate:8.1f} msg/s")
    print(f"worker (claim/render/sign/send/record)  {f.worker_sample_rate:8.1f} msg/s over {over}")
    print(f"baseline (raw aiosmtplib, pre-built)    {f.raw_rate:8.1f} msg/s over {f.sample}")
    print(f"ratio                      {f.ratio:.2f}   (target >= 0.6)")
    print(
        f"worker CPU per 1,000       {f.worker_cpu / m * 1000:.2f} s "
        "(user+sys of the worker process)"
    )
    print(f"raw send CPU per 1,000     {raw_cpu_per * 1000:.2f} s")
    print(f"one RSA-2048 signature     {f.signature * 1000:.2f} ms")
    print(f"overhead factor            {overhead:.2f}   (target <= 1.5)")
    print(f"worker peak RSS            {f.worker_rss:.1f} MB")
    print(
        f"Postgres per delivery      {f.bytes_per_delivery:.0f} bytes (table, TOAST and indexes); "
        f"counter rows {f.counter_bytes / 1024:.0f} kB"
    )
    print_latencies(f.status_ms, f.api_ms, f.dashboard_ms)


def print_latencies(status_ms: list[float], api_ms: list[float], dashboard_ms: list[float]) -> None:
    for name, values in (
        ("campaign status", status_ms),
        ("admin API stats", api_ms),
        ("dashboard page", dashboard_ms),
    ):
        print(
            f"{name:<16} while sending: p50 {percentile(values, 50):.1f} ms, "
            f"p95 {percentile(values, 95):.1f} ms, max {max(values, default=0):.1f} ms "
            f"over {len(values)} reads   (target p95 < 100 ms)"
        )


async def _watch_token(dsn: str) -> Started:
    conn = await connect(dsn)
    try:
        tenant = await tenants.get_tenant(conn, "bench")
        token, session = await readers(conn, tenant["id"])
        return Started([], 0.0, 0.0, None, None, tenant["id"], token, session)
    finally:
        await conn.close()


def watch(dsn: str, campaign_id: int, seconds: float) -> None:
    """Only the statistics reads, for ``seconds``, against a running benchmark's database
    (``--watch DSN CAMPAIGN SECONDS``): the figures at the size a long run has reached."""
    started = asyncio.run(_watch_token(dsn))
    with (
        tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp,
        Watcher(dsn, Path(tmp), campaign_id, started) as watcher,
    ):
        time.sleep(seconds)
    if watcher.errors:
        raise SystemExit(f"statistics reads failed: {watcher.errors[:3]}")
    print_latencies(watcher.status_ms, watcher.api_ms, watcher.dashboard_ms)


def summary(results: list[Figures]) -> None:
    """Per size: median and spread (min-max) of the rates; the last size against the first."""
    by_size: dict[int, list[Figures]] = {}
    for f in results:
        by_size.setdefault(f.recipients, []).append(f)
    print()
    print(
        f"{'recipients':>10} {'runs':>4}  {'worker msg/s median (min-max)':<32} "
        f"{'raw msg/s median':<18} {'ratio median (min-max)':<24} peak RSS"
    )
    medians: dict[int, float] = {}
    for n, runs in by_size.items():
        rates = [f.worker_sample_rate for f in runs]
        ratios = [f.ratio for f in runs]
        medians[n] = statistics.median(rates)
        print(
            f"{n:>10} {len(runs):>4}  "
            f"{medians[n]:8.1f} ({min(rates):.1f}-{max(rates):.1f}){'':<11} "
            f"{statistics.median(f.raw_rate for f in runs):8.1f}{'':<10} "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}){'':<10} "
            f"{max(f.worker_rss for f in runs):.1f} MB"
        )
    sizes_run = list(by_size)
    if len(sizes_run) > 1:
        first, last = sizes_run[0], sizes_run[-1]
        change = (medians[last] / medians[first] - 1) * 100
        print(f"median worker rate {last} vs {first}: {change:+.1f}%   (target within 10%)")
        rss_first = max(f.worker_rss for f in by_size[first])
        rss_last = max(f.worker_rss for f in by_size[last])
        growth = (rss_last / rss_first - 1) * 100
        print(
            f"worker peak RSS growth     {rss_first:.1f} MB ({first}) -> "
            f"{rss_last:.1f} MB ({last}): {growth:+.1f}%   (target < 20%)"
        )


def sizes(text: str) -> list[int]:
    """``20000`` or ``20000,100000``: each size is run in turn, in a fresh database."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("expected positive counts separated by commas")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipients",
        type=sizes,
        default=[20_000],
        help="one size, or several separated by commas: the peak RSS growth is printed",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the list of sizes this many times, alternating"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=200_000,
        help="compare the worker and the raw loop over this many messages (default 200,000)",
    )
    parser.add_argument(
        "--queue-only",
        action="store_true",
        help="only time the queuing (campaign send) against the bare insert; send nothing",
    )
    parser.add_argument(
        "--stop-at-sample",
        action="store_true",
        help="stop the worker once it sent SAMPLE messages (a size above SAMPLE then takes "
        "minutes, not an hour; its rate, CPU and peak RSS are over those messages)",
    )
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--watch",
        nargs=3,
        metavar=("DSN", "CAMPAIGN", "SECONDS"),
        help="only read a running benchmark's statistics for SECONDS and print the latencies",
    )
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    if args.watch:
        dsn, campaign, seconds = args.watch
        watch(dsn, int(campaign), float(seconds))
        return
    if args.raw:
        port, count, concurrency, sample = args.raw
        run_raw(int(port), int(count), int(concurrency), Path(sample))
        return
    results: list[Figures] = []
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    with server_dsn() as admin:
        for round_ in range(max(1, args.repeat)):
            for n in args.recipients:
                print(f"\n--- run {round_ + 1} of {args.repeat}, {n} recipients", flush=True)
                if args.queue_only:
                    report_queue(n, *queue_only(n, admin))
                    print(f"load average: {os.getloadavg()}", flush=True)
                    continue
                results.append(
                    run_size(n, args.concurrency, admin, args.sample, args.stop_at_sample)
                )
                report(results[-1], args.concurrency)
                print(f"load average: {os.getloadavg()}", flush=True)
    if results:
        summary(results)


async def _after(dsn: str, campaign_id: int) -> tuple[int, dict[str, int]]:
    """Deliveries recorded sent, and the bytes the outbox takes."""
    conn = await connect(dsn)
    try:
        count: int = await BENCH_SQL.sent_count(conn, campaign_id=campaign_id)
        size = dict(await BENCH_SQL.delivery_bytes(conn))
        return count, size
    finally:
        await conn.close()


async def _sent(dsn: str, campaign_id: int) -> int:
    """Messages of the campaign recorded as sent (bench/workers.py waits on it)."""
    conn = await connect(dsn)
    try:
        count: int = await BENCH_SQL.sent_count(conn, campaign_id=campaign_id)
        return count
    finally:
        await conn.close()


async def _drop(admin_dsn: str, database: str = DATABASE) -> None:
    conn = await connect(admin_dsn)
    try:
        await drop_database(conn, database)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
