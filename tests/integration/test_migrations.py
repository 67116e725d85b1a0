"""Migrations and key fingerprints through the real `optout` command and the runner."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailer import migrations
from mailer.db import connect
from mailer.errors import MigrationError
from mailer.resources import MIGRATIONS_DIR
from tests.conftest import probes, subprocess_env

OPTOUT = [sys.executable, "-m", "mailer.cli"]


def optout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPTOUT, *args], env=env, capture_output=True, text=True, timeout=60)


async def start_optout(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *OPTOUT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def applied_names(dsn: str) -> list[str]:
    conn = await connect(dsn)
    try:
        return [row["name"] async for row in probes().applied_migrations(conn)]
    finally:
        await conn.close()


async def test_migrate_twice_applies_nothing_the_second_time(empty_db_dsn):
    env = subprocess_env(empty_db_dsn)
    first = optout("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_schema" in first.stdout
    second = optout("db", "migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "0 migration(s) applied" in second.stdout
    status = optout("db", "status", env=env)
    assert "applied  0001_schema" in status.stdout and "0 pending" in status.stdout


async def test_two_migrates_at_once_both_succeed_and_apply_each_file_once(empty_db_dsn):
    env = subprocess_env(empty_db_dsn)
    procs = [await start_optout("db", "migrate", env=env) for _ in range(2)]
    results = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = [out.decode() for out, _ in results]
    assert sum(out.count("applied 0001_schema") for out in outputs) == 1
    assert await applied_names(empty_db_dsn) == [m.name for m in migrations.available()]


async def test_a_different_hash_key_exits_2_with_one_line(db_dsn):
    env = subprocess_env(db_dsn) | {"OPTOUT_HASH_KEY": "another-hash-key-0123456789abcdefghij"}
    for command in (["tenant", "list"], ["db", "migrate"]):
        result = optout(*command, env=env)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "OPTOUT_HASH_KEY differs" in result.stderr


async def test_a_changed_link_key_exits_2_and_an_unknown_one_asks_for_migrate(db_dsn):
    changed = subprocess_env(db_dsn) | {"OPTOUT_SECRET_KEYS": "k1:" + "z" * 40}
    result = optout("tenant", "list", env=changed)
    assert result.returncode == 2 and "key 'k1' differs" in result.stderr
    rotated = subprocess_env(db_dsn)
    rotated["OPTOUT_SECRET_KEYS"] = "k2:" + "n" * 40 + "," + rotated["OPTOUT_SECRET_KEYS"]
    result = optout("tenant", "list", env=rotated)
    assert result.returncode == 2 and "run `optout db migrate`" in result.stderr
    assert optout("db", "migrate", env=rotated).returncode == 0
    assert optout("tenant", "list", env=rotated).returncode == 0


async def test_a_failed_migration_changes_nothing_and_names_file_and_line(
    empty_db_dsn, tmp_path: Path
):
    directory = tmp_path / "migrations"
    directory.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_schema.sql", directory)
    (directory / "0002_broken.sql").write_text(
        "-- adds a table, then fails\n"
        "CREATE TABLE half_done (id int);\n"
        "\n"
        "ALTER TABLE tenants\n"
        "    ADD COLUMN colour text NOT NULL DEFAULT 'x' REFERENCES no_such_table (id);\n"
    )
    conn = await connect(empty_db_dsn)
    try:
        with pytest.raises(MigrationError, match=r"0002_broken\.sql line [45]: .*no_such_table"):
            await migrations.migrate(conn, directory)
        assert await probes().table_exists(conn, name="half_done") is False
        assert await probes().table_exists(conn, name="tenants") is True
        names = [row["name"] async for row in probes().applied_migrations(conn)]
        assert names == ["0001_schema"]
    finally:
        await conn.close()


def test_statements_split_on_top_level_semicolons_only():
    text = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE a (x text DEFAULT ';');\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n"
        "/* block; comment */ SELECT 2"
    )
    parts = migrations.split_statements(text)
    assert [line for line, _ in parts] == [1, 3, 4]
    assert parts[1][1].endswith("$$ SELECT 1; $$")
