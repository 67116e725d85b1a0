"""`optout staff` as an operator runs it: the first admin of a new install is invited with no
account yet, sets a password from the printed link and signs in; accounts are listed, given
roles and disabled, each ending the account's sessions and audited."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from urllib.parse import urlsplit

import dkim

from mailer import tenants
from mailer.db import create_pool
from mailer.sending.worker import Worker
from tests.conftest import probes, subprocess_env
from tests.support.cli import optout
from tests.support.mailer_env import DOMAIN, SELECTOR, dnsfunc, mail_settings, rsa_pem
from tests.support.staff import staff_probes
from tests.support.workspace import session_cookie
from unsubscribe_web.app import create_app

PASSWORD = "a long and unusual passphrase"


async def test_the_first_admin_is_invited_from_the_command_line_and_signs_in(
    db_dsn, conn, aiohttp_client, settings
):
    env = subprocess_env(db_dsn)
    assert await probes().audit_count(conn) == 0
    made = optout("staff", "invite", "--admin", "root@example.org", "--print-link", env=env)
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert "/dashboard/invitation/" in link and "72 hours" in made.stderr
    listed = optout("staff", "list", env=env)
    assert "invited" in listed.stdout and "installation admin" in listed.stdout
    assert link.rsplit("/", 1)[1] not in listed.stdout  # the link is shown once only

    client = await aiohttp_client(create_app(settings))
    path = urlsplit(link).path
    form = await client.get(path)
    assert form.status == 200 and "root@example.org" in await form.text()
    # Too short, and common, passwords are refused; the link stays usable.
    for weak in ("short", "qwerty123456", "QWERTY123456", "1q2w3e4r5t6y"):
        refused = await client.post(path, data={"password": weak, "password_again": weak})
        assert refused.status == 400, weak
    done = await client.post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert done.status == 200 and "Your password is set" in await done.text()
    again = await client.post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert again.status == 404  # single use

    signed = await client.post(
        "/dashboard/login",
        data={"email": "Root@Example.org", "password": PASSWORD},
        allow_redirects=False,
    )
    assert signed.status == 303, await signed.text()
    cookie = session_cookie(signed.headers["Set-Cookie"])
    client.session.cookie_jar.clear()
    home = await client.get("/dashboard", headers=cookie)
    assert home.status == 200 and "Signed in as root@example.org (admin)" in await home.text()
    assert "active" in optout("staff", "list", env=env).stdout

    actions = [r["action"] async for r in staff_probes().audit_people(conn)]
    assert actions == ["staff.invite", "staff.password_set", "staff.sign_in"]


async def test_roles_and_disabling_end_sessions_and_are_audited(
    db_dsn, conn, aiohttp_client, settings
):
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    env = subprocess_env(db_dsn)
    invited = optout(
        "staff",
        "invite",
        "mia@acme.example",
        "--name",
        "Mia",
        "--role",
        "marketing",
        "--tenant",
        "acme",
        "--print-link",
        env=env,
    )
    assert invited.returncode == 0, invited.stderr
    client = await aiohttp_client(create_app(settings))
    path = urlsplit(invited.stdout.strip()).path
    await client.post(path, data={"password": PASSWORD, "password_again": PASSWORD})
    signed = await client.post(
        "/dashboard/login",
        data={"email": "mia@acme.example", "password": PASSWORD},
        allow_redirects=False,
    )
    cookie = session_cookie(signed.headers["Set-Cookie"])
    client.session.cookie_jar.clear()
    assert "Mia (marketing)" in await (await client.get("/dashboard", headers=cookie)).text()
    account_id = invited.stderr.split()[1]

    changed = optout("staff", "role", account_id, "--tenant", "acme", "--role", "client", env=env)
    assert changed.returncode == 0 and "1 sessions ended" in changed.stdout, changed.stderr
    assert (await client.get("/dashboard", headers=cookie)).status == 401
    assert "acme:client" in optout("staff", "list", "--tenant", "acme", env=env).stdout

    refused = optout("staff", "role", account_id, "--tenant", "acme", "--role", "owner", env=env)
    assert refused.returncode == 2
    disabled = optout("staff", "disable", account_id, env=env)
    assert disabled.returncode == 0, disabled.stderr
    assert "disabled" in optout("staff", "list", env=env).stdout
    signed = await client.post(
        "/dashboard/login",
        data={"email": "mia@acme.example", "password": PASSWORD},
        allow_redirects=False,
    )
    assert signed.status == 401
    lines = [dict(r) async for r in staff_probes().audit_people(conn)]
    assert [(r["action"], r["actor"]) for r in lines] == [
        ("staff.invite", "cli"),
        ("staff.password_set", f"account:{account_id}:self"),
        ("staff.sign_in", f"account:{account_id}:self"),
        ("staff.role", "cli"),
        ("staff.disable", "cli"),
    ]
    assert all(r["name"] == "Mia" for r in lines if r["actor"] != "cli")
    assert tenant["id"]


async def test_without_a_staff_sender_invite_needs_print_link_and_says_so_in_one_line(db_dsn, conn):
    env = subprocess_env(db_dsn)
    refused = optout("staff", "invite", "--admin", "root@example.org", env=env)
    assert refused.returncode == 2
    assert "OPTOUT_STAFF_MAIL_FROM is not set" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "root@example.org" not in optout("staff", "list", env=env).stdout  # nothing made
    assert [r async for r in staff_probes().staff_mail_rows(conn)] == []


async def test_an_invitation_and_a_reset_are_mailed_signed_and_their_links_work(
    db_dsn, conn, aiohttp_client, settings, smtp_sink, tmp_path
):
    """Issue 24: with OPTOUT_STAFF_MAIL_FROM (and an installation DKIM key) the invitation goes
    by mail through the worker, as transactional mail without an unsubscribe header; the link
    is printed nowhere and the queue keeps no copy once it is sent."""
    key = tmp_path / "staff-dkim.pem"
    key.write_bytes(rsa_pem())
    sender = f"staff@{DOMAIN}"
    env = subprocess_env(db_dsn) | {
        "OPTOUT_STAFF_MAIL_FROM": sender,
        "OPTOUT_STAFF_DKIM_SELECTOR": SELECTOR,
        "OPTOUT_STAFF_DKIM_KEY_PATH": str(key),
    }
    made = optout("staff", "invite", "--admin", "root@example.org", env=env)
    assert made.returncode == 0, made.stderr
    assert "mailed to root@example.org" in made.stdout
    assert "/dashboard/" not in made.stdout + made.stderr

    staff = dataclasses.replace(
        settings.staff, mail_from=sender, dkim_selector=SELECTOR, dkim_key_path=str(key)
    )
    worker_settings = dataclasses.replace(mail_settings(settings, smtp_sink.port), staff=staff)
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, worker_settings).run(until_idle=True)
    finally:
        await pool.close()
    [sent] = await smtp_sink.wait_for(1)
    assert sent.mail_from == sender and sent.rcpt_tos == ("root@example.org",)
    assert dkim.verify(sent.data, dnsfunc=dnsfunc), "signed with the installation's key"
    msg = email.message_from_bytes(sent.data, policy=email.policy.default)
    assert msg["List-Unsubscribe"] is None and msg["Auto-Submitted"] == "auto-generated"
    [link] = re.findall(r"https://optout\.test(/dashboard/invitation/\S+)", msg.get_content())
    [row] = [r async for r in staff_probes().staff_mail_rows(conn)]
    assert row["state"] == "sent" and row["payload"] is None  # no live link left at rest

    client = await aiohttp_client(create_app(settings))
    done = await client.post(link, data={"password": PASSWORD, "password_again": PASSWORD})
    assert done.status == 200 and "Your password is set" in await done.text()

    reset = optout("staff", "reset-password", "root@example.org", env=env)
    assert reset.returncode == 0 and "mailed to root@example.org" in reset.stdout, reset.stderr
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, worker_settings).run(until_idle=True)
    finally:
        await pool.close()
    second = (await smtp_sink.wait_for(2))[1]
    body = email.message_from_bytes(second.data, policy=email.policy.default).get_content()
    [path] = re.findall(r"https://optout\.test(/dashboard/reset/\S+)", body)
    assert (await client.get(path)).status == 200
