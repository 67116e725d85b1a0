"""The opt-out spool: one-click and landing-page unsubscribes taken while Postgres is down.

An entry is appended to ``DATA_DIR/spool/unsubscribes.jsonl`` and fsynced before the answer
(202) goes out, so an acknowledged opt-out survives a crash of this process (DESIGN G2). It is
replayed in order, through ``mailer.consent.unsubscribe`` (idempotent: a replayed entry that was
already applied writes nothing), as soon as Postgres answers and at every start.

Progress is a byte offset in ``unsubscribes.offset``, written after each applied entry, so a
crash during replay repeats at most one entry (harmless: it is idempotent). When everything is
applied both files are emptied. One spool belongs to one process: give each web process on a
machine its own OPTOUT_DATA_DIR.

A write or fsync that fails (a full disk: ENOSPC, EDQUOT, EIO) raises SpoolWriteFailed after
cutting the file back to its last whole entry: the caller must then answer 503, never 202,
since the opt-out is neither committed nor on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from mailer.consent import writer as consent
from mailer.db import UNAVAILABLE_ERRORS
from mailer.durable import fsync_directory
from mailer.errors import DatabaseUnavailable, NotFound

log = logging.getLogger(__name__)

SPOOL_FILE = "unsubscribes.jsonl"
OFFSET_FILE = "unsubscribes.offset"
# Postgres is asked again this often while entries wait.
RETRY_SECONDS = 2.0
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    *UNAVAILABLE_ERRORS,
    DatabaseUnavailable,
    TimeoutError,
)


class SpoolWriteFailed(Exception):
    """The opt-out could not be made durable in the spool (the disk is full, or failing)."""


@dataclass(frozen=True, slots=True)
class SpooledOptOut:
    """Ids only (no address): what the token said, how it came, when."""

    tenant_id: int
    subscriber_id: int
    topic_id: int
    source: str  # one_click or landing_page
    received_at: float


class Spool:
    """Append-only, fsynced file of opt-outs and its replay; one asyncio lock serialises both."""

    def __init__(self, data_dir: Path, *, write: Callable[[int, bytes], int] = os.write) -> None:
        self.directory = data_dir / "spool"
        self.path = self.directory / SPOOL_FILE
        self.offset_path = self.directory / OFFSET_FILE
        self._lock = asyncio.Lock()
        self.depth = 0
        # The one seam of the write path: tests put a full disk here (no mount, no root).
        self.write = write
        self._torn = False  # a failed write may have left part of a line behind

    def open(self) -> None:
        """Create the folder, drop a torn last line, count what is waiting (at start)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._drop_torn_tail()
        self._drop_stale_offset()
        self.depth = len(self._pending()[0])

    def _drop_stale_offset(self) -> None:
        # An offset past the end: a crash between the two steps of _clear. Everything was
        # applied; forget the offset before anything new is appended at the start.
        size = self.path.stat().st_size if self.path.exists() else 0
        if self._offset() > size:
            self.offset_path.unlink()

    def _offset(self) -> int:
        try:
            return int(self.offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _drop_torn_tail(self) -> None:
        # A line without its newline was cut by a crash before its fsync returned, so it was
        # never answered 202; cut it off, or the next entry would be appended onto it.
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            os.truncate(self.path, data.rfind(b"\n") + 1)
            log.warning(
                "spool: dropped a torn last line (%d bytes)", len(data) - data.rfind(b"\n") - 1
            )

    async def append(self, entry: SpooledOptOut) -> None:
        """Write and fsync one entry; returns only once it is on disk."""
        line = (json.dumps(asdict(entry), separators=(",", ":")) + "\n").encode()
        async with self._lock:
            if self._torn:
                self._drop_torn_tail()  # cut what a failed write left before appending
                self._torn = False
            # A few hundred microseconds of blocking I/O; a thread would not make it durable
            # sooner, and the outage path is not the fast path.
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    try:
                        self._write_all(fd, line)
                        os.fsync(fd)
                    except OSError:
                        self._cut_back(fd, size)
                        raise
                finally:
                    os.close(fd)
                if created:
                    fsync_directory(self.directory)
            except OSError as exc:
                log.error("spool write failed, opt-out not taken: %s", exc)
                raise SpoolWriteFailed(str(exc)) from exc
            self.depth += 1
        log.warning(
            "opt-out spooled: tenant=%s subscriber=%s topic=%s source=%s depth=%d",
            entry.tenant_id,
            entry.subscriber_id,
            entry.topic_id,
            entry.source,
            self.depth,
        )

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.write(fd, bytes(view))
            if written <= 0:
                raise OSError("spool write made no progress")
            view = view[written:]

    def _cut_back(self, fd: int, size: int) -> None:
        """Remove the part of a line a failed write left, so the next entry starts clean."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            self._torn = True  # cut at the next append, or at the next start
            log.error("spool could not cut a failed write back: %s", exc)

    async def replay(self, pool: asyncpg.Pool, *, timeout: float = 5.0) -> int:
        """Apply waiting entries in order; returns how many were applied. Stops (raising
        nothing) at the first entry Postgres cannot take, to try again later."""
        async with self._lock:
            entries, offsets = self._pending()
            applied = 0
            for entry, end in zip(entries, offsets, strict=True):
                try:
                    async with asyncio.timeout(timeout):
                        async with pool.acquire() as conn:
                            await _apply(conn, entry)
                except _UNAVAILABLE as exc:
                    log.warning("spool replay paused, Postgres unavailable: %s", exc)
                    break
                self._write_offset(end)
                applied += 1
                self.depth -= 1
            else:
                if entries:
                    self._clear()
            if applied:
                log.info("spool replayed: applied=%d waiting=%d", applied, self.depth)
            return applied

    def _pending(self) -> tuple[list[SpooledOptOut], list[int]]:
        """Entries after the recorded offset, each with the byte offset just after it."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        start = self._offset()
        entries: list[SpooledOptOut] = []
        offsets: list[int] = []
        position = start
        for raw in data[start:].splitlines(keepends=True):
            position += len(raw)
            if not raw.endswith(b"\n"):
                break  # a torn last line: its writer crashed before fsync, so never answered
            entries.append(SpooledOptOut(**json.loads(raw)))
            offsets.append(position)
        return entries, offsets

    def _write_offset(self, offset: int) -> None:
        temporary = self.offset_path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, str(offset).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.offset_path)

    def _clear(self) -> None:
        # Truncate the spool before the offset: a crash between the two leaves an offset past
        # the end of an empty file, which reads as nothing pending.
        os.truncate(self.path, 0)
        self.offset_path.unlink(missing_ok=True)
        self.depth = 0


async def _apply(conn: asyncpg.Connection, entry: SpooledOptOut) -> None:
    try:
        await consent.unsubscribe(
            conn,
            tenant_id=entry.tenant_id,
            subscriber_id=entry.subscriber_id,
            topic_id=entry.topic_id,
            source=entry.source,
            evidence=consent.Evidence(detail={"spooled_at": entry.received_at}),
        )
    except NotFound:
        # The topic went away while we were down: nothing left to unsubscribe from.
        log.warning("spooled opt-out for an unknown topic dropped: topic=%s", entry.topic_id)


async def replay_forever(spool: Spool, pool: asyncpg.Pool) -> None:
    """The background task: replay now (start), then whenever entries wait."""
    while True:
        if spool.depth:
            try:
                await spool.replay(pool)
            except Exception:  # a bug here must not stop later replays; it is logged
                log.exception("spool replay failed")
        await asyncio.sleep(RETRY_SECONDS)
