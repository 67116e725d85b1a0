"""CSV import of subscribers: bad rows reported by line, suppressed and unsubscribed people
skipped, the ledger and the double opt-in mail for everyone imported, resume after a crash
without duplicates, and bad files refused before anything is written."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from mailer import tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.consent import imports
from mailer.consent import writer as consent
from mailer.errors import InvalidInput
from mailer.tokens import Purpose
from tests.conftest import probes

ROWS = 20_000
BAD_EVERY = 100  # 1% bad rows


async def make_tenant(conn, slug="acme"):
    tenant = await tenants.create_tenant(
        conn, slug, name="Acme", sender_address=f"news@{slug}.example", postal_address="1 Road"
    )
    topic = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    return tenant["id"], topic["id"]


def options(**changes):
    values: dict[str, Any] = {
        "lawful_basis": "consent",
        "source": "spring fair 2026",
        "age_attested": True,
    }
    return imports.ImportOptions(**(values | changes))


BAD_KINDS = [
    ("not-an-address", "Bad", "no @ sign"),
    ("two@@ats.example", "Bad", "more than one @"),
    ("", "Empty", "empty"),
    ("spaced out@x.example", "Bad", "space"),
]


def write_list(path, rows=ROWS):
    """Line 1 is the header, so row i is on line i + 2. Returns the bad lines."""
    bad_lines = {}
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\n")
        for i in range(rows):
            line = i + 2
            if i % BAD_EVERY == 7:
                email, name, why = BAD_KINDS[(i // BAD_EVERY) % len(BAD_KINDS)]
                bad_lines[line] = why
                out.write(f"{email},{name}\n")
            elif i % BAD_EVERY == 55:
                bad_lines[line] = "field"
                out.write(f"extra{i}@x.example,Name,extra\n")
            else:
                out.write(f"Person{i}@Example.com,Person {i}\n")
    return bad_lines


async def test_twenty_thousand_rows_with_bad_rows_and_suppressed_people(conn, settings, tmp_path):
    tenant_id, topic_id = await make_tenant(conn)
    path = tmp_path / "list.csv"
    bad_lines = write_list(path)
    tenant_key = tenant_hash_key(settings.hash_key, tenant_id)
    # 30 suppressed earlier (unsubscribed from all marketing elsewhere, bounced, complained)...
    suppressed = [f"person{i}@example.com" for i in range(1010, 1040)]
    for n, email in enumerate(suppressed):
        await consent.suppress(
            conn,
            tenant_id=tenant_id,
            address_key=suppression_key(tenant_key, email),
            scope="all" if n % 2 else "marketing",
            reason="hard_bounce" if n % 2 else "unsubscribe",
            source="test",
        )
    # ... 5 who left this topic, 5 already confirmed on it.
    for i in range(2010, 2020):
        signed = await consent.subscribe(
            conn,
            hash_key=settings.hash_key,
            tenant_id=tenant_id,
            topic_id=topic_id,
            email=f"person{i}@example.com",
            age_attested=True,
            source="web_form",
        )
        await consent.confirm(
            conn,
            hash_key=settings.hash_key,
            tenant_id=tenant_id,
            subscriber_id=signed.subscriber_id,
            topic_id=topic_id,
        )
        if i < 2015:
            await consent.unsubscribe(
                conn,
                tenant_id=tenant_id,
                subscriber_id=signed.subscriber_id,
                topic_id=topic_id,
                source="one_click",
            )
    seen = []
    result = await imports.run_import(
        conn,
        settings,
        tenant_id=tenant_id,
        topic_id=topic_id,
        path=path,
        options=options(),
        progress=lambda done, total: seen.append((done, total)),
    )
    good = ROWS - len(bad_lines)
    assert result["status"] == "done"
    assert result["rows_bad"] == len(bad_lines) == 400
    assert result["rows_skipped"] == 30 + 10
    assert result["rows_imported"] == good - 40
    assert seen[-1] == (ROWS + 1, ROWS + 1)

    errors = [dict(r) async for r in probes().import_error_rows(conn, import_id=result["id"])]
    assert [e["line"] for e in errors] == sorted(bad_lines)
    for error in errors:
        why = bad_lines[error["line"]]
        if why == "field":
            assert error["reason"] == "expected 2 field(s), found 3"
        else:
            assert why in error["reason"], error

    ledger = [dict(r) async for r in probes().import_ledger(conn, tenant_id=tenant_id)]
    assert len(ledger) == result["rows_imported"]
    assert {(e["action"], e["effect"], e["lawful_basis"]) for e in ledger} == {
        ("subscribe", "pending", "consent")
    }
    assert ledger[0]["detail"]["import_id"] == result["id"]
    assert ledger[0]["detail"]["source"] == "spring fair 2026"
    lines = sorted(e["detail"]["line"] for e in ledger)
    assert lines[0] == 2 and len(set(lines)) == len(lines)
    assert not set(lines) & set(bad_lines)

    mails = [dict(r) async for r in probes().import_confirmations(conn, tenant_id=tenant_id)]
    assert len(mails) == result["rows_imported"]
    assert {m["subscriber_id"] for m in mails} == {e["subscriber_id"] for e in ledger}
    [first] = [m for m in mails if m["recipient"] == "Person0@Example.com"]
    url = first["payload"]["confirm_url"]
    assert url.startswith("https://optout.test/c/")
    claims = settings.keyring().verify(url.rsplit("/", 1)[1], Purpose.CONFIRM)
    assert (claims.tenant_id, claims.subscriber_id, claims.object_id) == (
        tenant_id,
        first["subscriber_id"],
        topic_id,
    )

    states = {
        r["email"].lower(): r["state"]
        async for r in probes().import_subscription_states(conn, topic_id=topic_id)
    }
    assert not any(email in states for email in suppressed)
    assert all(states[f"person{i}@example.com"] == "unsubscribed" for i in range(2010, 2015))
    assert all(states[f"person{i}@example.com"] == "confirmed" for i in range(2015, 2020))

    # The same file again: recognised, nothing written twice.
    again = await imports.run_import(
        conn, settings, tenant_id=tenant_id, topic_id=topic_id, path=path, options=options()
    )
    assert again["already_done"] and again["id"] == result["id"]
    assert len([r async for r in probes().import_ledger(conn, tenant_id=tenant_id)]) == len(ledger)


class Crash(Exception):
    pass


async def test_a_crashed_import_resumes_without_duplicates(conn, settings, tmp_path):
    tenant_id, topic_id = await make_tenant(conn)
    path = tmp_path / "list.csv"
    bad_lines = write_list(path, rows=5000)

    def crash_after_first_batch(done, total):
        raise Crash

    with pytest.raises(Crash):
        await imports.run_import(
            conn,
            settings,
            tenant_id=tenant_id,
            topic_id=topic_id,
            path=path,
            options=options(),
            progress=crash_after_first_batch,
        )
    [stopped] = [dict(r) async for r in probes().import_rows(conn, tenant_id=tenant_id)]
    assert stopped["status"] == "failed"
    assert stopped["committed_line"] == imports.BATCH_ROWS + 1
    assert 0 < stopped["rows_imported"] < imports.BATCH_ROWS

    result = await imports.run_import(
        conn, settings, tenant_id=tenant_id, topic_id=topic_id, path=path, options=options()
    )
    assert result["resumed"] and result["id"] == stopped["id"]
    assert result["rows_imported"] == 5000 - len(bad_lines)
    assert result["rows_bad"] == len(bad_lines)
    ledger = [r async for r in probes().import_ledger(conn, tenant_id=tenant_id)]
    mails = [r async for r in probes().import_confirmations(conn, tenant_id=tenant_id)]
    assert len(ledger) == len(mails) == result["rows_imported"]
    assert len({r["subscriber_id"] for r in ledger}) == len(ledger)
    errors = [r async for r in probes().import_error_rows(conn, import_id=result["id"])]
    assert len(errors) == len(bad_lines)


async def test_existing_consent_with_evidence_needs_no_confirmation(conn, settings, tmp_path):
    tenant_id, topic_id = await make_tenant(conn)
    path = tmp_path / "list.csv"
    path.write_text("EMAIL\r\nann@x.example\r\nANN@X.example\r\nbob@x.example\r\n")
    with pytest.raises(InvalidInput) as refused:
        await imports.run_import(
            conn,
            settings,
            tenant_id=tenant_id,
            topic_id=topic_id,
            path=path,
            options=options(existing_consent=True),
        )
    assert refused.value.field == "evidence"
    result = await imports.run_import(
        conn,
        settings,
        tenant_id=tenant_id,
        topic_id=topic_id,
        path=path,
        options=options(existing_consent=True, evidence="Ticked box on the 2025 order form"),
    )
    assert (result["rows_imported"], result["rows_skipped"]) == (2, 1)  # the duplicate
    ledger = [dict(r) async for r in probes().import_ledger(conn, tenant_id=tenant_id)]
    assert {(e["effect"], e["form_text"]) for e in ledger} == {
        ("grant", "Ticked box on the 2025 order form")
    }
    assert [r async for r in probes().import_confirmations(conn, tenant_id=tenant_id)] == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"mail,name\na@x.example,A\n", "email"),
        (b"email,email\na@x.example,b@x.example\n", "repeats"),
        (b"email,age\na@x.example,33\n", "Unknown column"),
        ("email,name\nann@x.example,Ren\u00e9e\n".encode("latin-1"), "not UTF-8"),
        (b"email,name\n" + b"a" * (10 * 1024 * 1024) + b"\n", "longer than"),
    ],
)
async def test_bad_files_are_refused_before_anything_is_written(
    conn, settings, tmp_path, content, message
):
    tenant_id, topic_id = await make_tenant(conn)
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = dict(await probes().import_table_counts(conn))
    with pytest.raises(InvalidInput) as refused:
        await imports.run_import(
            conn, settings, tenant_id=tenant_id, topic_id=topic_id, path=path, options=options()
        )
    assert message in refused.value.message
    assert dict(await probes().import_table_counts(conn)) == before


async def test_import_options_must_be_stated(conn, settings, tmp_path):
    tenant_id, topic_id = await make_tenant(conn)
    path = tmp_path / "list.csv"
    path.write_text("email\na@x.example\n")
    for bad, field in [
        (options(age_attested=False), "age_attested"),
        (options(lawful_basis=" "), "lawful_basis"),
        (options(source="line\nbreak"), "source"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            await imports.run_import(
                conn, settings, tenant_id=tenant_id, topic_id=topic_id, path=path, options=bad
            )
        assert refused.value.field == field
    assert json.loads(json.dumps(dict(await probes().import_table_counts(conn))))["imports"] == 0


async def test_batch_sign_up_follows_the_same_rules_as_subscribe(conn, settings):
    """consent.subscribe_batch is the set-based twin of consent.subscribe for imports: the same
    people end in the same states with the same ledger rows."""
    from mailer.addresses import parse_address
    from mailer.errors import Suppressed

    async def prepare(slug):
        tenant_id, news = await make_tenant(conn, slug)
        notices = await tenants.create_topic(
            conn, tenant_id, slug="notices", name="N", kind="notice"
        )
        key = tenant_hash_key(settings.hash_key, tenant_id)
        scopes: tuple[tuple[str, consent.Scope], ...] = (
            ("m@x.example", "marketing"),
            ("a@x.example", "all"),
        )
        for email, scope in scopes:
            await consent.suppress(
                conn,
                tenant_id=tenant_id,
                address_key=suppression_key(key, email),
                scope=scope,
                reason="unsubscribe" if scope == "marketing" else "complaint",
                source="test",
            )
        for email in ("left@x.example", "pending@x.example", "in@x.example"):
            signed = await consent.subscribe(
                conn,
                hash_key=settings.hash_key,
                tenant_id=tenant_id,
                topic_id=news,
                email=email,
                age_attested=True,
                source="web_form",
            )
            if email != "pending@x.example":
                await consent.confirm(
                    conn,
                    hash_key=settings.hash_key,
                    tenant_id=tenant_id,
                    subscriber_id=signed.subscriber_id,
                    topic_id=news,
                )
            if email == "left@x.example":
                await consent.unsubscribe(
                    conn,
                    tenant_id=tenant_id,
                    subscriber_id=signed.subscriber_id,
                    topic_id=news,
                    source="one_click",
                )
        return tenant_id, news, notices["id"]

    people = [
        "new@x.example",
        "m@x.example",
        "a@x.example",
        "left@x.example",
        "pending@x.example",
        "in@x.example",
    ]

    async def outcome(tenant_id, topic_ids):
        result = {}
        for topic_id in topic_ids:
            async for r in probes().import_subscription_states(conn, topic_id=topic_id):
                result[(topic_id == topic_ids[0], r["email"])] = r["state"]
        ledger = [
            (e["action"], e["effect"], e["lawful_basis"])
            async for e in probes().import_ledger(conn, tenant_id=tenant_id)
        ]
        return result, sorted(ledger)

    one_by_one = await prepare("single")
    for topic_id in one_by_one[1:]:
        for email in people:
            with contextlib.suppress(Suppressed):
                await consent.subscribe(
                    conn,
                    hash_key=settings.hash_key,
                    tenant_id=one_by_one[0],
                    topic_id=topic_id,
                    email=email,
                    age_attested=True,
                    source="import",
                    lawful_basis="consent",
                )
    batched = await prepare("batched")
    for topic_id in batched[1:]:
        await consent.subscribe_batch(
            conn,
            hash_key=settings.hash_key,
            tenant_id=batched[0],
            topic_id=topic_id,
            batch=[consent.BatchRow(n, parse_address(email)) for n, email in enumerate(people, 2)],
            age_attested=True,
            source="import",
            lawful_basis="consent",
        )
    expected = await outcome(one_by_one[0], one_by_one[1:])
    assert await outcome(batched[0], batched[1:]) == expected
    states, ledger = expected
    assert (True, "m@x.example") not in states and states[(False, "m@x.example")] == "pending"
    assert (True, "a@x.example") not in states and (False, "a@x.example") not in states
    assert states[(True, "left@x.example")] == "unsubscribed"
    assert len(ledger) == 6  # new on both topics; m, left, pending and in on notices
