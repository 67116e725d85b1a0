"""Partner sharing: export only the subscribers whose partner-sharing consent is granted now,
and record each export (who, when, how many, which subscribers) so an erasure can tell the
partners who received the person (GDPR Art. 19). The CSV is formula-safe (mailer.csv_safe).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TextIO

import asyncpg

from mailer.csv_safe import write_csv
from mailer.db import queries, rows

log = logging.getLogger(__name__)

COLUMNS = ("subscriber_id", "email", "name", "consent_given_at")


@dataclass(frozen=True, slots=True)
class PartnerExport:
    export_id: int
    row_count: int


async def export_partners(
    conn: asyncpg.Connection, *, tenant_id: int, out: TextIO, by: str, partner: str = ""
) -> PartnerExport:
    """Write the CSV to ``out`` and record the export, in one transaction: the record and the
    list are the same snapshot."""
    q = queries().privacy
    async with conn.transaction(isolation="repeatable_read"):
        people = await rows(q.partner_consenting(conn, tenant_id=tenant_id))
        export_id: int = await q.insert_export(
            conn,
            tenant_id=tenant_id,
            kind="partner",
            created_by=by,
            row_count=len(people),
            detail={"partner": partner} if partner else {},
        )
        await q.add_export_subscribers(conn, export_id=export_id, ids=[p["id"] for p in people])
        await q.record_audit(
            conn,
            actor=by,
            tenant_id=tenant_id,
            action="partners.export",
            target_type="export",
            target_id=export_id,
            detail={"rows": len(people)},
        )
        count = write_csv(
            out,
            COLUMNS,
            (
                {
                    "subscriber_id": p["id"],
                    "email": p["email"],
                    "name": p["name"] or "",
                    "consent_given_at": p["consent_given_at"].isoformat()
                    if p["consent_given_at"]
                    else "",
                }
                for p in people
            ),
        )
    log.info("partner export tenant=%s export=%s rows=%s", tenant_id, export_id, count)
    return PartnerExport(export_id, count)
