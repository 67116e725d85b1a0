"""CSV import of subscribers: streamed, validated row by row, committed in resumable batches.

The file is read twice, never held whole: a first pass hashes it (the resume key), counts its
lines and refuses it early for a wrong encoding or an over-long line, before anything is
written; the second pass parses it with the csv module and signs people up in batches
through ``mailer.consent.subscribe_batch``. Each batch commits its rows, its bad lines, its
confirmation mails and the import's resume point in one transaction, so a crashed import
resumes after its last committed line without duplicating anything.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from mailer import audit, events
from mailer.addresses import parse_address
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidAddress, InvalidInput, NotFound, UnknownTopic
from mailer.i18n import LANGUAGES, supported
from mailer.outbox import TRANSACTIONAL_PRIORITY
from mailer.tokens import LinkClaims, Purpose

log = logging.getLogger(__name__)

COLUMNS = ("email", "name", "language", "external_id")
REQUIRED = ("email",)
# A subscriber row is an address and a name: a few hundred bytes. A longer line is not a row
# of ours (a binary file, a broken quote swallowing the file) and would cost memory.
MAX_LINE_BYTES = 4096
MAX_NAME = 200
MAX_TEXT = 200
MAX_EVIDENCE = 10_000
BATCH_ROWS = 2000
CHUNK = 1 << 20
CONFIRM_SUBJECT = "Please confirm your subscription"

Progress = Callable[[int, int], None]  # (lines done, lines in the file)

# GDPR Art. 6(1) (b), (a), (c), (f): the grounds an importer can claim for writing to a list.
# A constraint holds new ledger and import rows to the same set (0010_lawful_basis.sql).
LAWFUL_BASES = ("consent", "contract", "legal_obligation", "legitimate_interests")


def check_lawful_basis(value: str) -> str:
    """``value`` as stored (``legal obligation`` and ``Legal-Obligation`` are accepted too),
    or InvalidInput naming the allowed values."""
    basis = "_".join(value.strip().lower().replace("-", " ").split())
    if basis not in LAWFUL_BASES:
        raise InvalidInput(
            f"The lawful basis must be one of {', '.join(LAWFUL_BASES)}, not {value.strip()!r}.",
            field="lawful_basis",
        )
    return basis


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """What the importer states about the list: why we may write to these people."""

    lawful_basis: str
    source: str
    age_attested: bool
    existing_consent: bool = False
    evidence: str | None = None

    def checked(self) -> ImportOptions:
        for name in ("lawful_basis", "source"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInput(f"State the {name.replace('_', ' ')} of the import.", field=name)
            if len(value) > MAX_TEXT or not value.isprintable():
                raise InvalidInput(
                    f"The {name.replace('_', ' ')} must be one line of at most {MAX_TEXT} "
                    "characters.",
                    field=name,
                )
        lawful_basis = check_lawful_basis(self.lawful_basis)
        if not self.age_attested:
            raise InvalidInput(
                "Confirm that everyone in the file is above the tenant's minimum age "
                "(the policy excludes children 13 or under).",
                field="age_attested",
            )
        if self.existing_consent and not (self.evidence and self.evidence.strip()):
            raise InvalidInput(
                "Existing consent needs its evidence (where and how these people agreed).",
                field="evidence",
            )
        if self.evidence is not None and len(self.evidence) > MAX_EVIDENCE:
            raise InvalidInput(
                f"The evidence is longer than {MAX_EVIDENCE} characters.", field="evidence"
            )
        return ImportOptions(
            lawful_basis,
            self.source.strip(),
            self.age_attested,
            self.existing_consent,
            self.evidence.strip() if self.evidence else None,
        )


@dataclass(frozen=True, slots=True)
class FileFacts:
    sha256: bytes
    lines: int


@dataclass(frozen=True, slots=True)
class Header:
    email: int
    name: int | None
    width: int
    language: int | None = None  # the person's language (issue 19): en, de, fr, es
    external_id: int | None = None  # the tenant's own id for the person (issue 22)


def scan(path: Path) -> FileFacts:
    """Hash the file, count its lines and refuse it for bad UTF-8 or an over-long line: all
    before anything is written. Reads 1 MiB at a time."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines = 0
    current = 0  # bytes of the line being read
    offset = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = lines + chunk[: exc.start].count(b"\n") + 1
                raise InvalidInput(
                    f"The file is not UTF-8 text (line {line}, byte {offset + exc.start + 1}); "
                    "save it as CSV UTF-8.",
                    field="file",
                ) from None
            start = 0
            while (newline := chunk.find(b"\n", start)) >= 0:
                current += newline - start
                if current > MAX_LINE_BYTES:
                    raise _too_long(lines + 1)
                lines += 1
                current = 0
                start = newline + 1
            current += len(chunk) - start
            if current > MAX_LINE_BYTES:
                raise _too_long(lines + 1)
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInput("The file ends in the middle of a UTF-8 character.") from None
    if current:
        lines += 1
    if lines == 0:
        raise InvalidInput("The file is empty: it needs a header line with an email column.")
    return FileFacts(digest.digest(), lines)


