"""`optout token`, `optout import` and `optout suppressions` as an operator runs them."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from mailer import tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.consent import writer as consent
from tests.conftest import TEST_HASH_KEY, probes, subprocess_env
from tests.support.api_world import bearer
from tests.support.cli import optout
from unsubscribe_web.app import create_app


async def setup_tenant(conn):
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    await tenants.create_topic(conn, tenant["id"], slug="news", name="News", kind="marketing")
    return tenant["id"]


async def test_tokens_are_shown_once_listed_expired_and_revoked(
    db_dsn, conn, aiohttp_client, settings
):
    await setup_tenant(conn)
    env = subprocess_env(db_dsn)
    made = optout(
        "token", "create", "--role", "client", "--tenant", "acme", "--label", "crm", env=env
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("optout_") and "not shown again" in made.stderr
    admin = optout("token", "create", "--role", "admin", env=env)
    assert admin.returncode == 0, admin.stderr
    refused = optout("token", "create", "--role", "marketing", env=env)
    assert refused.returncode == 2 and "--tenant" in refused.stderr

    listed = optout("token", "list", env=env)
    assert listed.returncode == 0
    assert secret not in listed.stdout and "client" in listed.stdout and "active" in listed.stdout

    client = await aiohttp_client(create_app(settings))
    response = await client.get("/api/v1/me", headers=bearer(secret))
    assert response.status == 200 and (await response.json())["tenant"] == "acme"

    token_id = listed.stdout.split()[0]
    assert optout("token", "expire", token_id, env=env).returncode == 0
    assert "expired" in optout("token", "list", "--tenant", "acme", env=env).stdout
    response = await client.get("/api/v1/me", headers=bearer(secret))
    assert response.status == 401

    admin_id = optout("token", "list", env=env).stdout.splitlines()[1].split()[0]
    assert optout("token", "revoke", admin_id, env=env).returncode == 0
    response = await client.get("/api/v1/me", headers=bearer(admin.stdout.strip()))
    assert response.status == 401
    missing = optout("token", "revoke", "999999", env=env)
    assert missing.returncode == 1 and "No API token" in missing.stderr

    actions = [r["action"] async for r in probes().audit_entries(conn)]
    assert actions.count("token.create") == 2
    assert "token.expire" in actions and "token.revoke" in actions


async def test_import_command_reports_bad_lines_and_counts(db_dsn, conn, tmp_path):
    await setup_tenant(conn)
    env = subprocess_env(db_dsn)
    path = tmp_path / "list.csv"
    path.write_text("email,name\nann@x.example,Ann\nnope,Bad\nbob@x.example,\n")
    args = ["import", str(path), "--tenant", "acme", "--topic", "news"]
    args += ["--lawful-basis", "consent", "--source", "web shop"]
    refused = optout(*args, env=env)
    assert refused.returncode == 2 and "minimum age" in refused.stderr
    done = optout(*args, "--age-attested", env=env)
    assert done.returncode == 0, done.stderr
    assert "line 3: The email address has no @ sign." in done.stderr
    assert "2 imported, 0 skipped, 1 bad" in done.stdout
    again = optout(*args, "--age-attested", env=env)
    assert "imported already" in again.stderr
    missing = optout("import", str(tmp_path / "none.csv"), *args[2:], "--age-attested", env=env)
    assert missing.returncode == 2 and "No file" in missing.stderr


async def test_suppression_lists_import_and_export(db_dsn, conn, tmp_path, settings):
    tenant_id = await setup_tenant(conn)
    topic = await tenants.get_topic(conn, tenant_id, "news")
    known = await consent.subscribe(
        conn,
        hash_key=settings.hash_key,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        email="known@x.example",
        age_attested=True,
        source="web_form",
    )
    env = subprocess_env(db_dsn)
    path = tmp_path / "old-sender.csv"
    path.write_text(
        "email,reason\n"
        "known@x.example,\n"
        "gone@x.example,complaint\n"
        "broken,\n"
        "Bounced@X.example,hard_bounce\n"
        "odd@x.example,whatever\n"
    )
    done = optout(
        "suppressions", "import", str(path), "--tenant", "acme", "--reason", "unsubscribe", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "3 suppressed, 0 already suppressed, 2 bad" in done.stdout
    assert "line 4:" in done.stderr and "line 6: unknown reason" in done.stderr
    again = optout(
        "suppressions", "import", str(path), "--tenant", "acme", "--reason", "unsubscribe", env=env
    )
    assert "0 suppressed, 3 already suppressed" in again.stdout

    # The known person left every marketing list, with a ledger row.
    events = [r async for r in probes().all_events(conn)]
    assert [e["action"] for e in events if e["subscriber_id"] == known.subscriber_id][-1] == (
        "unsubscribe_all"
    )
    # And they cannot be signed up again by staff or an import.
    key = suppression_key(tenant_hash_key(TEST_HASH_KEY, tenant_id), "bounced@x.example")
    exported = optout("suppressions", "export", "--tenant", "acme", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 3
    assert "@" not in exported.stdout
    by_hash = {r["address_hash"]: r for r in rows}
    assert by_hash[key.hex()]["scope"] == "all" and by_hash[key.hex()]["reason"] == "hard_bounce"
    assert sorted(r["reason"] for r in rows) == ["complaint", "hard_bounce", "unsubscribe"]
    actions = [r["action"] async for r in probes().audit_entries(conn)]
    assert actions.count("suppressions.import") == 2 and "suppressions.export" in actions


async def test_import_killed_mid_way_resumes_without_duplicates(db_dsn, conn, tmp_path):
    """kill -9 of `optout import` after its first committed batch; the same command again
    continues after the last committed line, and nobody is signed up or mailed twice."""
    import asyncio
    import os
    import signal
    import time

    tenant_id = await setup_tenant(conn)
    rows = 12_000
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write("email,name\n")
        for i in range(rows):
            out.write(f"p{i}@example.com,P {i}\n")
    args = [sys.executable, "-m", "mailer.cli", "import", str(path), "--tenant", "acme"]
    args += ["--topic", "news", "--lawful-basis", "consent", "--source", "s", "--age-attested"]
    env = subprocess_env(db_dsn)
    child = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.returncode is None:
            found = [r async for r in probes().import_rows(conn, tenant_id=tenant_id)]
            if found and found[0]["committed_line"] > 0:
                break
            await asyncio.sleep(0.02)
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 30)
    [killed] = [r async for r in probes().import_rows(conn, tenant_id=tenant_id)]
    assert killed["status"] == "running", "the import finished before it could be killed"
    assert 0 < killed["committed_line"] < rows + 1

    resumed = optout(*args[3:], env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(resumed): {rows} imported, 0 skipped, 0 bad" in resumed.stdout
    ledger = [r async for r in probes().import_ledger(conn, tenant_id=tenant_id)]
    mails = [r async for r in probes().import_confirmations(conn, tenant_id=tenant_id)]
    assert len(ledger) == len(mails) == rows
    assert len({r["subscriber_id"] for r in ledger}) == rows
    assert len({r["subscriber_id"] for r in mails}) == rows
