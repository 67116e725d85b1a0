"""The consent journal: opt-outs, suppressions, lifts and erasures, also written outside the
database, so that a restore from a backup cannot bring back anyone who left or was erased.

One append-only file per host and process in OPTOUT_JOURNAL_DIR, one JSON line per event:
ids, the event, the database's transaction time and the keyed hashes of every address the
person had; never a plain address, name or IP. Each line carries a sequence number and a
hash chained over the previous line, and the database records each file's last sequence and
head hash (table journal_heads), so an edited line, or a file cut short below what the
database recorded, is found by `optout journal reapply`.

Order against the commit (mailer.db.JournalConnection does it for every transaction): the
lines of a transaction are prepared, its file's head is recorded in the same transaction, the
transaction commits, and only then are the lines written and fsynced, at most once per
transaction (transactions that commit while an fsync is running share the next one, off the
event loop), before the transaction's caller goes on. So an event whose transaction rolled
back is never journalled. A crash between the commit and
the fsync leaves the database's head ahead of the file, which `reapply` reports as a file cut
short; a COMMIT that fails or whose outcome is unknown moves the process to a new file, so
the same sequence numbers are never written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".journal"
FORMAT = 1
# The events a journal line may hold; `reapply` knows how to apply each one again.
EVENTS = frozenset(
    {
        "withdraw_topic",  # left one topic
        "withdraw_marketing",  # unsubscribed from all marketing (a marketing suppression)
        "withdraw_partner",  # withdrew consent to partner sharing
        "suppress",  # a suppression was added or widened (bounce, complaint, erasure, import)
        "lift_suppression",  # the person's own confirmed opt-in lifted a marketing suppression
        "erase",  # the person was erased
    }
)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One event as the consent core records it, before it has a place in a file."""

    tenant_id: int
    subscriber_id: int | None
    event: str
    keys: tuple[bytes, ...]  # keyed hashes of every address the person had
    topic_id: int | None = None
    scope: str | None = None
    reason: str | None = None
    source: str | None = None

    def body(self, seq: int, prev: bytes, time: dt.datetime) -> dict[str, Any]:
        if self.event not in EVENTS:
            raise ValueError(f"unknown journal event {self.event!r}")
        return {
            "v": FORMAT,
            "seq": seq,
            "prev": prev.hex(),
            "time": time.astimezone(dt.UTC).isoformat(),
            "tenant": self.tenant_id,
            "subscriber": self.subscriber_id,
            "event": self.event,
            "keys": sorted({k.hex() for k in self.keys}),
            "topic": self.topic_id,
            "scope": self.scope,
            "reason": self.reason,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Prepared:
    """The lines of one transaction, numbered and chained, not yet on disk."""

    data: bytes
    last_seq: int
    head: bytes


def genesis(file_name: str) -> bytes:
    """The chain's start: bound to the file's name, so lines cannot move between files."""
    return hashlib.sha256(b"optout-journal-v1:" + file_name.encode()).digest()


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def chain(prev: bytes, body_bytes: bytes) -> bytes:
    return hashlib.sha256(prev + body_bytes).digest()


def file_name_for(host: str, pid: int, started: dt.datetime) -> str:
    safe_host = _NAME_UNSAFE.sub("-", host).strip("-.")[:60] or "host"
    stamp = started.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{safe_host}-{pid}-{stamp}-{secrets.token_hex(3)}{SUFFIX}"


class Journal:
    """This process's journal file: numbering, chaining, one write and fsync per transaction.

    The file is created at the first write, so commands that change no consent leave none."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broken_files: list[str] = []
        self._lock: asyncio.Lock | None = None
        # Committed lines waiting for their fsync, in order: (file, bytes).
        self._queued: list[tuple[Path, bytes]] = []
        self._ticket = 0  # transactions queued so far
        self._synced = 0  # ... of which on disk
        self._flushing: asyncio.Future[None] | None = None
        self._new_file()

    def _new_file(self) -> None:
        self.name = file_name_for(socket.gethostname(), os.getpid(), dt.datetime.now(dt.UTC))
        self.path = self.directory / self.name
        self.seq = 0
        self.head = genesis(self.name)

    @property
    def lock(self) -> asyncio.Lock:
        """Held from recording the head in the transaction until its lines are on disk, so the
        file's lines are in the order of the heads the database recorded."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def prepare(self, events: Sequence[JournalEvent], time: dt.datetime) -> Prepared:
        seq, head = self.seq, self.head
        out = bytearray()
        for event in events:
            seq += 1
            body = event.body(seq, head, time)
            encoded = _encode(body)
            head = chain(head, encoded)
            body["hash"] = head.hex()
            out += _encode(body) + b"\n"
        return Prepared(bytes(out), seq, head)

    def write(self, prepared: Prepared) -> None:
        """Append and fsync the lines of a committed transaction, now (one process, no
        concurrency: tests and tools); servers use ``enqueue`` and ``durable``."""
        self.enqueue(prepared)
        self._synced = self._ticket
        batch, self._queued = self._queued, []
        self._after_write(_write_batch(batch))

    def enqueue(self, prepared: Prepared) -> int:
        """Take the committed lines in file order (under ``lock``); returns the ticket to
        wait on with ``durable``."""
        self._queued.append((self.path, prepared.data))
        self.seq, self.head = prepared.last_seq, prepared.head
        self._ticket += 1
        return self._ticket

    async def durable(self, ticket: int) -> None:
        """Return once the lines of ``ticket`` are written and fsynced. One fsync covers every
        transaction queued by then (group commit); it runs in a thread, so other transactions
        commit meanwhile, and a cancelled waiter does not cancel it."""
        while self._synced < ticket:
            if self._flushing is None or self._flushing.done():
                self._flushing = asyncio.ensure_future(self._flush())
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        batch, upto = self._queued, self._ticket
        self._queued = []
        if batch:
            self._after_write(await asyncio.to_thread(_write_batch, batch))
        self._synced = max(self._synced, upto)

    def _after_write(self, failed: set[Path]) -> None:
        # A failed write leaves the database's head ahead of the file (reported by
        # `reapply`); the next transaction goes to a new file rather than reuse numbers.
        if self.path in failed:
            self.abandon()

    def abandon(self) -> None:
        """Leave this file for a new one (after a failed write or a COMMIT of unknown outcome)."""
        self.broken_files.append(self.name)
        self._new_file()


def _write_batch(batch: list[tuple[Path, bytes]]) -> set[Path]:
    """Append each file's lines in one write and one fsync; returns the files that failed."""
    by_file: dict[Path, list[bytes]] = {}
    for path, data in batch:
        by_file.setdefault(path, []).append(data)
    failed: set[Path] = set()
    for path, chunks in by_file.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"".join(chunks))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(path.parent)
        except OSError:
            log.exception("journal write failed file=%s: moving to a new file", path.name)
            failed.add(path)
    return failed


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the process's journal ----------------------------------------------------------------

