"""Suppression lists in bulk: import another sender's unsubscribes, bounces and complaints
(so they are honoured from the first send), and export ours as keyed hashes and reasons only.

Every suppression goes through mailer.consent (the one writer of consent state).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import asyncpg

from mailer import audit
from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.consent import writer as consent
from mailer.consent.imports import MAX_LINE_BYTES, scan
from mailer.db import queries, rows
from mailer.errors import InvalidAddress, InvalidInput

log = logging.getLogger(__name__)

# What each reason an importer may give means: the scope it suppresses (DESIGN invariant 2).
REASON_SCOPES: dict[str, consent.Scope] = {
    "unsubscribe": "marketing",
    "manual": "marketing",
    "hard_bounce": "all",
    "complaint": "all",
}
COLUMNS = ("email", "reason")
BATCH_ROWS = 500
PAGE = 5000
MAX_REPORTED_BAD = 1000
EXPORT_COLUMNS = ("address_hash", "scope", "reason", "source", "created_at")


@dataclass(slots=True)
class SuppressionImport:
    added: int = 0
    already: int = 0
    bad: int = 0
    lines: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # the first ones only

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "already": self.already,
            "bad": self.bad,
            "bad_rows": [{"line": line, "reason": reason} for line, reason in self.bad_rows],
        }


def _check_reason(reason: str) -> str:
    if reason not in REASON_SCOPES:
        raise InvalidInput(f"The reason must be one of {', '.join(REASON_SCOPES)}.", field="reason")
    return reason


async def import_file(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant_id: int,
    path: Path,
    reason: str,
    actor: str = "cli",
    token_id: int | None = None,
) -> SuppressionImport:
    """Suppress every address of a CSV file (header ``email`` and optionally ``reason``, one
    of REASON_SCOPES per row; ``reason`` is the default). Bad rows are reported by line and
    skipped; a repeat of the same file adds nothing."""
    _check_reason(reason)
    facts = scan(path)  # encoding and line length, before anything is written
    result = SuppressionImport(lines=facts.lines)
    tenant_key = tenant_hash_key(hash_key, tenant_id)
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, strict=True)
        email_at, reason_at, width = _header(reader)
        pending: list[tuple[int, bytes, str]] = []
        for line, row, error in _rows(reader):
            if error is None:
                error = _row_error(row, width)
            if error is None:
                try:
                    address = parse_address(row[email_at])
                except InvalidAddress as exc:
                    error = exc.message
            row_reason = (row[reason_at].strip() if reason_at is not None else "") or reason
            if error is None and row_reason not in REASON_SCOPES:
                error = f"unknown reason {row_reason[:40]!r} (use {', '.join(REASON_SCOPES)})"
            if error is not None:
                result.bad += 1
                if len(result.bad_rows) < MAX_REPORTED_BAD:
                    result.bad_rows.append((line, error))
                continue
            pending.append((line, suppression_key(tenant_key, address), row_reason))
            if len(pending) >= BATCH_ROWS:
                await _suppress(conn, tenant_id, pending, result)
                pending = []
        await _suppress(conn, tenant_id, pending, result)
    await audit.record(
        conn,
        actor=actor,
        token_id=token_id,
        tenant_id=tenant_id,
        action="suppressions.import",
        detail={"added": result.added, "already": result.already, "bad": result.bad},
    )
    log.info(
        "suppressions imported tenant=%s added=%s already=%s bad=%s",
        tenant_id,
        result.added,
        result.already,
        result.bad,
    )
    return result


def _header(reader: Iterator[list[str]]) -> tuple[int, int | None, int]:
    try:
        names = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        raise InvalidInput("The file is empty.", field="file") from None
    except csv.Error as exc:
        raise InvalidInput(f"Line 1 is not valid CSV: {exc}.", field="file") from None
    unknown = [n for n in names if n not in COLUMNS]
    if "email" not in names or unknown or len(set(names)) != len(names):
        raise InvalidInput(
            "The first line must be a header with an 'email' column and optionally a "
            "'reason' column, each once.",
            field="file",
        )
    return names.index("email"), names.index("reason") if "reason" in names else None, len(names)


def _rows(reader: Any) -> Iterator[tuple[int, list[str], str | None]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, [], f"not valid CSV: {exc}"
            continue
        if row:
            yield reader.line_num, row, None


def _row_error(row: list[str], width: int) -> str | None:
    if len(row) != width:
        return f"expected {width} field(s), found {len(row)}"
    return None


async def _suppress(
    conn: asyncpg.Connection,
    tenant_id: int,
    pending: list[tuple[int, bytes, str]],
    result: SuppressionImport,
) -> None:
    async with conn.transaction():
        for _line, key, reason in pending:
            if await _suppress_key(conn, tenant_id, key, reason, "import"):
                result.added += 1
            else:
                result.already += 1


async def _suppress_key(
    conn: asyncpg.Connection, tenant_id: int, key: bytes, reason: str, source: str
) -> bool:
    person = await queries().consent.get_subscriber_by_key(conn, tenant_id=tenant_id, email_key=key)
    if reason == "unsubscribe" and person is not None:
        # Someone we know who left the other sender's lists: leave ours too, with the
        # ledger rows that go with it.
        return await consent.unsubscribe_all_marketing(
            conn, tenant_id=tenant_id, subscriber_id=person["id"], source=source
        )
    return await consent.suppress(
        conn,
        tenant_id=tenant_id,
        address_key=key,
        scope=REASON_SCOPES[reason],
        reason=reason,
        source=source,
        subscriber_id=person["id"] if person is not None else None,
    )


async def suppress_address(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    tenant_id: int,
    email: str,
    reason: str,
    source: str,
) -> bool:
    """Suppress one address for ``reason``; False when it was suppressed already."""
    _check_reason(reason)
    key = suppression_key(tenant_hash_key(hash_key, tenant_id), parse_address(email))
    return await _suppress_key(conn, tenant_id, key, reason, source)


def suppression_dict(record: asyncpg.Record) -> dict[str, Any]:
    return {
        "address_hash": bytes(record["address_key"]).hex(),
        "scope": record["scope"],
        "reason": record["reason"],
        "source": record["source"],
        "created_at": record["created_at"].isoformat(),
    }


async def page(
    conn: asyncpg.Connection, tenant_id: int, *, after: bytes, limit: int
) -> list[dict[str, Any]]:
    found = await rows(
        queries().suppression_lists.list_suppressions(
            conn, tenant_id=tenant_id, after_key=after, lim=limit
        )
    )
    return [suppression_dict(r) for r in found]


async def lookup(
    conn: asyncpg.Connection, *, hash_key: bytes, tenant_id: int, email: str
) -> dict[str, Any] | None:
    key = suppression_key(tenant_hash_key(hash_key, tenant_id), parse_address(email))
    found = await queries().suppression_lists.get_suppression(
        conn, tenant_id=tenant_id, address_key=key
    )
    return suppression_dict(found) if found is not None else None


async def export(
    conn: asyncpg.Connection, *, tenant_id: int, out: TextIO, actor: str = "cli"
) -> int:
    """Write the tenant's suppressions as CSV (hash, scope, reason, source, time): never an
    address. Paged by key, so memory stays flat. Returns the number of rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    after = b""
    while True:
        batch = await page(conn, tenant_id, after=after, limit=PAGE)
        for item in batch:
            writer.writerow([item[c] for c in EXPORT_COLUMNS])
        count += len(batch)
        if len(batch) < PAGE:
            break
        after = bytes.fromhex(batch[-1]["address_hash"])
    async with conn.transaction():
        export_id = await queries().suppression_lists.record_export(
            conn,
            tenant_id=tenant_id,
            kind="suppressions",
            created_by=actor,
            row_count=count,
            detail={},
        )
        await audit.record(
            conn,
            actor=actor,
            tenant_id=tenant_id,
            action="suppressions.export",
            target_type="export",
            target_id=export_id,
            detail={"rows": count},
        )
    return count


__all__ = ["MAX_LINE_BYTES", "REASON_SCOPES", "export", "import_file", "lookup", "page"]
