"""The lawful basis of an import is one of a closed set, checked in code and (for new rows) by
the database; a wrong basis written before that rule is corrected by appending one ledger row
per person (`optout import correct`, or the admin API), and `consent history` shows both."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from mailer import api_tokens, migrations, tenants
from mailer.addresses import parse_address
from mailer.consent import imports
from mailer.consent import writer as consent
from mailer.db import connect, queries
from mailer.errors import InvalidInput
from mailer.resources import MIGRATIONS_DIR
from tests.conftest import make_settings, probes, subprocess_env
from tests.support.cli import optout
from unsubscribe_web.app import create_app

PEOPLE = ("ada@example.com", "grace@example.com", "alan@example.com")


async def _tenant(conn: asyncpg.Connection) -> tuple[int, int]:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@acme.example", postal_address="1 Road"
    )
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    return tenant["id"], topic["id"]


async def _old_import(conn: asyncpg.Connection, hash_key: bytes, basis: str) -> tuple[int, int]:
    """What the import wrote before the basis was checked: the import row and one ledger row
    per person, each with its evidence naming the import."""
    tenant_id, topic_id = await _tenant(conn)
    record = await queries().imports.create_import(
        conn,
        tenant_id=tenant_id,
        topic_id=topic_id,
        filename="fair.csv",
        sha256=b"\x01" * 32,
        lawful_basis=basis,
        source="spring fair",
        existing_consent=False,
        evidence=None,
        created_by="cli",
    )
    await consent.subscribe_batch(
        conn,
        hash_key=hash_key,
        tenant_id=tenant_id,
        topic_id=topic_id,
        batch=[consent.BatchRow(n, parse_address(a)) for n, a in enumerate(PEOPLE, start=2)],
        age_attested=True,
        source="import",
        lawful_basis=basis,
        detail={"import_id": record["id"], "source": "spring fair"},
    )
    return tenant_id, record["id"]


@pytest.fixture
async def before_the_rule(empty_db_dsn: str, tmp_path: Path) -> str:
    """A database migrated as it was before 0010_lawful_basis.sql (the rule)."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0010":
            shutil.copy(path, older / path.name)
    settings = make_settings(empty_db_dsn, tmp_path)
    conn = await connect(empty_db_dsn)
    try:
        await migrations.migrate(conn, older, settings=settings)
    finally:
        await conn.close()
    return empty_db_dsn


async def test_a_free_text_basis_is_corrected_and_history_shows_both(before_the_rule, tmp_path):
    settings = make_settings(before_the_rule, tmp_path)
    conn = await connect(before_the_rule)
    try:
        tenant_id, import_id = await _old_import(conn, settings.hash_key, "whatever")
        # The upgrade keeps the old rows (NOT VALID) and refuses new ones.
        await migrations.migrate(conn, settings=settings)
        env = subprocess_env(before_the_rule)

        wrong = optout("import", "correct", str(import_id), "--tenant", "acme",
                       "--lawful-basis", "because", env=env)  # fmt: skip
        assert wrong.returncode == 2 and wrong.stdout == ""
        assert wrong.stderr == (
            "optout: The lawful basis must be one of consent, contract, legal_obligation, "
            "legitimate_interests, not 'because'.\n"
        )
        corrected = optout("import", "correct", str(import_id), "--tenant", "acme",
                           "--lawful-basis", "legitimate interests", env=env)  # fmt: skip
        assert corrected.returncode == 0, corrected.stderr
        assert corrected.stdout == (
            f"import {import_id}: lawful basis 'whatever' corrected to 'legitimate_interests'; "
            "3 ledger rows appended\n"
        )
        ledger = [dict(r) async for r in probes().basis_ledger(conn, tenant_id=tenant_id)]
        assert [(r["action"], r["lawful_basis"]) for r in ledger] == [
            ("subscribe", "whatever")
        ] * 3 + [("correct_basis", "legitimate_interests")] * 3
        corrections = ledger[3:]
        assert {r["subscriber_id"] for r in corrections} == {r["subscriber_id"] for r in ledger[:3]}
        assert all(r["effect"] == "none" and r["source"] == "staff" for r in corrections)
        assert all(
            r["detail"]["old_basis"] == "whatever"
            and r["detail"]["new_basis"] == "legitimate_interests"
            for r in corrections
        )
        record = await imports.get_import(conn, tenant_id, import_id)
        assert record["lawful_basis"] == "legitimate_interests"

        again = optout("import", "correct", str(import_id), "--tenant", "acme",
                       "--lawful-basis", "legitimate_interests", env=env)  # fmt: skip
        assert again.returncode == 0
        assert "nothing changed" in again.stdout
        assert len([r async for r in probes().basis_ledger(conn, tenant_id=tenant_id)]) == 6

        history = optout("consent", "history", "--tenant", "acme", "--email", PEOPLE[0], env=env)
        assert history.returncode == 0, history.stderr
        rows = [line.split() for line in history.stdout.split("oldest first):\n")[1].splitlines()]
        actions = [(r[3], r[4], r[7]) for r in rows[1:] if r[0][:1].isdigit()]
        assert actions == [
            ("subscribe", "pending", "whatever"),
            ("correct_basis", "none", "legitimate_interests"),
        ]
        assert "corrected from 'whatever' to 'legitimate_interests'" in history.stdout

        # Subscriptions are untouched: a correction changes no consent state.
        subs = await consent_states(conn, tenant_id)
        assert subs == {"pending"}

        # New rows with a free-text basis are refused by the database itself.
        with pytest.raises(asyncpg.CheckViolationError):
            await _second_old_style_row(conn, settings.hash_key, tenant_id, import_id)
    finally:
        await conn.close()