_current: Journal | None = None


def open_journal(directory: Path) -> Journal:
    """Make ``directory``'s new file this process's journal (the CLI does it at start)."""
    global _current
    _current = Journal(directory)
    return _current


def close_journal() -> None:
    global _current
    _current = None


def current() -> Journal | None:
    return _current


@contextlib.contextmanager
def journal_in(directory: Path) -> Iterator[Journal]:
    """This process journals to ``directory`` inside the block (tests, commands)."""
    previous = _current
    journal = open_journal(directory)
    try:
        yield journal
    finally:
        _set(previous)


def _set(journal: Journal | None) -> None:
    global _current
    _current = journal


# --- reading and checking -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One intact line of a journal file."""

    file: str
    seq: int
    time: dt.datetime
    tenant_id: int
    subscriber_id: int | None
    event: str
    keys: tuple[bytes, ...]
    topic_id: int | None
    scope: str | None
    reason: str | None
    source: str | None


@dataclass(slots=True)
class FileCheck:
    """What one file holds: its intact lines, and what is wrong with the rest."""

    name: str
    entries: list[Entry] = field(default_factory=list)
    hashes: dict[int, bytes] = field(default_factory=dict)  # seq -> head hash after that line
    problems: list[str] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq if self.entries else 0


def read_file(path: Path) -> FileCheck:
    """Check the chain line by line; stop at the first line that does not belong to it."""
    check = FileCheck(path.name)
    data = path.read_bytes()
    head = genesis(path.name)
    lines = data.split(b"\n")
    torn = lines.pop()  # after the last newline: empty unless the last write was cut
    for number, line in enumerate(lines, start=1):
        expected = check.last_seq + 1
        problem = None
        try:
            body = json.loads(line)
            if not isinstance(body, dict):
                raise ValueError("not an object")
            stated = bytes.fromhex(body.pop("hash"))
            if body.get("seq") != expected or body.get("prev") != head.hex():
                problem = f"line {number} is not seq {expected} of this file's chain"
            elif chain(head, _encode(body)) != stated:
                problem = f"line {number} (seq {expected}) was edited: its hash does not match"
            else:
                entry = _entry(path.name, body)
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"line {number} (seq {expected}) is damaged: {exc}"
        if problem is not None:
            rest = len(lines) - number + 1
            check.problems.append(
                f"{path.name}: {problem}; {rest} line(s) from there on were not applied"
            )
            return check
        check.entries.append(entry)
        head = stated
        check.hashes[entry.seq] = head
    if torn:
        check.problems.append(
            f"{path.name}: the last line is incomplete ({len(torn)} bytes); it was not applied"
        )
    return check


def _entry(file: str, body: dict[str, Any]) -> Entry:
    event = body["event"]
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    time = dt.datetime.fromisoformat(body["time"])
    return Entry(
        file=file,
        seq=int(body["seq"]),
        time=time,
        tenant_id=int(body["tenant"]),
        subscriber_id=None if body["subscriber"] is None else int(body["subscriber"]),
        event=event,
        keys=tuple(bytes.fromhex(k) for k in body["keys"]),
        topic_id=None if body["topic"] is None else int(body["topic"]),
        scope=body["scope"],
        reason=body["reason"],
        source=body["source"],
    )


def journal_files(directories: Iterable[Path]) -> list[Path]:
    """Every journal file of the folders, each name once (the same file copied to two
    folders is read once; two different files of one name are an error)."""
    seen: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such folder")
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            other = seen.get(path.name)
            if other is not None and other.read_bytes() != path.read_bytes():
                raise ValueError(f"{path.name} is in {other.parent} and {directory}, different")
            seen.setdefault(path.name, path)
    return [seen[name] for name in sorted(seen)]


def compare_with_head(check: FileCheck, last_seq: int, head_hash: bytes) -> str | None:
    """What is wrong when the database recorded ``last_seq``/``head_hash`` for this file."""
    if check.last_seq < last_seq:
        return (
            f"{check.name}: cut short: the database recorded seq {last_seq}, the file's intact "
            f"lines end at seq {check.last_seq}; {last_seq - check.last_seq} event(s) are missing"
        )
    if check.hashes.get(last_seq) != head_hash:
        return (
            f"{check.name}: seq {last_seq} differs from the hash the database recorded: the file "
            "was rewritten"
        )
    return None


def merged(checks: Iterable[FileCheck]) -> list[Entry]:
    """Every intact line of every file, by the database's transaction time (one clock for all
    hosts), then file and sequence."""
    return sorted((e for c in checks for e in c.entries), key=lambda e: (e.time, e.file, e.seq))
