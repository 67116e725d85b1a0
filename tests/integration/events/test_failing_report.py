"""Issue 22: an endpoint failing for a day is reported by mail to the tenant's contact, once per
failing spell (not per attempt), from the installation's sender through the worker."""

from __future__ import annotations

import dataclasses
import email
import email.policy

from mailer import event_endpoints, tenants
from mailer.config import StaffSettings
from mailer.sending.worker import Worker
from tests.support.mailer_env import mail_settings
from tests.support.staff import staff_probes

SENDER = "optout@install.example"


async def test_a_failing_endpoint_is_reported_to_the_contact_once_per_spell(
    conn, pool, world, event_settings, smtp_sink
):
    await tenants.update_tenant(conn, "acme", {"contact_email": "ops@acme.example"})
    s = mail_settings(event_settings, smtp_sink.port)
    s = dataclasses.replace(s, staff=StaffSettings(mail_from=SENDER))
    made = await event_endpoints.create(
        conn, s, tenant_id=world["tenant"], url="http://127.0.0.1:9/hook"
    )
    probes = staff_probes()

    async def run_worker() -> None:
        await Worker(pool, s).run(until_idle=True)

    # Failing for less than a day: not reported.
    await probes.endpoint_failing_for(conn, id=made.endpoint["id"], hours=3)
    await run_worker()
    assert smtp_sink.messages == []

    await probes.endpoint_failing_for(conn, id=made.endpoint["id"], hours=25)
    await run_worker()
    await run_worker()  # later rounds of the same spell send nothing more
    [sent] = await smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ("ops@acme.example",)
    msg = email.message_from_bytes(sent.data, policy=email.policy.default)
    assert SENDER in msg["From"] and "acme" in msg["Subject"]
    assert msg["List-Unsubscribe"] is None  # transactional: no unsubscribe footer
    assert "http://127.0.0.1:9/hook" in msg.get_content()
    assert len(smtp_sink.messages) == 1

    # A success ends the spell; failing again for a day is a new spell, reported again.
    await probes.endpoint_delivered(conn, id=made.endpoint["id"])
    await probes.endpoint_failing_for(conn, id=made.endpoint["id"], hours=30)
    await run_worker()
    await smtp_sink.wait_for(2)
    assert len(smtp_sink.messages) == 2
    rows = [r async for r in probes.staff_mail_rows(conn)]
    assert [r["state"] for r in rows] == ["sent", "sent"]
