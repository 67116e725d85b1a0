"""Soak of `optout serve` under a steady mix of work, for ``--minutes`` (default 10).

    .venv/bin/python -m bench.soak [--minutes 10] [--subscribers 15000]

A fresh database ``optout_bench_send`` (bench/send.py's setup: a tenant with a DKIM key and N
confirmed subscribers) and an aiosmtpd sink in its own process; then one `optout serve`
process (web, inbound, worker) whose campaign to the N subscribers sends at 20 messages/s the
whole time, while this process drives, each second: 10 one-clicks, 5 landing pages, 1
preference save (the page, then its form), 1 sign-up (its confirmation mail goes out too) and
one inbound bounce (a DSN for a delivered message) every 2 s.

Printed: the serve process's RSS each minute and its growth after the first minute (the
baseline: the RSS at the end of minute 1; target < 10%), the one-click p99 of each minute
and its ratio to minute 1's (the same run's baseline; stable means near 1), requests that got
an unexpected answer, and ERROR/CRITICAL/Traceback lines and 5xx access-log lines in serve's
log (target: none). The log is kept in the folder printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import aiosmtplib
import aiosql

from bench.common import KEYS, optout_env, server_dsn
from bench.send import DOMAIN, Sink, _drop, begin, prepare
from mailer.db import connect
from mailer.tokens import CodeClaims, CodeKind, Keyring, LinkClaims, Purpose

BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "soak.sql", "asyncpg")
CAMPAIGN_RATE = 20  # messages per second (the relay budget)
MIX = {  # per second
    "one_click": 10.0,
    "landing": 5.0,
    "preferences": 1.0,
    "sign_up": 1.0,
    "bounce": 0.5,
}
EXPECTED = {"one_click": 200, "landing": 200, "preferences": 303, "sign_up": 200, "bounce": 250}
RSS_EVERY = 5.0
ERROR_LINE = re.compile(r" (ERROR|CRITICAL) |^Traceback")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
# A DSN as a relay sends it (RFC 3464): the address is unknown, for good.
DSN = """From: Mail Delivery System <mailer-daemon@mx.example.net>
To: bounces+{code}@{domain}
Subject: Undelivered Mail Returned to Sender
Message-ID: <soak-bounce-{delivery}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="soak-b1"

--soak-b1
Content-Type: text/plain

