"""`optout consent history` as compliance staff run it: one person's subscriptions and ledger."""

from __future__ import annotations

import datetime as dt
import json

from mailer import tenants
from mailer.consent import writer as consent
from mailer.rights import policy
from tests.conftest import TEST_HASH_KEY, probes, subprocess_env
from tests.support.cli import optout

ADA = "Ada.Lovelace@Example.com"
PHONE = "Mozilla/5.0 (iPhone) Mail"


async def make_tenant(conn, slug: str) -> dict[str, int]:
    tenant = await tenants.create_tenant(
        conn,
        slug,
        name=slug.title(),
        sender_address=f"news@{slug}.example",
        postal_address="1 Road",
        time_zone="Europe/Paris",
    )
    ids = {"tenant": tenant["id"]}
    for topic in ("news", "offers"):
        row = await tenants.create_topic(
            conn, tenant["id"], slug=topic, name=topic.title(), kind="marketing"
        )
        ids[topic] = row["id"]
    return ids


async def subscribe(conn, world: dict[str, int], topic: str, email: str = ADA, **kw):
    return await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        topic_id=world[topic],
        email=email,
        age_attested=True,
        **kw,
    )


async def ada_in_acme(conn) -> dict[str, int]:
    """Ada: news through the web form and its confirmation link, offers from an import, then
    a one-click unsubscribe from offers; all under policy version 1."""
    world = await make_tenant(conn, "acme")
    tenant = await tenants.get_tenant(conn, "acme")
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    await policy.publish(
        conn,
        tenant=tenant,
        body="# Privacy\nWe keep your address.",
        summary="First version",
        effective_at=now + dt.timedelta(seconds=1),
        now=now,
        force_reason="first policy",
    )
    form = consent.Evidence(
        ip="198.51.100.4", user_agent="Firefox", form_text="Yes, send me the news (v3)"
    )
    joined = await subscribe(conn, world, "news", source="web_form", evidence=form)
    await consent.confirm(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=world["tenant"],
        subscriber_id=joined.subscriber_id,
        topic_id=world["news"],
        evidence=consent.Evidence(ip="198.51.100.4", detail={"channel": "confirm_link"}),
    )
    await subscribe(
        conn,
        world,
        "offers",
        source="import",
        confirmed=True,
        lawful_basis="consent",
        evidence=consent.Evidence(form_text="Shop checkout box", detail={"line": 2}),
    )
    left = await consent.unsubscribe_from_link(
        conn,
        tenant_id=world["tenant"],
        subscriber_id=joined.subscriber_id,
        topic_id=world["offers"],
        source="one_click",
        evidence=consent.Evidence(
            ip="192.0.2.7", user_agent=PHONE, detail={"channel": "one_click"}
        ),
    )
    assert left["changed"]
    return world | {"ada": joined.subscriber_id}