def _too_long(line: int) -> InvalidInput:
    return InvalidInput(
        f"Line {line} is longer than {MAX_LINE_BYTES} bytes: this is not a subscriber list.",
        field="file",
    )


def read_header(row: list[str]) -> Header:
    names = [cell.strip().lower() for cell in row]
    if "email" not in names:
        raise InvalidInput(
            "The first line must be a header naming the columns, with an 'email' column "
            f"(allowed: {', '.join(COLUMNS)}).",
            field="file",
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InvalidInput(f"The header repeats {', '.join(duplicated)}.", field="file")
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise InvalidInput(
            f"Unknown column(s) {', '.join(repr(n) for n in unknown)} "
            f"(allowed: {', '.join(COLUMNS)}).",
            field="file",
        )
    return Header(
        names.index("email"),
        names.index("name") if "name" in names else None,
        len(row),
        names.index("language") if "language" in names else None,
        names.index("external_id") if "external_id" in names else None,
    )


def _reader(file: Any) -> Iterator[list[str]]:
    return csv.reader(file, strict=True)


def check_header(path: Path) -> Header:
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = _reader(file)
        try:
            first = next(reader)
        except StopIteration:
            raise InvalidInput("The file is empty.", field="file") from None
        except csv.Error as exc:
            raise InvalidInput(f"Line 1 is not valid CSV: {exc}.", field="file") from None
    return read_header(first)


@dataclass(slots=True)
class Batch:
    good: list[consent.BatchRow]
    bad: list[tuple[int, str]]
    last_line: int = 0

    def __len__(self) -> int:
        return len(self.good) + len(self.bad)


def _parse_row(line: int, row: list[str], header: Header) -> consent.BatchRow | str:
    """The person on this row, or why the row is refused."""
    if len(row) != header.width:
        return f"expected {header.width} field(s), found {len(row)}"
    try:
        address = parse_address(row[header.email])
    except InvalidAddress as exc:
        return exc.message
    name = row[header.name].strip() if header.name is not None else ""
    if len(name) > MAX_NAME:
        return f"the name is longer than {MAX_NAME} characters"
    if name and not name.isprintable():
        return "the name contains a control character"
    cell = row[header.language].strip() if header.language is not None else ""
    language = supported(cell)
    if cell and language is None:
        return f"the language must be one of {', '.join(LANGUAGES)}"
    external_id = row[header.external_id].strip() if header.external_id is not None else ""
    try:
        checked = events.check_external_id(external_id)
    except InvalidInput as exc:
        return exc.message
    return consent.BatchRow(line, address, name or None, language, checked)


async def run_import(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    tenant_id: int,
    topic_id: int,
    path: Path,
    options: ImportOptions,
    filename: str | None = None,
    actor: str = "cli",
    token_id: int | None = None,
    progress: Progress | None = None,
    started: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Import (or resume importing) ``path`` into a topic; returns the import's summary.

    The same file for the same topic again continues where it stopped, or, when it finished,
    returns that import unchanged. ``started`` is told the import's id once its row exists
    (the workspace shows the import's page while it runs)."""
    options = options.checked()
    topic = await queries().tenants.get_topic(conn, tenant_id=tenant_id, id=topic_id)
    if topic is None:
        raise UnknownTopic("No such topic.", field="topic")
    facts = await asyncio.to_thread(scan, path)
    header = check_header(path)
    q = queries().imports
    existing = await q.find_import(
        conn, tenant_id=tenant_id, topic_id=topic_id, sha256=facts.sha256
    )
    if existing is not None and existing["status"] == "done":
        return summary(existing) | {"resumed": False, "already_done": True}
    async with conn.transaction():
        if existing is None:
            record = await q.create_import(
                conn,
                tenant_id=tenant_id,
                topic_id=topic_id,
                filename=(filename or path.name)[:MAX_TEXT],
                sha256=facts.sha256,
                lawful_basis=options.lawful_basis,
                source=options.source,
                existing_consent=options.existing_consent,
                evidence=options.evidence,
                created_by=actor,
            )
        else:
            record = existing
            # A resume goes on with what the import first stated, whatever this call says.
            options = ImportOptions(
                record["lawful_basis"],
                record["source"],
                True,
                record["existing_consent"],
                record["evidence"],
            )
        await audit.record(
            conn,
            actor=actor,
            token_id=token_id,
            tenant_id=tenant_id,
            action="import.resume" if existing else "import.start",
            target_type="import",
            target_id=record["id"],
            detail={"topic_id": topic_id, "lines": facts.lines},
        )
    import_id: int = record["id"]
    if started is not None:
        started(import_id)
    if not await q.try_lock(conn, id=import_id):
        raise Conflict("This import is running in another process.")
    try:
        await q.set_running(conn, id=import_id)
        status = "failed"
        try:
            await _load(
                conn,
                settings,
                record=record,
                topic=topic,
                path=path,
                header=header,
                options=options,
                total=facts.lines,
                progress=progress,
            )
            status = "done"
        finally:
            if not conn.is_closed():
                finished = await q.finish_import(conn, id=import_id, status=status)
        log.info(
            "import %s id=%s imported=%s skipped=%s bad=%s",
            status,
            import_id,
            finished["rows_imported"],
            finished["rows_skipped"],
            finished["rows_bad"],
        )
        return summary(finished) | {"resumed": existing is not None, "already_done": False}
    finally:
        if not conn.is_closed():
            await q.unlock(conn, id=import_id)


class BatchReader:
    """Reads and checks the file a batch at a time. Runs in a worker thread, so the next
    batch is parsed (email-validator is the costly part) while the current one is written."""

    def __init__(self, file: Any, header: Header, resume_after: int) -> None:
        self.reader: Any = _reader(file)
        next(self.reader)  # the header, checked already
        self.header = header
        self.resume_after = resume_after

    def read(self) -> Batch | None:
        batch = Batch([], [])
        reader = self.reader
        while len(batch) < BATCH_ROWS:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # Strict parsing: a stray quote is this line's fault, not the file's. The
                # reader goes on at the next line.
                if reader.line_num > self.resume_after:
                    batch.bad.append((reader.line_num, f"not valid CSV: {exc}"))
                    batch.last_line = reader.line_num
                continue
            line: int = reader.line_num
            if line <= self.resume_after or not row:  # committed already, or a blank line
                continue
            parsed = _parse_row(line, row, self.header)
            if isinstance(parsed, str):
                batch.bad.append((line, parsed))
            else:
                batch.good.append(parsed)
            batch.last_line = line
        return batch if len(batch) else None


async def _load(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    record: asyncpg.Record,
    topic: asyncpg.Record,
    path: Path,
    header: Header,
    options: ImportOptions,
    total: int,
    progress: Progress | None,
) -> None:
    with path.open(newline="", encoding="utf-8-sig") as file:
        source = BatchReader(file, header, record["committed_line"])
        batch = await asyncio.to_thread(source.read)
        while batch is not None:
            upcoming = asyncio.ensure_future(asyncio.to_thread(source.read))
            try:
                await _commit(conn, settings, record, topic, options, batch)
                if progress:
                    progress(batch.last_line, total)
            except BaseException:
                # Let the reader thread finish before the file closes under it.
                with contextlib.suppress(Exception):
                    await upcoming
                raise
            batch = await upcoming
        if progress:
            progress(total, total)


async def _commit(
    conn: asyncpg.Connection,
    settings: Settings,
    record: asyncpg.Record,
    topic: asyncpg.Record,
    options: ImportOptions,
    batch: Batch,
) -> None:
    q = queries().imports
    tenant_id = record["tenant_id"]
    async with conn.transaction():
        outcome = await consent.subscribe_batch(
            conn,
            hash_key=settings.hash_key,
            tenant_id=tenant_id,
            topic_id=topic["id"],
            batch=batch.good,
            age_attested=options.age_attested,
            source="import",
            lawful_basis=options.lawful_basis,
            confirmed=options.existing_consent,
            form_text=options.evidence,
            detail={"import_id": record["id"], "source": options.source},
        )
        if batch.bad:
            await q.insert_errors(
                conn,
                import_id=record["id"],
                lines=[line for line, _ in batch.bad],
                reasons=[reason for _, reason in batch.bad],
            )
        if outcome.subscribed and not options.existing_consent:
            await _enqueue_confirmations(conn, settings, tenant_id, topic, outcome)
        await q.commit_batch(
            conn,
            id=record["id"],
            committed_line=batch.last_line,
            imported=len(outcome.subscribed),
            skipped=len(outcome.skipped),
            bad=len(batch.bad),
        )


async def _enqueue_confirmations(
    conn: asyncpg.Connection,
    settings: Settings,
    tenant_id: int,
    topic: asyncpg.Record,
    outcome: consent.BatchOutcome,
) -> None:
    keyring = settings.keyring()
    base = settings.base_url.rstrip("/")
    now = dt.datetime.now(dt.UTC).timestamp()
    payloads = []
    for _, subscriber_id in outcome.subscribed:
        token = keyring.sign(
            LinkClaims.issue(Purpose.CONFIRM, tenant_id, subscriber_id, topic["id"], now=now)
        )
        payloads.append(
            json.dumps(
                {
                    "subject": CONFIRM_SUBJECT,
                    "list_name": topic["name"],
                    "topic_id": topic["id"],
                    "confirm_url": f"{base}/c/{token}",
                }
            )
        )
    q = queries().imports
    await q.enqueue_confirmations(
        conn,
        tenant_id=tenant_id,
        subscriber_ids=[subscriber_id for _, subscriber_id in outcome.subscribed],
        recipients=[row.address.as_given for row, _ in outcome.subscribed],
        payloads=payloads,
        priority=TRANSACTIONAL_PRIORITY,
    )
    await q.notify_work(conn)


def summary(record: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": record["id"],
        "topic_id": record["topic_id"],
        "filename": record["filename"],
        "sha256": bytes(record["sha256"]).hex(),
        "status": record["status"],
        "lawful_basis": record["lawful_basis"],
        "source": record["source"],
        "existing_consent": record["existing_consent"],
        "committed_line": record["committed_line"],
        "rows_imported": record["rows_imported"],
        "rows_skipped": record["rows_skipped"],
        "rows_bad": record["rows_bad"],
        "created_by": record["created_by"],
        "created_at": record["created_at"].isoformat(),
        "finished_at": record["finished_at"].isoformat() if record["finished_at"] else None,
    }


async def get_import(conn: asyncpg.Connection, tenant_id: int, import_id: int) -> dict[str, Any]:
    record = await queries().imports.get_import(conn, tenant_id=tenant_id, id=import_id)
    if record is None:
        raise NotFound("No such import.", field="id")
    return summary(record) | {"topic": record["topic"]}


async def list_imports(
    conn: asyncpg.Connection, tenant_id: int, *, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    found = await rows(
        queries().imports.list_imports(
            conn,
            tenant_id=tenant_id,
            before_id=before_id if before_id is not None else 2**63 - 1,
            lim=limit,
        )
    )
    return [summary(r) | {"topic": r["topic"]} for r in found]


async def list_errors(
    conn: asyncpg.Connection, import_id: int, *, after_line: int, limit: int
) -> list[dict[str, Any]]:
    found = await rows(
        queries().imports.list_errors(conn, import_id=import_id, after_line=after_line, lim=limit)
    )
    return [{"line": r["line"], "reason": r["reason"]} for r in found]


async def correct_lawful_basis(
    conn: asyncpg.Connection,
    tenant_id: int,
    import_id: int,
    lawful_basis: str,
    *,
    actor: str,
    token_id: int | None = None,
    source: str = "staff",
) -> dict[str, Any]:
    """Correct the lawful basis an import stated: one ledger row per person it subscribed,
    naming the old and the new basis (the old rows stay: the ledger is append-only), the
    import's record updated, and an audit line, in one transaction."""
    new_basis = check_lawful_basis(lawful_basis)
    async with conn.transaction():
        record = await queries().imports.get_import(conn, tenant_id=tenant_id, id=import_id)
        if record is None:
            raise NotFound("No such import.", field="import_id")
        old_basis = record["lawful_basis"]
        if old_basis == new_basis:  # done already (a repeated call): nothing to append
            return {
                "id": import_id,
                "old_basis": old_basis,
                "lawful_basis": new_basis,
                "people": 0,
                "changed": False,
            }
        people = await consent.correct_import_basis(
            conn,
            tenant_id=tenant_id,
            import_id=import_id,
            old_basis=old_basis,
            new_basis=new_basis,
            source=source,
        )
        await queries().imports.set_lawful_basis(
            conn, tenant_id=tenant_id, id=import_id, lawful_basis=new_basis
        )
        await audit.record(
            conn,
            actor=actor,
            token_id=token_id,
            tenant_id=tenant_id,
            action="import.correct_basis",
            target_type="import",
            target_id=import_id,
            detail={"old_basis": old_basis, "new_basis": new_basis, "people": people},
        )
    return {
        "id": import_id,
        "old_basis": old_basis,
        "lawful_basis": new_basis,
        "people": people,
        "changed": True,
    }


# The per-row report of an import (its bad lines) is kept this long after the import ends;
# the upload itself is deleted as soon as the import finishes.
REPORT_DAYS = 30


async def purge_old_reports(
    conn: asyncpg.Connection, tenant_id: int, *, now: dt.datetime, days: int = REPORT_DAYS
) -> int:
    """Drop the per-row reports of the tenant's imports that ended more than ``days`` ago;
    returns how many rows went (the import's counts stay)."""
    dropped: int = await queries().imports.purge_old_reports(
        conn, tenant_id=tenant_id, before=now - dt.timedelta(days=days)
    )
    return dropped
