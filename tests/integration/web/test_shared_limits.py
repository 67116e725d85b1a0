"""Rate limits shared by every web process (issue 21): counted in Postgres under keyed hashes,
so two `optout web` processes behind a balancer enforce one limit, and the limit table never
holds the IP or the address it counts."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from mailer.db import create_pool, rows
from mailer.limits import Limit, RateLimits
from mailer.sending.worker import Worker
from tests.conftest import TEST_HASH_KEY, probes, subprocess_env
from tests.support.mailer_env import mail_settings
from tests.support.processes import free_port, web_process
from tests.support.web import seed
from unsubscribe_web.dashboard.accounts import SIGN_INS_PER_IP
from unsubscribe_web.public.subscribe import SIGNUP_PER_ADDRESS, SIGNUP_PER_IP

FLOODER = "203.0.113.7"
OTHER = "198.51.100.23"
ADDRESS = "Again.Person@Example.org"


@pytest.fixture
async def world(conn):
    return await seed(conn, subscribers=1)


@contextlib.asynccontextmanager
async def two_web_processes(db_dsn, tmp_path):
    base = subprocess_env(db_dsn)
    ports = free_port(), free_port()
    async with contextlib.AsyncExitStack() as stack:
        for n, port in enumerate(ports):
            # Each process its own data folder (its spool), as on two machines.
            env = base | {"OPTOUT_DATA_DIR": str(tmp_path / f"web{n}")}
            await stack.enter_async_context(web_process(env, port))
        yield [f"http://127.0.0.1:{port}" for port in ports]


async def sign_up(http, base, email, ip):
    # The processes listen on loopback, as behind a local balancer: they take the client's
    # address from the balancer's X-Forwarded-For.
    async with http.post(
        f"{base}/s/acme/news",
        data={"email": email, "age": "yes"},
        headers={"X-Forwarded-For": ip},
    ) as response:
        await response.read()
        return response.status


async def test_two_web_processes_share_one_sign_up_limit(conn, world, db_dsn, tmp_path):
    """Sign-ups alternate between two `optout web` processes on one database: the per-IP
    limit refuses the request past the limit whichever process gets it, the per-address
    limit sends no more confirmations than it allows in total, and the limit rows hold keyed
    hashes only: no IP, no address, in any column."""
    async with two_web_processes(db_dsn, tmp_path) as bases, aiohttp.ClientSession() as http:
        statuses = [
            await sign_up(http, bases[n % 2], f"p{n}@example.org", FLOODER)
            for n in range(SIGNUP_PER_IP.count + 4)
        ]
        # Per process the flooder would have had twice the limit; together they allow it once.
        assert statuses == [200] * SIGNUP_PER_IP.count + [429] * 4
        queued_before = len(await rows(probes().transactional_deliveries(conn)))
        assert queued_before == SIGNUP_PER_IP.count

        # Another client, one mailbox, both processes: confirmations stop at the limit.
        for n in range(SIGNUP_PER_ADDRESS.count * 2 + 1):
            email = ADDRESS if n % 2 else ADDRESS.lower()  # the same mailbox, spelt two ways
            assert await sign_up(http, bases[n % 2], email, OTHER) == 200
        deliveries = await rows(probes().transactional_deliveries(conn))
        assert len(deliveries) - queued_before == SIGNUP_PER_ADDRESS.count

        # Dashboard sign-ins from one address, spread over both processes, are one count too.
        login = []
        for n in range(SIGN_INS_PER_IP.count + 1):
            async with http.post(
                f"{bases[n % 2]}/dashboard/login",
                data={"token": "optout_wrong"},
                headers={"X-Forwarded-For": OTHER},
            ) as response:
                login.append(response.status)
        assert login == [401] * SIGN_INS_PER_IP.count + [429]

    limit_rows = await rows(probes().rate_limit_rows(conn))
    assert {r["name"] for r in limit_rows} == {"signup_ip", "signup_address", "dashboard_login"}
    assert [c["column_name"] async for c in probes().rate_limit_columns(conn)] == [
        "name",
        "subject_key",
        "window_start",
        "window_end",
        "hits",
    ]
    plain = [FLOODER, OTHER, ADDRESS.lower(), "example.org", "again.person"]
    for row in limit_rows:
        text = (row["whole"] + row["subject_key_hex"]).lower()
        assert not [p for p in plain if p in text], row["whole"]
        assert len(row["subject_key_hex"]) == 64
    # The hash is keyed: without OPTOUT_HASH_KEY the stored value cannot be recomputed from
    # a guessed IP, and a different key gives a different value.
    limits = RateLimits(TEST_HASH_KEY)
    stored = {r["subject_key_hex"] for r in limit_rows}
    assert limits.subject_key(SIGNUP_PER_IP, FLOODER).hex() in stored
    assert RateLimits(b"x" * 40).subject_key(SIGNUP_PER_IP, FLOODER).hex() not in stored


async def test_the_regular_job_deletes_ended_windows(conn, settings, smtp_sink):
    """A limit row whose window has ended is deleted by the worker's housekeeping; a live one
    stays, and still counts."""
    limits = RateLimits(settings.hash_key)
    brief = Limit("signup_ip", count=1, window=0.2)
    lasting = Limit("dashboard_login", count=1, window=600)
    assert await limits.allow(conn, brief, FLOODER)
    assert await limits.allow(conn, lasting, FLOODER)
    assert not await limits.allow(conn, lasting, FLOODER)
    await asyncio.sleep(0.3)
    # The ended window counts for nothing even before the purge...
    assert await limits.allow(conn, brief, OTHER)
    await asyncio.sleep(0.3)
    worker_settings = mail_settings(settings, smtp_sink.port)
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        await Worker(pool, worker_settings).run(until_idle=True)
    finally:
        await pool.close()
    left = await rows(probes().rate_limit_rows(conn))
    assert [(r["name"], r["live"]) for r in left] == [("dashboard_login", True)]
    assert not await limits.allow(conn, lasting, FLOODER)
