"""Benchmark of campaign sending, end to end, against a raw aiosmtplib baseline in the same run.

    .venv/bin/python -m bench.send [--recipients 20000[,100000]] [--concurrency 4]

A fresh database ``optout_bench_send`` is migrated (on DATABASE_URL, or an embedded Postgres in
a temporary folder) with a tenant that has a 2048-bit DKIM key and N confirmed subscribers. An
aiosmtpd sink runs in its own process and times the first and last arrival. Then, each in its
own process so its CPU time and peak RSS are its own (``wait4``):

1. the real worker (``optout worker --until-idle``) sends the campaign: claim, render, sign,
   send, record;
2. the baseline: a plain aiosmtplib loop sending pre-built messages (same sizes, same number of
   connections) into the same sink.

Printed: messages/s of both and their ratio, the sender's CPU seconds per 1,000 messages
(user+sys), one RSA-2048 signature's cost through OpenSSL, the overhead factor (worker CPU per
message / (one signature + one raw send)), and the worker's peak RSS. With several sizes
(``--recipients 20000,100000``) each runs in turn in a fresh database, and the growth of the
worker's peak RSS from the first size to the last is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosql

from bench.common import HASH_KEY, optout_env, server_dsn, settings_for
from mailer import migrations, tenants
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

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()
            if not self.count:
                self.first = now
            self.last = now
            self.count += 1
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
            stats = {"count": counter.count, "seconds": counter.last - counter.first}
            # The monotonic clock is the host's: bench/workers.py spans several sinks with it.
            stats |= {"first": counter.first, "last": counter.last}
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


async def prepare(admin_dsn: str, folder: Path, recipients: int) -> tuple[str, int]:
    """A migrated database with the tenant, N subscribers and a started campaign."""
    admin = await connect(admin_dsn)
    try:
        await drop_database(admin, DATABASE)
        await create_database(admin, DATABASE)
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, DATABASE)
    settings = settings_for(dsn, folder, "https://optout.bench.example")
    conn = await connect(dsn)
    try:
        await migrations.migrate(conn, settings=settings)
        key_path = folder / "dkim.pem"
        key_path.write_bytes(generate_rsa_key_pem())
        tenant = await tenants.create_tenant(
            conn,
            "bench",
            name="Bench News",
            sender_address=f"news@{DOMAIN}",
            postal_address="Bench Inc.\n1 Example Street\n75001 Paris",
            dkim_selector="bench",
            dkim_key_path=str(key_path),
        )
        topic = await tenants.create_topic(
            conn, tenant["id"], slug="newsletter", name="Newsletter", kind="marketing"
        )
        tenant_key = tenant_hash_key(HASH_KEY, tenant["id"])
        for start in range(0, recipients, 10_000):
            emails = [
                f"person{i}@example{i % 97}.com"
                for i in range(start, min(recipients, start + 10_000))
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
        return dsn, campaign["id"]
    finally:
        await conn.close()


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


async def start_campaign(
    dsn: str, folder: Path, campaign_id: int, port: int
) -> list[dict[str, str]]:
    """Start the campaign; return 50 messages built as the worker builds them, for the raw
    baseline to send pre-built (same sizes, same headers, already signed)."""
    tenant_id = await begin(dsn, folder, campaign_id, port)
    settings = sink_settings(dsn, folder, port)
    conn = await connect(dsn)
    try:
        rows: list[Any] = [
            {
                "id": i + 1,
                "kind": "campaign",
                "tenant_id": tenant_id,
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
    return [{"from": m.mail_from, "to": m.rcpt, "data": m.data.decode("ascii")} for m in built]


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


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run a child to completion: (wall seconds, user+sys CPU seconds, peak RSS in MB)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} exited with {process.returncode}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one size's run measured."""

    recipients: int
    worker_rate: float
    raw_rate: float
    worker_cpu: float
    raw_cpu: float
    signature: float
    worker_rss: float


