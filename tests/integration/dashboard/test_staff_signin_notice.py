"""New-sign-in notices (issue 24, item 1): with a staff sender set, a sign-in from a browser
the account has not signed in from before is mailed to the person, from the installation's
sender through the worker; the first sign-in and a repeat from a known browser are not."""

from __future__ import annotations

import dataclasses
import email
import email.policy

from mailer.db import create_pool
from mailer.passwords import Hasher
from mailer.sending.worker import Worker
from tests.support.mailer_env import mail_settings
from tests.support.staff import person, staff_probes
from tests.support.web import seed
from unsubscribe_web.app import create_app

PASSWORD = "correct horse battery staple"
EMAIL = "ada@acme.example"
SENDER = "optout@install.example"


async def test_a_sign_in_from_a_new_browser_is_mailed_once(
    aiohttp_client, settings, conn, db_dsn, smtp_sink
):
    world = await seed(conn, subscribers=1, slug="acme")
    await person(
        conn, Hasher(), email=EMAIL, password=PASSWORD, role="marketing", tenant_id=world.tenant
    )
    staff = dataclasses.replace(settings.staff, mail_from=SENDER)
    s = dataclasses.replace(mail_settings(settings, smtp_sink.port), staff=staff)
    client = await aiohttp_client(create_app(s))

    async def sign_in(browser: str) -> None:
        done = await client.post(
            "/dashboard/login",
            data={"email": EMAIL, "password": PASSWORD},
            headers={"User-Agent": browser},
            allow_redirects=False,
        )
        assert done.status == 303, await done.text()
        client.session.cookie_jar.clear()

    await sign_in("Firefox/140")  # the first sign-in: nothing to compare with
    await sign_in("Firefox/140")  # the same browser again
    assert [r async for r in staff_probes().staff_mail_rows(conn)] == []
    await sign_in("Chromium/1 on another machine")
    [queued] = [r async for r in staff_probes().staff_mail_rows(conn)]
    assert queued["recipient"] == EMAIL and queued["template"] == "staff_new_signin"

    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, s).run(until_idle=True)
    finally:
        await pool.close()
    [sent] = await smtp_sink.wait_for(1)
    msg = email.message_from_bytes(sent.data, policy=email.policy.default)
    assert sent.rcpt_tos == (EMAIL,) and SENDER in msg["From"]
    assert "New sign-in" in msg["Subject"]
    assert "Chromium/1 on another machine" in msg.get_content()
    assert msg["List-Unsubscribe"] is None
