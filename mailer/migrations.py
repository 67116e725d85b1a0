"""Apply sql/migrations/NNNN_name.sql in order, each once, each in its own transaction.

Two `migrate` processes at once are safe: an advisory lock serialises them. A failing
migration rolls back whole and the error names its file and line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from mailer.config import Settings
from mailer.db import queries, record_keys, rows
from mailer.errors import MigrationError
from mailer.resources import MIGRATIONS_DIR

FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationState:
    name: str
    applied_at: datetime | None
    changed: bool  # applied, but the file differs from what was applied


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not FILE_NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        found.append(Migration(path.stem, path))
    return found


async def status(
    conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR
) -> list[MigrationState]:
    q = queries().migrations
    try:
        applied = {row["name"]: row for row in await rows(q.applied(conn))}
    except asyncpg.UndefinedTableError:  # never migrated: everything pending, nothing written
        applied = {}
    states = []
    for migration in available(directory):
        row = applied.get(migration.name)
        states.append(
            MigrationState(
                name=migration.name,
                applied_at=row["applied_at"] if row else None,
                changed=row is not None and row["checksum"] != migration.checksum,
            )
        )
    return states


async def migrate(
    conn: asyncpg.Connection,
    directory: Path = MIGRATIONS_DIR,
    *,
    settings: Settings | None = None,
) -> list[str]:
    """Apply what is pending and record the key fingerprints of ``settings``.

    Returns the names applied (empty when up to date)."""
    q = queries().migrations
    # Lock first: even CREATE TABLE IF NOT EXISTS races when two processes run it at once.
    await q.lock(conn)
    try:
        await q.create_table(conn)
        done = {row["name"] for row in await rows(q.applied(conn))}
        applied = []
        for migration in available(directory):
            if migration.name in done:
                continue
            async with conn.transaction():
                await _run_file(conn, migration)
                await q.record(conn, name=migration.name, checksum=migration.checksum)
            applied.append(migration.name)
        if settings is not None:
            await record_keys(conn, settings)
        return applied
    finally:
        await q.unlock(conn)


async def _run_file(conn: asyncpg.Connection, migration: Migration) -> None:
    # One statement at a time, so an error can name the line it happened on.
    for start_line, statement in split_statements(migration.text):
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            line = start_line
            position = getattr(exc, "position", None)
            if position:
                line += statement[: int(position) - 1].count("\n")
            raise MigrationError(
                f"{migration.path.name} line {line}: {exc}; nothing of it was applied"
            ) from exc


def split_statements(text: str) -> list[tuple[int, str]]:
    """Split SQL on top-level semicolons, minding quotes, dollar quotes and comments.

    Returns (line number of the statement's first non-blank line, statement) pairs.
    """
    statements: list[tuple[int, str]] = []
    i, start, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            i = _index_or_end(text, "\n", i)
        elif text.startswith("/*", i):
            i = _index_or_end(text, "*/", i + 2) + 2
        elif ch in ("'", '"'):
            i = _index_or_end(text, ch, i + 1) + 1
        elif ch == "$" and (tag := re.match(r"\$[A-Za-z_]*\$", text[i:])):
            i = _index_or_end(text, tag.group(), i + len(tag.group())) + len(tag.group())
        elif ch == ";":
            _append_statement(statements, text, start, i)
            start = i = i + 1
        else:
            i += 1
    _append_statement(statements, text, start, n)
    return statements


def _index_or_end(text: str, needle: str, start: int) -> int:
    found = text.find(needle, start)
    return len(text) if found < 0 else found


def _append_statement(out: list[tuple[int, str]], text: str, start: int, end: int) -> None:
    chunk = text[start:end]
    code = re.sub(r"--[^\n]*", "", chunk).strip()
    if not code:
        return
    leading = len(chunk) - len(chunk.lstrip())
    line = text.count("\n", 0, start + leading) + 1
    out.append((line, chunk.strip()))
