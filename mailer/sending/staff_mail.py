"""Send the installation's own mail (mailer/staff_mail.py) through the worker's relay: claim
what is due, sign with the installation's DKIM key if set, record sent, bounced or retried.
No suppression check (it is not marketing and names no subscriber); no rate budget (a handful
of messages, each awaited by a person)."""

from __future__ import annotations

import datetime as dt
import logging

import asyncpg

from mailer import staff_mail
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.event_endpoints import FAILING_AFTER
from mailer.sending.dkim import DkimSigner
from mailer.sending.transport import SmtpPool

log = logging.getLogger(__name__)

BATCH = 20
LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 8  # deferred this often (on the retry schedule), the mail is given up


def installation_signer(settings: Settings) -> DkimSigner | None:
    """The DKIM signer of staff mail, or None when no installation key is set."""
    staff = settings.staff
    if staff.mail_from is None or staff.dkim_selector is None or staff.dkim_key_path is None:
        return None
    domain = staff.mail_from.rpartition("@")[2]
    return DkimSigner.from_files(domain, staff.dkim_selector, staff.dkim_key_path)


async def report_failing_endpoints(conn: asyncpg.Connection, settings: Settings) -> int:
    """Queue one mail to the tenant's contact for each endpoint failing for a day and not
    reported in this spell; how many were queued."""
    queued = 0
    async with conn.transaction():
        found = await rows(
            queries().staff_mail.report_failing_endpoints(
                conn, failing_after_seconds=FAILING_AFTER.total_seconds()
            )
        )
        for row in found:
            if row["contact_email"] is None or settings.staff.mail_from is None:
                # Still marked reported: the workspace shows the state; nobody to write to.
                log.warning(
                    "endpoint_failing_unreported endpoint=%s tenant=%s", row["id"], row["slug"]
                )
                continue
            await staff_mail.enqueue(
                conn,
                recipient=row["contact_email"],
                template=staff_mail.ENDPOINT_FAILING,
                values={
                    "tenant": row["slug"],
                    "url": row["url"],
                    "since": f"{row['failing_since']:%Y-%m-%d %H:%M} UTC",
                    "retry_days": f"{settings.events.retry_for_seconds / 86400:g}",
                },
            )
            log.info("endpoint_failing_reported endpoint=%s tenant=%s", row["id"], row["slug"])
            queued += 1
    return queued


async def send_due(
    pool: asyncpg.Pool,
    smtp: SmtpPool,
    settings: Settings,
    retry_schedule: tuple[float, ...],
    signer: DkimSigner | None,
) -> int:
    """Send one batch of due staff mail; how many were tried."""
    mail_from = settings.staff.mail_from
    if mail_from is None:
        return 0
    q = queries().staff_mail
    async with pool.acquire() as conn:
        claimed = await rows(q.claim(conn, lease_seconds=LEASE_SECONDS, lim=BATCH))
    for row in claimed:
        payload = row["payload"] or {}
        _, data = staff_mail.compose(
            row["template"],
            payload,
            mail_from=mail_from,
            recipient=row["recipient"],
            now=dt.datetime.now(dt.UTC),
        )
        if signer is not None:
            data = signer.sign(data)
        reply = await smtp.send(mail_from, row["recipient"], data)
        # Never the payload in the log: it may hold a single-use link.
        log.info(
            "staff_mail id=%s template=%s outcome=%s code=%s",
            row["id"],
            row["template"],
            reply.outcome,
            reply.code,
        )
        async with pool.acquire() as conn:
            if reply.outcome == "sent":
                await q.finish(conn, id=row["id"], state="sent", reply=reply.text[:500])
            elif reply.outcome == "retry" and row["attempts"] < MAX_ATTEMPTS:
                wait = retry_schedule[min(row["attempts"] - 1, len(retry_schedule) - 1)]
                await q.retry(conn, id=row["id"], seconds=float(wait), reply=reply.text[:500])
            else:
                # A 5xx at RCPT or DATA is this recipient's hard bounce, kept on the row.
                state = "bounced" if reply.stage in ("rcpt", "data") else "failed"
                await q.finish(conn, id=row["id"], state=state, reply=reply.text[:500])
    return len(claimed)
