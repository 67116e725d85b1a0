"""The consent journal: opt-outs, suppressions, lifts and erasures, also written outside the
database, so that a restore from a backup cannot bring back anyone who left or was erased.

One append-only file per host and process in OPTOUT_JOURNAL_DIR, one JSON line per event:
ids, the event, the database's transaction time, a token naming the transaction, and the keyed
hashes of every address the person had; never a plain address, name or IP. Each line carries
a sequence number and a hash chained over the previous line; the database records each file's
last sequence and head hash once the lines are on disk (journal_heads), so an edited line, or
a file cut short below what the database recorded, is found by `optout journal reapply`.

Order against the commit (mailer.db.JournalledTransaction does it for every transaction): the
transaction's token is inserted in the transaction itself (journal_transactions), the
transaction commits, and only then are its lines numbered, chained, written and fsynced (at
most one fsync per transaction: those that commit while an fsync runs share the next one,
off the event loop), before the transaction's caller goes on; so an acknowledged opt-out is
committed and journalled. An event whose transaction rolled back is never journalled. After
a restore, a line whose token the database holds is known to be in the backup; the others
are re-applied. Nothing is held across the COMMIT, so commits of one process are not
serialised behind each other.
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

from mailer.durable import fsync_directory

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

    def body(self, seq: int, prev: bytes, time: dt.datetime, txn: str) -> dict[str, Any]:
        if self.event not in EVENTS:
            raise ValueError(f"unknown journal event {self.event!r}")
        return {
            "v": FORMAT,
            "seq": seq,
            "prev": prev.hex(),
            "txn": txn,
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
class Head:
    """A file's last line on disk: what the database records."""

    file: str
    last_seq: int
    head_hash: bytes


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


@dataclass(frozen=True, slots=True)
class _Queued:
    path: Path
    data: bytes
    head: Head


class Journal:
    """This process's journal file: numbering and chaining committed events, writing them with
    one fsync per group of transactions.

    The file is created at the first write, so commands that change no consent leave none."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broken_files: list[str] = []
        self._queued: list[_Queued] = []  # committed lines waiting for their fsync, in order
        self._ticket = 0  # transactions queued so far
        self._synced = 0  # ... of which on disk (or given up)
        self._flushing: asyncio.Future[list[Head]] | None = None
        self._new_file()

    def _new_file(self) -> None:
        self.name = file_name_for(socket.gethostname(), os.getpid(), dt.datetime.now(dt.UTC))
        self.path = self.directory / self.name
        self.seq = 0
        self.head = genesis(self.name)

    def append(self, events: Sequence[JournalEvent], time: dt.datetime, txn: str) -> int:
        """Number and chain the events of a committed transaction and queue them; returns the
        ticket to wait on with ``durable``. No await inside: the file's order is the order in
        which this process's transactions committed."""
        out = bytearray()
        for event in events:
            self.seq += 1
            body = event.body(self.seq, self.head, time, txn)
            self.head = chain(self.head, _encode(body))
            body["hash"] = self.head.hex()
            out += _encode(body) + b"\n"
        self._queued.append(_Queued(self.path, bytes(out), Head(self.name, self.seq, self.head)))
        self._ticket += 1
        return self._ticket

    def write(self, events: Sequence[JournalEvent], time: dt.datetime, txn: str) -> list[Head]:
        """``append`` and write at once, in this thread (tools and tests)."""
        self.append(events, time, txn)
        batch, upto = self._take()
        heads, failed = _write_batch(batch)
        self._written(failed, upto)
        return heads

    async def durable(self, ticket: int) -> list[Head]:
        """Return once the lines of ``ticket`` are written and fsynced. One fsync covers every
        transaction queued by then (group commit); it runs in a thread, so other transactions
        commit meanwhile, and a cancelled waiter does not cancel it. Returns the heads written
        by the flush this caller started (empty when another caller's flush covered it), for
        the caller to record in the database."""
        written: list[Head] = []
        while self._synced < ticket:
            if self._flushing is None or self._flushing.done():
                self._flushing = asyncio.ensure_future(self._flush())
                written = await asyncio.shield(self._flushing)
            else:
                await asyncio.shield(self._flushing)
        return written

    async def _flush(self) -> list[Head]:
        batch, upto = self._take()  # on the loop's thread, like every change of the queue
        heads, failed = await asyncio.to_thread(_write_batch, batch)
        self._written(failed, upto)
        return heads

    def _take(self) -> tuple[list[_Queued], int]:
        batch, self._queued = self._queued, []
        return batch, self._ticket

    def _written(self, failed: set[Path], upto: int) -> None:
        if self.path in failed:
            # The database's head stays below what was lost (reported by `reapply` only if it
            # recorded it); new lines go to a new file rather than break this one's chain.
            self.broken_files.append(self.name)
            self._new_file()
        self._synced = max(self._synced, upto)


def _write_batch(batch: list[_Queued]) -> tuple[list[Head], set[Path]]:
    """Append each file's lines in one write and one fsync; returns the heads now on disk and
    the files whose write failed."""
    by_file: dict[Path, list[_Queued]] = {}
    for item in batch:
        by_file.setdefault(item.path, []).append(item)
    heads: list[Head] = []
    failed: set[Path] = set()
    for path, items in by_file.items():
        try:
            fd, created = _open_for_append(path)
            try:
                os.write(fd, b"".join(i.data for i in items))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_directory(path.parent)
            heads.append(items[-1].head)
        except OSError:
            log.exception("journal write failed file=%s: moving to a new file", path.name)
            failed.add(path)
    return heads, failed


def _open_for_append(path: Path) -> tuple[int, bool]:
    """The file opened for appending, and whether this call created it. The folder is made
    (and the file created) only at a file's first write: every later flush costs one open,
    not a mkdir and a stat as well."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND), False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), True


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


async def durable_ticket(ticket: int) -> list[Head]:
    """``durable`` on this process's journal (see Journal.durable)."""
    if _current is None:
        raise RuntimeError("consent events committed but this process has no journal open")
    return await _current.durable(ticket)


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
    txn: str
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
        txn=str(body["txn"]),
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
