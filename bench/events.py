"""Benchmark of event delivery (issue 22): N events delivered by mailer.event_delivery.Sender
to a receiving aiohttp server on loopback, against a bare aiohttp client loop posting the same
signed payloads to the same server, in the same run.

    .venv/bin/python -m bench.events [--events 100000] [--rounds 1]

A database ``optout_bench_events`` (on DATABASE_URL, or an embedded Postgres in a temporary
folder) gets a tenant, one endpoint and N events. The baseline runs as many client loops as
the sender's per-endpoint concurrency, so both keep the same number of requests in flight;
the sender also claims, reads, signs and records every delivery in Postgres. The receiver,
the client and Postgres share the machine. Prints events per second of both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import aiosql
from aiohttp import web

from bench.common import server_dsn, settings_for
from mailer import event_endpoints, events, migrations, tenants
from mailer.admin_db import create_database, drop_database
from mailer.db import connect, create_pool, queries, rows, with_database
from mailer.event_delivery import Sender, encode, headers, load_endpoint

DATABASE = "optout_bench_events"
BENCH_SQL = aiosql.from_path(Path(__file__).parent / "sql" / "events.sql", "asyncpg")


class Receiver:
    """Counts what it receives and answers 204, as a CRM's webhook endpoint would."""

    def __init__(self) -> None:
        self.count = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def bare_loop(url: str, bodies: list[tuple[bytes, dict[str, str]]], loops: int) -> float:
    """Events per second of plain aiohttp POSTs of the same payloads, ``loops`` at a time."""
    queue = list(reversed(bodies))

    async def loop(session: aiohttp.ClientSession) -> None:
        while queue:
            body, head = queue.pop()
            async with session.post(url, data=body, headers=head) as response:
                await response.read()
                assert response.status == 204

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(loop(session) for _ in range(loops)))
    return len(bodies) / (time.perf_counter() - started)


async def run(dsn: str, count: int, rounds: int) -> None:
    admin = await connect(dsn)
    await drop_database(admin, DATABASE)
    await create_database(admin, DATABASE)
    db = with_database(dsn, DATABASE)
    try:
        with tempfile.TemporaryDirectory() as folder:
            base = settings_for(db, Path(folder))
            settings = dataclasses.replace(
                base,
                events=dataclasses.replace(
                    base.events, allow_http_loopback=True, batch_size=500, poll_seconds=0.05
                ),
            )
            conn = await connect(db)
            await migrations.migrate(conn, settings=settings)
            tenant = await tenants.create_tenant(
                conn, "bench", name="Bench", sender_address="n@bench.example"
            )
            receiver = Receiver()
            await receiver.start()
            url = f"http://127.0.0.1:{receiver.port}/hooks"
            created = await event_endpoints.create(conn, settings, tenant_id=tenant["id"], url=url)
            endpoint = await load_endpoint(conn, settings, created.endpoint["id"])
            assert endpoint is not None
            pool = await create_pool(db, max_size=4)
            ours, bare = [], []
            try:
                for _ in range(rounds):
                    first = await BENCH_SQL.seed_events(conn, tenant_id=tenant["id"], n=count)
                    assert first == count
                    fresh = await rows(
                        queries().events.delivery_payloads(
                            conn,
                            event_ids=[
                                r["event_id"]
                                for r in await rows(
                                    queries().events.delivery_states(
                                        conn, tenant_id=tenant["id"], endpoint_id=endpoint.id
                                    )
                                )
                                if r["state"] == "pending"
                            ],
                        )
                    )
                    now = time.time()
                    bodies = []
                    for event in fresh:
                        body = encode(events.payload(event))
                        msg_id = events.event_id_text(event["id"])
                        bodies.append((body, headers(msg_id, body, endpoint.secrets, now)))
                    bare.append(await bare_loop(url, bodies, settings.events.concurrency))
                    started = time.perf_counter()
                    async with Sender(pool, settings) as sender:
                        await sender.drain()
                    ours.append(count / (time.perf_counter() - started))
                    done = await BENCH_SQL.delivered(conn, endpoint_id=endpoint.id)
                    assert done % count == 0, done
            finally:
                await pool.close()
                await receiver.stop()
                await conn.close()
    finally:
        await drop_database(admin, DATABASE)
        await admin.close()
    load = os.getloadavg()[0]
    delivered, baseline = statistics.median(ours), statistics.median(bare)
    print(f"events delivered:          {count:,} x {rounds} round(s), load average {load:.1f}")
    print(f"bare aiohttp client loop:  {baseline:,.0f} events/s")
    print(f"optout event delivery:     {delivered:,.0f} events/s")
    print(f"ratio:                     {delivered / baseline:.2f} (target >= 0.5)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with server_dsn() as dsn:
        asyncio.run(run(dsn, args.events, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
