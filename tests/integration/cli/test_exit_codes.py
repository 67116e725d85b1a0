"""Every `optout` command keeps to the exit-code table of docs/commands.md and answers the
first-hour mistakes in one line: an unknown tenant (2), a database that does not exist (2,
naming it and the fix), a database never migrated (2, naming `optout db migrate`)."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from mailer.cli.main import build_parser
from mailer.db import connect, with_database
from tests.conftest import probes, subprocess_env
from tests.support.cli import leaf_commands, optout, optout_many

ROOT = Path(__file__).resolve().parents[3]
# A valid call of every command; {tenant}, {csv}, {md}, {out} and {journal} are filled in by _calls.
TENANT_COMMANDS: dict[str, str] = {
    "tenant update": "tenant update {tenant} --name 'New name'",
    "tenant show": "tenant show {tenant}",
    "tenant wording set": "tenant wording set {tenant} greeting de 'Guten Tag,'",
    "tenant wording clear": "tenant wording clear {tenant} greeting de",
    "tenant wording list": "tenant wording list {tenant}",
    "tenant export": "tenant export {tenant} --output {out}",
    "tenant purge": "tenant purge {tenant} --yes",
    "tenant purge-unconfirmed": "tenant purge-unconfirmed {tenant}",
    "topic create": "topic create alerts --tenant {tenant} --name Alerts",
    "topic list": "topic list --tenant {tenant}",
    "token create": "token create --role marketing --tenant {tenant}",
    "token list": "token list --tenant {tenant}",
    "staff invite": "staff invite mia@example.com --role marketing --tenant {tenant} --print-link",
    "staff list": "staff list --tenant {tenant}",
    "staff role": "staff role 1 --tenant {tenant} --role compliance",
    "import": "import {csv} --tenant {tenant} --topic news --lawful-basis consent "
    "--source 'trade fair' --age-attested",
    "import-correct": "import correct 1 --tenant {tenant} --lawful-basis contract",
    "suppressions import": "suppressions import {csv} --tenant {tenant} --reason manual",
    "suppressions export": "suppressions export --tenant {tenant}",
    "policy publish": "policy publish {md} --tenant {tenant} --effective 2031-01-01 "
    "--summary 'Clearer words'",
    "policy status": "policy status --tenant {tenant}",
    "policy proof": "policy proof --tenant {tenant} --version 1",
    "subprocessors list": "subprocessors list --tenant {tenant}",
    "subprocessors add": "subprocessors add --tenant {tenant} --name Relay --purpose 'Sends mail' "
    "--location EU",
    "subprocessors remove": "subprocessors remove --tenant {tenant} --name Relay",
    "requests list": "requests list --tenant {tenant}",
    "requests create": "requests create --tenant {tenant} --kind access --email ada@example.com",
    "requests extend": "requests extend 1 --tenant {tenant} --reason 'Many systems'",
    "requests complete": "requests complete 1 --tenant {tenant}",
    "partners export": "partners export --tenant {tenant}",
    "campaign create": "campaign create --tenant {tenant} --topic news --name N --subject S",
    "campaign list": "campaign list --tenant {tenant}",
    "campaign preview": "campaign preview 1 --tenant {tenant}",
    "campaign pause": "campaign pause 1 --tenant {tenant}",
    "campaign resume": "campaign resume 1 --tenant {tenant}",
    "campaign cancel": "campaign cancel 1 --tenant {tenant}",
    "campaign retry-failed": "campaign retry-failed 1 --tenant {tenant}",
    "campaign test": "campaign test 1 --tenant {tenant} --to proof@example.com",
    "campaign schedule": "campaign schedule 1 --tenant {tenant} --at 2031-01-01T09:00Z",
    "campaign send": "campaign send 1 --tenant {tenant} --no-follow",
    "campaign status": "campaign status 1 --tenant {tenant}",
    "consent history": "consent history --tenant {tenant} --email ada@example.com",
    "dkim records": "dkim records --tenant {tenant}",
    "events endpoint add": "events endpoint add --tenant {tenant} --url https://crm.example.com/in",
    "events endpoint list": "events endpoint list --tenant {tenant}",
    "events endpoint set": "events endpoint set 1 --tenant {tenant} --timeout 5 --concurrency 2",
    "events endpoint rotate": "events endpoint rotate 1 --tenant {tenant}",
    "events endpoint test": "events endpoint test 1 --tenant {tenant}",
    "events endpoint log": "events endpoint log 1 --tenant {tenant}",
    "events endpoint remove": "events endpoint remove 1 --tenant {tenant}",
    "events redeliver": "events redeliver --tenant {tenant} --endpoint 1 --since 2031-01-01T00:00Z",
    "events feed": "events feed --tenant {tenant}",
}
OTHER_COMMANDS: dict[str, str] = {
    "db migrate": "db migrate",
    "db status": "db status",
    "db maintain": "db maintain",
    "tenant create": "tenant create acme --name Acme --sender-address n@acme.example",
    "tenant list": "tenant list",
    "token expire": "token expire 1",
    "token revoke": "token revoke 1",
    "staff disable": "staff disable 1",
    "staff reset-2fa": "staff reset-2fa 1",
    "staff reset-password": "staff reset-password mia@example.com --print-link",
    "inbound": "inbound --port 0",
    "inbound reapply": "inbound reapply",
    "worker": "worker --until-idle",
    "web": "web --port 0",
    "serve": "serve --no-worker --port 0 --inbound-port 0",
    "journal reapply": "journal reapply {journal}",
    "events run": "events run --until-idle",
}
# Every command in a subprocess, three at a time: some 60 interpreter starts, each several
# seconds on a loaded shared machine, so these tests get more than the default 120 s.
EVERY_COMMAND_TIMEOUT = pytest.mark.timeout(300)
# Commands that never open DATABASE_URL: demo has its own database, dkim generate none.
NO_DATABASE = {"demo", "dkim generate"}


def _calls(commands: dict[str, str], tmp_path: Path, tenant: str) -> dict[str, list[str]]:
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nada@example.com,Ada\n")
    md = tmp_path / "policy.md"
    md.write_text("# Privacy\n\nWe keep your address.\n")
    journal = tmp_path / "journal"
    journal.mkdir(exist_ok=True)
    values = {
        "tenant": tenant,
        "csv": csv,
        "md": md,
        "out": tmp_path / "export.json",
        "journal": journal,
    }
    return {name: shlex.split(line.format(**values)) for name, line in commands.items()}


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines: list[str] = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_every_command_has_a_sample_call():
    """A new command must be added here, so the tests below cover it."""
    sampled = set(TENANT_COMMANDS) | set(OTHER_COMMANDS) | NO_DATABASE
    assert sampled == set(leaf_commands(build_parser()))


def exit_code_table() -> dict[int, str]:
    """docs/commands.md's table: exit code -> what it means."""
    page = (ROOT / "docs" / "commands.md").read_text()
    rows = re.findall(r"^\| `(\d+)` \| (.+?) \|$", page, re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def code_for(phrase: str) -> int:
    """The one exit code whose meaning in the table names ``phrase``."""
    codes = [code for code, meaning in exit_code_table().items() if phrase in meaning]
    assert len(codes) == 1, (phrase, codes)
    return codes[0]


def test_the_exit_code_table_is_in_the_commands_page():
    table = exit_code_table()
    assert table[0] == "done" and set(table) >= {0, 1, 2, 3}
    assert code_for("unknown tenant") == code_for("not migrated") == code_for("does not exist")


@EVERY_COMMAND_TIMEOUT
async def test_every_command_with_an_unknown_tenant_exits_2_naming_it(db_dsn, conn, tmp_path):
    """docs/commands.md: an unknown tenant is bad usage, exit 2, one line; nothing changes."""
    env = subprocess_env(db_dsn)
    before = await probes().audit_count(conn)
    calls = _calls(TENANT_COMMANDS, tmp_path, "nosuch")
    results = await asyncio.to_thread(optout_many, list(calls.values()), env=env)
    for name, result in zip(calls, results, strict=True):
        assert result.returncode == code_for("unknown tenant"), (name, result.stderr)
        assert "No tenant 'nosuch'" in _one_line(result), name
        assert result.stdout == "", name
    assert await probes().audit_count(conn) == before
    assert not (tmp_path / "export.json").exists()


@pytest.fixture
async def missing_db(server_dsn):
    """A DSN on the test server naming a database that does not exist, and that name."""
    name = f"optout_missing_{uuid.uuid4().hex[:8]}"
    return with_database(server_dsn, name), name


@EVERY_COMMAND_TIMEOUT
async def test_a_missing_database_is_one_line_naming_it_exit_2(missing_db, tmp_path):
    dsn, name = missing_db
    env = subprocess_env(dsn)
    calls = _calls(TENANT_COMMANDS | OTHER_COMMANDS, tmp_path, "acme")
    results = await asyncio.to_thread(optout_many, list(calls.values()), env=env)
    for command, result in zip(calls, results, strict=True):
        assert result.returncode == code_for("does not exist"), (command, result.stderr)
        line = _one_line(result)
        assert f"the database {name!r} does not exist" in line, command
        assert "create it" in line, command


@EVERY_COMMAND_TIMEOUT
async def test_an_unmigrated_database_says_to_migrate_and_migrate_migrates(empty_db_dsn, tmp_path):
    env = subprocess_env(empty_db_dsn)
    everything = TENANT_COMMANDS | OTHER_COMMANDS
    calls = _calls({k: v for k, v in everything.items() if k != "db migrate"}, tmp_path, "acme")
    results = await asyncio.to_thread(optout_many, list(calls.values()), env=env)
    for command, result in zip(calls, results, strict=True):
        assert result.returncode == code_for("not migrated"), (command, result.stderr)
        assert _one_line(result) == (
            "optout: the database is not migrated: run `optout db migrate` first"
        ), command
    # db status still lists what is pending before it says so; nothing was written
    status = results[list(calls).index("db status")]
    assert "pending  0001_schema" in status.stdout
    conn = await connect(empty_db_dsn)
    try:
        assert [r async for r in probes().table_names(conn)] == []
    finally:
        await conn.close()
    migrated = optout("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "the database is up to date" in migrated.stdout
    assert optout("tenant", "list", env=env).returncode == 0
    status = optout("db", "status", env=env)
    assert status.returncode == 0 and status.stdout.endswith("0 pending\n")