def run_size(n: int, concurrency: int, admin: str) -> Figures:
    """Set up N subscribers, send the campaign with the worker, then the raw baseline."""
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"setting up {n} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, folder, n))
        sink = Sink()
        try:
            sample = asyncio.run(start_campaign(dsn, folder, campaign_id, sink.port))
            sample_path = folder / "sample.json"
            sample_path.write_text(json.dumps(sample))
            env = optout_env(
                dsn,
                sink.port,
                OPTOUT_RELAY_PER_SECOND="100000",
                OPTOUT_RELAY_PER_HOUR="100000000",
            )
            sink.ask("reset")
            print("worker: sending the campaign ...", flush=True)
            worker_cmd = [sys.executable, "-m", "mailer.cli", "worker", "--until-idle", "--quiet"]
            worker_cmd += ["--concurrency", str(concurrency)]
            _, worker_cpu, worker_rss = run_child(worker_cmd, env)
            worker = sink.ask("stats")
            sink.ask("reset")
            print("baseline: raw aiosmtplib loop ...", flush=True)
            raw_cmd = [sys.executable, "-m", "bench.send", "--raw", str(sink.port), str(n)]
            raw_cmd += [str(concurrency), str(sample_path)]
            _, raw_cpu, _ = run_child(raw_cmd, env)
            raw = sink.ask("stats")
        finally:
            sink.close()
        sent = asyncio.run(_sent(dsn, campaign_id))
        signature = signature_cost((folder / "dkim.pem").read_bytes())
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin))
    if worker["count"] != n or sent != n or raw["count"] != n:
        raise SystemExit(
            f"incomplete run: worker {worker['count']} (recorded {sent}), raw {raw['count']}"
        )
    return Figures(
        recipients=n,
        worker_rate=n / max(worker["seconds"], 1e-9),
        raw_rate=n / max(raw["seconds"], 1e-9),
        worker_cpu=worker_cpu,
        raw_cpu=raw_cpu,
        signature=signature,
        worker_rss=worker_rss,
    )


def report(f: Figures, concurrency: int) -> None:
    n = f.recipients
    raw_cpu_per = f.raw_cpu / n
    overhead = (f.worker_cpu / n) / (f.signature + raw_cpu_per)
    print()
    print(f"recipients                 {n}  (concurrency {concurrency})")
    print(f"worker (claim/render/sign/send/record)  {f.worker_rate:8.1f} msg/s")
    print(f"baseline (raw aiosmtplib, pre-built)    {f.raw_rate:8.1f} msg/s")
    print(f"ratio                      {f.worker_rate / f.raw_rate:.2f}   (target >= 0.6)")
    print(
        f"worker CPU per 1,000       {f.worker_cpu / n * 1000:.2f} s "
        "(user+sys of the worker process)"
    )
    print(f"raw send CPU per 1,000     {raw_cpu_per * 1000:.2f} s")
    print(f"one RSA-2048 signature     {f.signature * 1000:.2f} ms")
    print(f"overhead factor            {overhead:.2f}   (target <= 1.5)")
    print(f"worker peak RSS            {f.worker_rss:.1f} MB")


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
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    if args.raw:
        port, count, concurrency, sample = args.raw
        run_raw(int(port), int(count), int(concurrency), Path(sample))
        return
    results: list[Figures] = []
    with server_dsn() as admin:
        for n in args.recipients:
            results.append(run_size(n, args.concurrency, admin))
            report(results[-1], args.concurrency)
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = (last.worker_rss / first.worker_rss - 1) * 100
        print()
        print(
            f"worker peak RSS growth     {first.worker_rss:.1f} MB ({first.recipients}) -> "
            f"{last.worker_rss:.1f} MB ({last.recipients}): {growth:+.1f}%   (target < 20%)"
        )


async def _sent(dsn: str, campaign_id: int) -> int:
    conn = await connect(dsn)
    try:
        count: int = await BENCH_SQL.sent_count(conn, campaign_id=campaign_id)
        return count
    finally:
        await conn.close()


async def _drop(admin_dsn: str) -> None:
    conn = await connect(admin_dsn)
    try:
        await drop_database(conn, DATABASE)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