async def test_history_lists_subscriptions_and_ledger_rows_with_evidence(db_dsn, conn):
    """STANDARDS 35: staff can show a person's consent proof, every row with its evidence,
    and the read itself is audited (ids only, never the address)."""
    world = await ada_in_acme(conn)
    env = subprocess_env(db_dsn)
    # The address as the person typed it elsewhere: found through the normalised keyed hash.
    shown = optout(
        "consent", "history", "--tenant", "acme", "--email", " ada.lovelace@EXAMPLE.com", env=env
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.startswith(f"subscriber {world['ada']} (active) in tenant acme")
    assert "times in Europe/Paris" in out
    subscriptions = out.split("subscriptions:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[:2] for line in subscriptions] == [
        ["news", "confirmed"],
        ["offers", "unsubscribed"],
    ]
    ledger = out.split("oldest first):\n")[1].splitlines()
    assert ledger[0].split() == ["time", "action", "effect", "topic", "source", "basis", "policy"]
    rows = [line for line in ledger[1:] if not line.startswith("      ")]
    # Date, time, zone abbreviation (CET or CEST), then the columns.
    assert [r.split()[3:] for r in rows] == [
        ["subscribe", "pending", "news", "web_form", "-", "v1"],
        ["confirm", "grant", "news", "double_opt_in", "-", "v1"],
        ["subscribe", "grant", "offers", "import", "consent", "v1"],
        ["unsubscribe", "withdraw", "offers", "one_click", "-", "v1"],
    ]
    assert all(r.split()[2] in ("CET", "CEST") for r in rows)
    last = ledger[-1].strip()
    assert last.startswith("evidence ") and "ip 192.0.2.7" in last
    assert f'user agent "{PHONE}"' in last and 'channel "one_click"' in last
    assert 'form text "Yes, send me the news (v3)"' in out

    as_json = optout("consent", "history", "--tenant", "acme", "--email", ADA, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["subscriber_id"] == world["ada"] and report["time_zone"] == "Europe/Paris"
    assert [(s["topic"], s["state"]) for s in report["subscriptions"]] == [
        ("news", "confirmed"),
        ("offers", "unsubscribed"),
    ]
    events = report["events"]
    assert [(e["action"], e["source"], e["topic"]) for e in events] == [
        ("subscribe", "web_form", "news"),
        ("confirm", "double_opt_in", "news"),
        ("subscribe", "import", "offers"),
        ("unsubscribe", "one_click", "offers"),
    ]
    times = [dt.datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert times == sorted(times) and all(t.utcoffset() in _PARIS_OFFSETS for t in times)
    assert all(e["policy_version"] == 1 for e in events)
    assert events[2]["lawful_basis"] == "consent"
    assert events[-1]["evidence"] | {"id": 0} == {
        "id": 0,
        "erased": False,
        "ip": "192.0.2.7",
        "user_agent": PHONE,
        "form_text": None,
        "message_id": None,
        "detail": {"channel": "one_click"},
    }

    audited = [r async for r in probes().audit_entries(conn) if r["action"] == "consent_history"]
    assert [(r["actor"], r["tenant_id"], r["target_type"], r["target_id"]) for r in audited] == [
        ("cli", world["tenant"], "subscriber", world["ada"])
    ] * 2
    assert all("ada" not in json.dumps(r["detail"]).lower() for r in audited)


_PARIS_OFFSETS = (dt.timedelta(hours=1), dt.timedelta(hours=2))


async def test_unknown_other_tenant_and_malformed_addresses(db_dsn, conn):
    """An address not in the tenant says only that (exit 1), even when another tenant has the
    person; a malformed address is bad input (exit 2). Neither read is audited."""
    await ada_in_acme(conn)
    beta = await make_tenant(conn, "beta")
    await subscribe(conn, beta, "news", email="grace@example.org", source="web_form")
    env = subprocess_env(db_dsn)

    unknown = optout(
        "consent", "history", "--tenant", "acme", "--email", "nobody@example.org", env=env
    )
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr == "optout: no subscriber with that address in tenant acme\n"

    elsewhere = optout(
        "consent", "history", "--tenant", "acme", "--email", "grace@example.org", env=env
    )
    assert elsewhere.returncode == 1 and elsewhere.stdout == ""
    assert elsewhere.stderr == unknown.stderr
    found = optout(
        "consent", "history", "--tenant", "beta", "--email", "grace@example.org", env=env
    )
    assert found.returncode == 0 and "news" in found.stdout and "offers" not in found.stdout

    malformed = optout(
        "consent", "history", "--tenant", "acme", "--email", "ada@@example", "--json", env=env
    )
    assert malformed.returncode == 2 and malformed.stdout == ""
    assert malformed.stderr.startswith("optout: ") and len(malformed.stderr.splitlines()) == 1

    audited = [r async for r in probes().audit_entries(conn) if r["action"] == "consent_history"]
    assert [r["target_type"] for r in audited] == ["subscriber"]  # beta's found read only