async def consent_states(conn: asyncpg.Connection, tenant_id: int) -> set[str]:
    return {r["state"] async for r in probes().subscription_states(conn, tenant_id=tenant_id)}


async def _second_old_style_row(
    conn: asyncpg.Connection, hash_key: bytes, tenant_id: int, import_id: int
) -> None:
    topic = await tenants.get_topic(conn, tenant_id, "news")
    await consent.subscribe_batch(
        conn,
        hash_key=hash_key,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        batch=[consent.BatchRow(2, parse_address("new@example.com"))],
        age_attested=True,
        source="import",
        lawful_basis="whatever",
        detail={"import_id": import_id},
    )


async def test_an_import_with_a_basis_outside_the_set_is_refused(db_dsn, conn, tmp_path):
    """One line, exit 2, and nothing written: no import, no subscriber, no audit line."""
    tenant_id, _ = await _tenant(conn)
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},X\n" for a in PEOPLE))
    before = await probes().audit_count(conn)
    result = optout("import", str(csv), "--tenant", "acme", "--topic", "news",
                    "--lawful-basis", "whatever", "--source", "fair", "--age-attested",
                    env=subprocess_env(db_dsn))  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "optout: The lawful basis must be one of consent, contract, legal_obligation, "
        "legitimate_interests, not 'whatever'.\n"
    )
    assert await probes().import_count(conn, tenant_id=tenant_id) == 0
    assert await consent_states(conn, tenant_id) == set()
    assert await probes().audit_count(conn) == before
    with pytest.raises(InvalidInput):
        imports.ImportOptions("whatever", "fair", True).checked()
    assert imports.ImportOptions("Legal obligation", "fair", True).checked().lawful_basis == (
        "legal_obligation"
    )


async def test_the_api_refuses_a_bad_basis_and_corrects_an_import(
    aiohttp_client, conn, settings, tmp_path
):
    tenant_id, topic_id = await _tenant(conn)
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},X\n" for a in PEOPLE))
    done = await imports.run_import(
        conn,
        settings,
        tenant_id=tenant_id,
        topic_id=topic_id,
        path=csv,
        options=imports.ImportOptions("consent", "fair", age_attested=True),
    )
    token = await api_tokens.create_token(conn, role="marketing", tenant_id=tenant_id)
    client = await aiohttp_client(create_app(settings))
    headers = {"Authorization": f"Bearer {token.secret}"}
    base = "/api/v1/tenants/acme/imports"

    refused = await client.post(
        base,
        params={"topic": "news", "lawful_basis": "whatever", "source": "x", "age_attested": "1"},
        data="email\nnew@example.com\n",
        headers=headers | {"Content-Type": "text/csv"},
    )
    assert refused.status == 400
    assert (await refused.json())["error"]["field"] == "lawful_basis"
    assert await probes().import_count(conn, tenant_id=tenant_id) == 1

    bad = await client.post(
        f"{base}/{done['id']}/correct", json={"lawful_basis": "because"}, headers=headers
    )
    assert bad.status == 400
    reply = await client.post(
        f"{base}/{done['id']}/correct", json={"lawful_basis": "contract"}, headers=headers
    )
    assert reply.status == 200, await reply.text()
    body = await reply.json()
    assert body | {"id": 0} == {
        "id": 0,
        "old_basis": "consent",
        "lawful_basis": "contract",
        "people": 3,
        "changed": True,
    }
    ledger = [dict(r) async for r in probes().basis_ledger(conn, tenant_id=tenant_id)]
    assert [(r["action"], r["lawful_basis"], r["source"]) for r in ledger[3:]] == [
        ("correct_basis", "contract", "api")
    ] * 3
    audited = [r async for r in probes().audit_entries(conn) if r["target_type"] == "import"]
    assert audited[-1]["action"] == "import.correct_basis"
    assert audited[-1]["detail"] == {"old_basis": "consent", "new_basis": "contract", "people": 3}


async def test_the_same_file_with_another_basis_names_the_correction(db_dsn, conn, tmp_path):
    """Re-running an import to change its basis imports nothing and says how to correct it."""
    await _tenant(conn)
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\n" + "".join(f"{a},X\n" for a in PEOPLE))
    env = subprocess_env(db_dsn)

    def run(basis: str):
        return optout("import", str(csv), "--tenant", "acme", "--topic", "news",
                      "--lawful-basis", basis, "--source", "fair", "--age-attested",
                      env=env)  # fmt: skip

    first = run("consent")
    assert first.returncode == 0, first.stderr
    import_id = first.stdout.split()[1]
    again = run("contract")
    assert again.returncode == 0
    assert again.stdout == first.stdout  # the first import's own summary, nothing new
    assert "this file was imported already" in again.stderr
    assert (
        f"to change it: optout import correct {import_id} --tenant acme --lawful-basis contract"
    ) in again.stderr
    tenant = await tenants.get_tenant(conn, "acme")
    ledger = [r async for r in probes().basis_ledger(conn, tenant_id=tenant["id"])]
    assert [r["lawful_basis"] for r in ledger] == ["consent"] * 3
