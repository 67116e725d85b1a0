"""Create and drop whole databases (tests, benchmarks); DDL text lives in sql/admin."""

from __future__ import annotations

import asyncpg

from mailer.db import queries
from mailer.resources import ADMIN_SQL_DIR


async def _ddl(conn: asyncpg.Connection, name: str, **identifiers: str) -> str:
    # Identifiers cannot be bound as parameters: Postgres itself quotes them first.
    quoted = {
        key: await queries().admin.quote_ident(conn, name=value)
        for key, value in identifiers.items()
    }
    return (ADMIN_SQL_DIR / f"{name}.sql").read_text().format(**quoted)


async def create_database(
    conn: asyncpg.Connection, database: str, *, template: str | None = None
) -> None:
    if template is None:
        await conn.execute(await _ddl(conn, "create_empty_database", database=database))
    else:
        await conn.execute(
            await _ddl(conn, "create_database", database=database, template=template)
        )


async def drop_database(conn: asyncpg.Connection, database: str) -> None:
    await conn.execute(await _ddl(conn, "drop_database", database=database))