{address}: 550 5.1.1 user unknown
--soak-b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown
--soak-b1--
"""


@dataclass
class Load:
    """What the driver saw, by kind and by minute."""

    started: float = field(default_factory=time.monotonic)
    one_click_ms: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    done: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexpected: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rss_mb: list[tuple[float, float]] = field(default_factory=list)

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)


def serve_env(dsn: str, sink_port: int, data_dir: Path) -> dict[str, str]:
    return optout_env(
        dsn,
        sink_port,
        OPTOUT_DATA_DIR=str(data_dir),
        OPTOUT_RELAY_PER_SECOND=str(CAMPAIGN_RATE),
    )


def start_serve(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    command = [sys.executable, "-m", "mailer.cli", "serve", "--port", "0", "--inbound-port", "0"]
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for_addresses(log_path: Path, process: subprocess.Popen[bytes]) -> tuple[str, int]:
    for _ in range(600):  # up to 60 s
        text = log_path.read_text(errors="replace")
        web = re.search(r"web listening on (\S+)", text)
        inbound = re.search(r"inbound SMTP listening on \S+:(\d+)", text)
        if web and inbound and "worker sending through" in text:
            return web.group(1), int(inbound.group(1))
        if process.poll() is not None:
            raise SystemExit(f"optout serve exited with {process.returncode}:\n{text[-2000:]}")
        time.sleep(0.1)
    raise SystemExit("optout serve did not start within 60 s")


def stop_serve(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (serve drains its work), then kill if it has not stopped in 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS for the serve process")


class Driver:
    """The steady mix: each kind on its own clock, open loop (a slow answer does not slow the
    schedule), at most 64 requests in flight."""

    def __init__(
        self, web: str, inbound_port: int, tenant_id: int, subscribers: int, load: Load
    ) -> None:
        self.web = web
        self.inbound_port = inbound_port
        self.tenant_id = tenant_id
        self.subscribers = subscribers
        self.load = load
        self.keyring = Keyring(KEYS)
        self.topic_id = 1
        self.slots = asyncio.Semaphore(64)
        self.counters: dict[str, int] = defaultdict(int)
        self.http: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def next(self, kind: str) -> int:
        self.counters[kind] += 1
        return self.counters[kind]

    def link(self, purpose: Purpose, subscriber: int, topic: int = 0) -> str:
        return self.keyring.sign(LinkClaims.issue(purpose, self.tenant_id, subscriber, topic))

    async def one_click(self) -> int:
        assert self.http is not None
        # From the last subscriber down: the campaign mails from the first up.
        subscriber = self.subscribers - (self.next("one_click") % self.subscribers)
        token = self.link(Purpose.ONE_CLICK, subscriber, self.topic_id)
        started = time.perf_counter()
        async with self.http.post(
            f"{self.web}/u/{token}", data={"List-Unsubscribe": "One-Click"}
        ) as response:
            await response.read()
        self.load.one_click_ms[self.load.minute()].append((time.perf_counter() - started) * 1000)
        return response.status

    async def landing(self) -> int:
        assert self.http is not None
        subscriber = 1 + self.next("landing") % self.subscribers
        token = self.link(Purpose.ONE_CLICK, subscriber, self.topic_id)
        async with self.http.get(f"{self.web}/u/{token}") as response:
            await response.read()
            return response.status

    async def preferences(self) -> int:
        assert self.http is not None
        subscriber = 1 + (self.next("preferences") * 7) % self.subscribers
        url = f"{self.web}/p/{self.link(Purpose.PREFERENCES, subscriber)}"
        async with self.http.get(url) as page:
            text = await page.text()
        match = CSRF.search(text)
        if page.status != 200 or match is None:
            return page.status
        # Every other save leaves the topic (a ledger row), the rest keep it and rename.
        form = {"csrf": match.group(1), "action": "save", "name": f"Soak {subscriber}"}
        if self.counters["preferences"] % 2 == 0:
            form[f"topic-{self.topic_id}"] = "on"
        async with self.http.post(url, data=form, allow_redirects=False) as response:
            await response.read()
            return response.status

    async def sign_up(self) -> int:
        assert self.http is not None
        n = self.next("sign_up")
        # A different client each time, as from many people behind the balancer.
        forwarded = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        async with self.http.post(
            f"{self.web}/s/bench/newsletter",
            data={"email": f"soak{n}@signup{n % 13}.example", "age": "yes"},
            headers={"X-Forwarded-For": forwarded},
        ) as response:
            await response.read()
            return response.status

    async def bounce(self) -> int:
        # A DSN for a delivery of the campaign: ids run from 1 in a fresh database, and the
        # campaign sends in id order, so an early one has gone out.
        delivery = self.next("bounce")
        address = f"person{delivery - 1}@example{(delivery - 1) % 97}.com"
        code = self.keyring.make_code(CodeClaims(CodeKind.BOUNCE, (self.tenant_id, delivery)))
        message = DSN.format(code=code, domain=DOMAIN, delivery=delivery, address=address).replace(
            "\n", "\r\n"
        )
        try:
            # A DSN comes from the null reverse path (MAIL FROM:<>).
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=self.inbound_port, timeout=30, start_tls=False
            ) as client:
                await client.sendmail("", [f"bounces+{code}@{DOMAIN}"], message.encode("ascii"))
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
        return 250

    async def _one(self, kind: str, call: Callable[[], Awaitable[int]]) -> None:
        async with self.slots:
            try:
                status = await call()
            except Exception as exc:  # reported, never fatal: the soak goes on
                self.load.unexpected[kind].append(f"{type(exc).__name__}: {exc}"[:200])
                return
        if status == EXPECTED[kind]:
            self.load.done[kind] += 1
        else:
            self.load.unexpected[kind].append(str(status))

    async def stream(self, kind: str, rate: float, until: float) -> None:
        call = getattr(self, kind)
        interval = 1.0 / rate
        due = time.monotonic()
        while due < until:
            task = asyncio.create_task(self._one(kind, call))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def run(self, seconds: float, pid: int) -> None:
        until = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            self.http = http
            streams = [self.stream(kind, rate, until) for kind, rate in MIX.items()]
            await asyncio.gather(*streams, self.watch_rss(pid, until))
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=30)

    async def watch_rss(self, pid: int, until: float) -> None:
        while time.monotonic() < until:
            self.load.rss_mb.append((time.monotonic() - self.load.started, rss_mb(pid)))
            await asyncio.sleep(RSS_EVERY)
        self.load.rss_mb.append((time.monotonic() - self.load.started, rss_mb(pid)))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def log_errors(log_path: Path) -> tuple[list[str], list[str]]:
    """ERROR/CRITICAL/Traceback lines, and access-log lines (JSON) with a 5xx status."""
    errors: list[str] = []
    server_errors: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        if ERROR_LINE.search(line):
            errors.append(line)
        elif line.startswith("{"):
            with contextlib.suppress(ValueError):
                if int(json.loads(line).get("status", 0)) >= 500:
                    server_errors.append(line)
    return errors, server_errors


async def outcomes(dsn: str) -> dict[str, int]:
    conn = await connect(dsn)
    try:
        return dict(await BENCH_SQL.outcomes(conn))
    finally:
        await conn.close()


def report(load: Load, minutes: int, log_path: Path, sent: int, left: dict[str, int]) -> None:
    print()
    print(f"soak of optout serve: {minutes} min, load {os.getloadavg()}, {os.cpu_count()} cores")
    print("mix per second: " + ", ".join(f"{k} {v:g}" for k, v in MIX.items()))
    print(f"campaign at {CAMPAIGN_RATE} msg/s: {sent} messages reached the sink")
    print("in the database: " + ", ".join(f"{k} {v}" for k, v in left.items()))
    print("answered as expected: " + ", ".join(f"{k} {n}" for k, n in sorted(load.done.items())))
    baseline_p99 = percentile(load.one_click_ms.get(0, []), 0.99)
    print("minute  one-click p99   vs minute 1   requests   RSS at end of minute")
    worst = 0.0  # the slowest minute after the first, against the first
    for minute in range(minutes):
        values = load.one_click_ms.get(minute, [])
        p99 = percentile(values, 0.99)
        ratio = p99 / baseline_p99 if baseline_p99 else 0.0
        if minute:
            worst = max(worst, ratio)
        at = [mb for t, mb in load.rss_mb if t <= (minute + 1) * 60]
        print(
            f"{minute + 1:6d}  {p99:9.1f} ms   {ratio:8.2f}x   {len(values):8d}   "
            f"{at[-1] if at else 0:.1f} MB"
        )
    after_first = [mb for t, mb in load.rss_mb if t >= 60]
    base_rss = after_first[0] if after_first else load.rss_mb[-1][1]
    top = max(after_first or [base_rss])
    growth = (top / base_rss - 1) * 100
    print(
        f"RSS: {base_rss:.1f} MB after minute 1 (baseline), at most {top:.1f} MB after: "
        f"growth {growth:+.1f}%   (target < 10%)"
    )
    if minutes > 1:
        print(f"one-click p99: slowest later minute {worst:.2f}x minute 1 ({baseline_p99:.1f} ms)")
    unexpected = {k: v for k, v in load.unexpected.items() if v}
    print(f"unexpected answers: {sum(len(v) for v in unexpected.values())}", end="")
    for kind, answers in unexpected.items():
        print(f"\n  {kind}: {len(answers)}, e.g. {answers[:3]}", end="")
    print()
    errors, server_errors = log_errors(log_path)
    print(f"log: {len(errors)} ERROR/CRITICAL/Traceback lines, {len(server_errors)} 5xx answers")
    for line in (errors + server_errors)[:10]:
        print(f"  {line[:300]}")
    print(f"serve's log: {log_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="how long (default 10)")
    parser.add_argument(
        "--subscribers",
        type=int,
        default=0,
        help="campaign size (default: enough to keep sending for the whole soak)",
    )
    args = parser.parse_args()
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")
    subscribers = args.subscribers or int(CAMPAIGN_RATE * 60 * args.minutes * 1.25)
    keep = Path(tempfile.mkdtemp(prefix="optout-soak-"))
    log_path = keep / "serve.log"
    with server_dsn() as admin, tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        folder = Path(tmp)
        print(f"setting up {subscribers} subscribers ...", flush=True)
        dsn, campaign_id = asyncio.run(prepare(admin, folder, subscribers))
        sink = Sink()
        process: subprocess.Popen[bytes] | None = None
        try:
            tenant_id = asyncio.run(begin(dsn, folder, campaign_id, sink.port))
            process = start_serve(serve_env(dsn, sink.port, folder / "data"), log_path)
            web, inbound_port = wait_for_addresses(log_path, process)
            print(f"optout serve (pid {process.pid}) at {web}; soaking {args.minutes} min ...")
            load = Load()
            driver = Driver(web, inbound_port, tenant_id, subscribers, load)
            asyncio.run(driver.run(args.minutes * 60, process.pid))
            stop_serve(process)  # drains: the batch in hand is recorded before the count
            sent = sink.ask("stats")["count"]
            left = asyncio.run(outcomes(dsn))
        finally:
            if process is not None:
                stop_serve(process)
            sink.close()
        with contextlib.suppress(Exception):
            asyncio.run(_drop(admin))
    report(load, args.minutes, log_path, sent, left)


if __name__ == "__main__":
    main()
