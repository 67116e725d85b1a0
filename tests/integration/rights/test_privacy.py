"""Data requests against Postgres: verification before anything, deadlines and extensions,
the overdue list, unknown people, and the commands staff use."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys

import pytest

from mailer import tenants
from mailer.consent import writer as consent
from mailer.errors import Conflict, InvalidAddress
from mailer.rights import erasure, partners, privacy, queue
from mailer.rights.deadlines import ExtensionRefused
from tests.conftest import TEST_HASH_KEY, probes, subprocess_env

RECEIVED = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def tenant(conn):
    row = await tenants.create_tenant(
        conn,
        "acme",
        name="Acme",
        sender_address="news@acme.example",
        postal_address="1 Road",
        time_zone="Europe/Paris",
        holidays=["2026-02-02"],
    )
    await tenants.create_topic(conn, row["id"], slug="news", name="News", kind="marketing")
    return row


async def join(conn, tenant, email, name=None):
    topic = await tenants.get_topic(conn, tenant["id"], "news")
    result = await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=tenant["id"],
        topic_id=topic["id"],
        email=email,
        name=name,
        age_attested=True,
        source="import",
        confirmed=True,
        lawful_basis="consent",
    )
    return result.subscriber_id


async def request(conn, tenant, kind="access", email="ada@example.org", now=RECEIVED):
    return await privacy.create_request(
        conn, hash_key=TEST_HASH_KEY, tenant=tenant, kind=kind, email=email, now=now
    )


async def test_a_persons_request_waits_for_verification_and_is_due_in_a_month(
    conn, tenant, settings
):
    """STANDARDS 38: nothing runs before the address is verified."""
    person = await join(conn, tenant, "ada@example.org")
    row = await request(conn, tenant)
    assert (row["status"], row["subscriber_id"]) == ("awaiting_verification", person)
    # Received 31 Jan 13:00 Paris: due at the end of 28 Feb, Paris time.
    assert row["due_at"] == dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC)
    with pytest.raises(Conflict, match="verified"):
        await queue.act(
            conn, settings, tenant=tenant, request_id=row["id"], by="staff", now=RECEIVED
        )
    verified = await privacy.verify_request(conn, tenant["id"], row["id"], RECEIVED)
    assert verified["status"] == "open"
    done = await queue.act(
        conn, settings, tenant=tenant, request_id=row["id"], by="staff", now=RECEIVED
    )
    assert (done.request["status"], done.request["completed_by"]) == ("done", "staff")
    assert done.request["receipt"] == {"action": "data_link_mailed", "link_valid_minutes": 60}


async def test_a_client_removal_is_open_at_once_and_due_in_thirty_business_days(conn, tenant):
    await join(conn, tenant, "ada@example.org")
    row = await request(conn, tenant, kind="client_removal")
    assert row["status"] == "open"
    # Sat 31 Jan: Mon 2 Feb is a holiday, so 3 Feb is day 1; six weeks on, Mon 16 March is
    # day 30; due at its end in Paris (UTC+1 until 29 March).
    assert row["due_at"] == dt.datetime(2026, 3, 16, 23, 0, tzinfo=dt.UTC)


async def test_an_unknown_person_gets_the_same_answer_and_no_address_is_kept(conn, tenant):
    row = await request(conn, tenant, email="nobody@example.org")
    assert row["status"] == "rejected"
    assert row["requester"] is None and row["subscriber_id"] is None
    with pytest.raises(InvalidAddress):
        await request(conn, tenant, email="not an address")


async def test_extension_once_before_the_deadline_and_never_after(conn, tenant):
    """STANDARDS 38"""
    await join(conn, tenant, "ada@example.org")
    row = await request(conn, tenant, kind="erase")
    late = row["due_at"] + dt.timedelta(seconds=1)
    with pytest.raises(ExtensionRefused, match="deadline has passed"):
        await privacy.extend_request(
            conn, tenant=tenant, request_id=row["id"], reason="busy", now=late
        )
    assert (await probes().request_row(conn, id=row["id"]))["extended_due_at"] is None
    extended = await privacy.extend_request(
        conn, tenant=tenant, request_id=row["id"], reason="complex", now=RECEIVED
    )
    # 31 Jan + 3 months = 30 April, end of day in Paris (UTC+2 in summer).
    assert extended["extended_due_at"] == dt.datetime(2026, 4, 30, 22, 0, tzinfo=dt.UTC)
    assert extended["extension_reason"] == "complex"
    with pytest.raises(ExtensionRefused, match="already"):
        await privacy.extend_request(
            conn, tenant=tenant, request_id=row["id"], reason="more", now=RECEIVED
        )


async def test_the_overdue_list_follows_extensions_and_skips_done_requests(conn, tenant, settings):
    await join(conn, tenant, "ada@example.org")
    await join(conn, tenant, "bob@example.org")
    await join(conn, tenant, "cy@example.org")
    late = await request(conn, tenant, email="ada@example.org")
    extended = await request(conn, tenant, email="bob@example.org")
    finished = await request(conn, tenant, email="cy@example.org")
    await privacy.extend_request(
        conn, tenant=tenant, request_id=extended["id"], reason="complex", now=RECEIVED
    )
    await privacy.verify_request(conn, tenant["id"], finished["id"], RECEIVED)
    await queue.act(
        conn,
        settings,
        tenant=tenant,
        request_id=finished["id"],
        by="staff",
        now=RECEIVED,
        access_by="copy",
    )
    march = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    overdue = await privacy.list_requests(conn, tenant_id=tenant["id"], overdue_at=march)
    assert [r["id"] for r in overdue] == [late["id"]]
    may = dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
    overdue = await privacy.list_requests(conn, tenant_id=None, overdue_at=may)
    assert [r["id"] for r in overdue] == [late["id"], extended["id"]]
    assert len(await privacy.list_requests(conn, tenant_id=tenant["id"])) == 3


async def test_partner_export_lists_only_current_consent_and_neutralises_formulas(conn, tenant):
    """STANDARDS 33: suppressed addresses are not handed on."""
    tenant_id = tenant["id"]
    yes = await join(conn, tenant, "yes@example.org", name='=HYPERLINK("http://evil")')
    withdrawn = await join(conn, tenant, "withdrawn@example.org")
    never = await join(conn, tenant, "never@example.org")
    erased = await join(conn, tenant, "erased@example.org")
    for person in (yes, withdrawn, erased):
        await consent.set_partner_consent(
            conn,
            tenant_id=tenant_id,
            subscriber_id=person,
            granted=True,
            source="preference_centre",
        )
    await consent.set_partner_consent(
        conn, tenant_id=tenant_id, subscriber_id=withdrawn, granted=False, source="partner_address"
    )
    await erasure.erase_subscriber(conn, tenant_id=tenant_id, subscriber_id=erased, by="staff")
    out = io.StringIO()
    result = await partners.export_partners(conn, tenant_id=tenant_id, out=out, by="staff")
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["email"] for r in table] == ["yes@example.org"]
    assert table[0]["name"] == '\'=HYPERLINK("http://evil")'
    assert table[0]["consent_given_at"]
    assert result.row_count == 1
    assert [
        r["subscriber_id"] async for r in probes().export_members(conn, export_id=result.export_id)
    ] == [yes]
    assert never not in {int(r["subscriber_id"]) for r in table}


def run_cli(db_dsn, *args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "mailer.cli", *args],
        env=subprocess_env(db_dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_commands_publish_list_and_export(conn, tenant, db_dsn, tmp_path):
    await tenants.create_topic(conn, tenant["id"], slug="notices", name="Notices", kind="notice")
    await join(conn, tenant, "ada@example.org")
    policy_file = tmp_path / "policy.md"
    policy_file.write_bytes("Données personnelles".encode("latin-1"))
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    later = (dt.date.today() + dt.timedelta(days=40)).isoformat()

    bad = run_cli(
        db_dsn,
        "policy",
        "publish",
        str(policy_file),
        "--tenant",
        "acme",
        "--effective",
        later,
        "--summary",
        "x",
    )
    assert bad.returncode == 2 and "not UTF-8" in bad.stderr
    policy_file.write_text("# Policy\n\nWe keep little.\n", encoding="utf-8")
    short = run_cli(
        db_dsn,
        "policy",
        "publish",
        str(policy_file),
        "--tenant",
        "acme",
        "--effective",
        soon,
        "--summary",
        "x",
    )
    assert short.returncode == 1 and "30 days" in short.stderr
    ok = run_cli(
        db_dsn,
        "policy",
        "publish",
        str(policy_file),
        "--tenant",
        "acme",
        "--effective",
        later,
        "--summary",
        "First version",
    )
    assert ok.returncode == 0, ok.stderr
    assert "published version 1" in ok.stdout
    assert "not started" in ok.stderr  # no SMTP_URL in this environment: left as a draft
    proof = run_cli(db_dsn, "policy", "proof", "--tenant", "acme", "--version", "1")
    rows = list(csv.DictReader(io.StringIO(proof.stdout)))
    assert [(r["email"], r["notified_by"]) for r in rows] == [("ada@example.org", "site_notice")]
    status = run_cli(db_dsn, "policy", "status", "--tenant", "acme")
    assert "version 1" in status.stdout and "WARNING" in status.stdout

    requests = run_cli(
        db_dsn,
        "requests",
        "create",
        "--tenant",
        "acme",
        "--kind",
        "erase",
        "--email",
        "ada@example.org",
    )
    unknown = run_cli(
        db_dsn,
        "requests",
        "create",
        "--tenant",
        "acme",
        "--kind",
        "erase",
        "--email",
        "ghost@example.org",
    )
    assert requests.returncode == unknown.returncode == 0
    # The same answer, whether or not the person is known.
    assert requests.stdout.split(";")[1] == unknown.stdout.split(";")[1]
    request_id = requests.stdout.split()[1]
    [verification] = [d async for d in probes().transactional_to(conn, recipient="ada@example.org")]
    assert verification["template"] == "verify_request"
    early = run_cli(db_dsn, "requests", "complete", request_id, "--tenant", "acme")
    assert early.returncode == 1 and "verified" in early.stderr
    listing = run_cli(db_dsn, "requests", "list", "--overdue")
    assert listing.stdout.strip() == "no overdue requests"

    export = run_cli(db_dsn, "partners", "export", "--tenant", "acme")
    assert export.returncode == 0, export.stderr
    assert export.stdout.splitlines() == ["subscriber_id,email,name,consent_given_at"]
    tenant_export = run_cli(db_dsn, "tenant", "export", "acme")
    assert "ada@example.org" in tenant_export.stdout
    refused = run_cli(db_dsn, "tenant", "purge", "acme")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = run_cli(db_dsn, "tenant", "purge", "acme", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert '"subscribers": 1' in purged.stdout
