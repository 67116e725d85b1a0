"""Staff mail's own queue as the worker sends it: a hard bounce is recorded on the message and
its link is not kept."""

from __future__ import annotations

import dataclasses

from mailer import staff_accounts
from mailer.db import create_pool
from mailer.sending.worker import Worker
from tests.support.mailer_env import mail_settings
from tests.support.staff import staff_probes

SENDER = "optout@install.example"


async def test_a_hard_bounce_is_recorded_and_the_link_is_not_kept(
    conn, db_dsn, settings, smtp_sink
):
    smtp_sink.reply = "550 5.1.1 no such user"
    await staff_accounts.invite(
        conn,
        email="gone@example.org",
        installation_admin=True,
        valid_seconds=3600,
        actor="test",
        mail_base_url="https://optout.test",
    )
    s = mail_settings(settings, smtp_sink.port)
    s = dataclasses.replace(s, staff=dataclasses.replace(s.staff, mail_from=SENDER))
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, s).run(until_idle=True)
    finally:
        await pool.close()
    [row] = [r async for r in staff_probes().staff_mail_rows(conn)]
    assert row["state"] == "bounced" and "5.1.1" in row["reply"]
    assert row["payload"] is None
    assert smtp_sink.messages == []
