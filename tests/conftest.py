"""Shared fixtures: one Postgres per session (embedded, or DATABASE_URL), a migrated template
database, and a fresh clone of it for every test that asks for one."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import aiosql
import asyncpg
import pytest

from mailer import migrations
from mailer.admin_db import create_database, drop_database
from mailer.config import Settings
from mailer.db import connect, start_embedded, with_database
from tests.support.dns_server import LoopbackDns, guard_system_resolver, start_dns
from tests.support.pg_proxy import PgProxy
from tests.support.smtp_sink import SmtpSink, start_sink

TEST_KEYS = (("k1", b"test-link-key-0123456789abcdefghijklmnop"),)
TEST_HASH_KEY = b"test-hash-key-0123456789abcdefghijklmnopq"


def make_settings(database_url: str | None, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        base_url="https://optout.test",
        secret_keys=TEST_KEYS,
        hash_key=TEST_HASH_KEY,
    )


@cache
def session_journal_dir() -> Path:
    """Where `optout` subprocesses of this test run journal (OPTOUT_JOURNAL_DIR is required
    with DATABASE_URL); never the user's own state folder."""
    return Path(tempfile.mkdtemp(prefix="optout-journal-"))


def subprocess_env(database_url: str) -> dict[str, str]:
    """Environment for an `optout` subprocess against a test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(
        DATABASE_URL=database_url,
        OPTOUT_JOURNAL_DIR=str(session_journal_dir()),
        OPTOUT_SECRET_KEYS=",".join(f"{k}:{v.decode()}" for k, v in TEST_KEYS),
        OPTOUT_HASH_KEY=TEST_HASH_KEY.decode(),
        OPTOUT_BASE_URL="https://optout.test",
    )
    return env


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin DSN of the server the tests use (its maintenance database)."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    server = start_embedded(tmp_path_factory.mktemp("embedded"))
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_name(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once per session; every test clones it (fast, isolated)."""
    name = f"optout_tpl_{uuid.uuid4().hex[:12]}"
    settings = make_settings(None, tmp_path_factory.mktemp("tpl"))

    async def build() -> None:
        admin = await connect(server_dsn)
        try:
            await create_database(admin, name)
        finally:
            await admin.close()
        conn = await connect(with_database(server_dsn, name))
        try:
            await migrations.migrate(conn, settings=settings)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await connect(server_dsn)
        try:
            await drop_database(admin, name)
        finally:
            await admin.close()

    asyncio.run(build())
    try:
        yield name
    finally:
        asyncio.run(drop())


@pytest.fixture
async def db_dsn(server_dsn: str, template_name: str) -> AsyncIterator[str]:
    """DSN of a fresh database cloned from the migrated template."""
    name = f"optout_t_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    try:
        await create_database(admin, name, template=template_name)
    finally:
        await admin.close()
    try:
        yield with_database(server_dsn, name)
    finally:
        admin = await connect(server_dsn)
        try:
            await drop_database(admin, name)
        finally:
            await admin.close()


@pytest.fixture
async def empty_db_dsn(server_dsn: str) -> AsyncIterator[str]:
    """DSN of a database with nothing in it, for tests of migrations themselves."""
    name = f"optout_e_{uuid.uuid4().hex[:12]}"
    admin = await connect(server_dsn)
    try:
        await create_database(admin, name)
    finally:
        await admin.close()
    try:
        yield with_database(server_dsn, name)
    finally:
        admin = await connect(server_dsn)
        try:
            await drop_database(admin, name)
        finally:
            await admin.close()


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="session", autouse=True)
def no_system_dns() -> Iterator[None]:
    """No test may ask the machine's resolver anything (DESIGN section 6: DNS on loopback)."""
    yield from guard_system_resolver()


@pytest.fixture(scope="session")
def dns_zone() -> Iterator[LoopbackDns]:
    """The loopback DNS server every test's inbound authentication asks."""
    zone = LoopbackDns()
    server = start_dns(zone)
    try:
        yield zone
    finally:
        server.stop()
        server.server.server_close()


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path, dns_zone: LoopbackDns) -> Settings:
    base = make_settings(db_dsn, tmp_path)
    inbound = dataclasses.replace(base.inbound, dns_resolver=("127.0.0.1", dns_zone.port))
    return dataclasses.replace(base, inbound=inbound)


@cache
def probes() -> Any:
    """Queries the tests use to look inside (tests/sql/probes.sql); never used by the app."""
    return aiosql.from_path(Path(__file__).parent / "sql" / "probes.sql", "asyncpg")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that touch Postgres are marked `db`, so CI can run them again on another server.
    for item in items:
        if "server_dsn" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A capture SMTP server on a free loopback port, in the test's own event loop."""
    sink, server = await start_sink()
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def pg_proxy(db_dsn: str) -> AsyncIterator[PgProxy]:
    """A TCP proxy in front of the test's database: ``cut()`` is an outage of Postgres as the
    app sees it (tests/support/pg_proxy.py), without stopping the shared server."""
    proxy = PgProxy(db_dsn)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
