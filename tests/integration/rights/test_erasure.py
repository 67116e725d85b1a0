"""Erasure of a person, of stale sign-ups and of a whole tenant: afterwards a search of every
table and column finds neither address, name nor IP; the keyed-hash suppression keeps the
address from coming back."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from mailer import outbox, tenants
from mailer.consent import imports
from mailer.consent import writer as consent
from mailer.errors import Suppressed
from mailer.inbound import claims
from mailer.inbound.authentication import UNCHECKED
from mailer.rights import erasure, partners, privacy
from mailer.sending import campaigns
from tests.conftest import TEST_HASH_KEY, probes
from tests.support.mailer_env import address_key, mail_settings, make_tenant

EMAIL = "Ada.Lovelace@Example.org"
NAME = "Ada Lovelace"
IP = "198.51.100.23"
OTHER = "grace.hopper@example.net"


async def holders(conn, needle: str) -> list[tuple[str, str]]:
    """Every (table, column) in the database that still holds ``needle``."""
    await probes().define_find_anywhere(conn)
    return [
        (r["tbl"], r["col"]) async for r in probes().find_anywhere(conn, needle=needle) if r["hits"]
    ]


async def join(conn, tenant_id, slug, email, name=None, ip=IP, confirmed=True):
    topic = await tenants.get_topic(conn, tenant_id, slug)
    result = await consent.subscribe(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        email=email,
        name=name,
        age_attested=True,
        source="web_form",
        evidence=consent.Evidence(
            ip=ip,
            user_agent=f"Mozilla/5.0 ({name})",
            form_text=f"Yes, {name} wants the newsletter",
            message_id=f"<{email}>",
        ),
    )
    if confirmed:
        await consent.confirm(
            conn,
            hash_key=TEST_HASH_KEY,
            tenant_id=tenant_id,
            subscriber_id=result.subscriber_id,
            topic_id=topic["id"],
            evidence=consent.Evidence(ip=ip, message_id=f"<confirm.{email}>"),
        )
    return result.subscriber_id


@pytest.fixture
async def world(conn, tmp_path, settings):
    tenant, _ = await make_tenant(conn, tmp_path)
    await tenants.create_topic(conn, tenant["id"], slug="notices", name="Notices", kind="notice")
    person = await join(conn, tenant["id"], "newsletter", EMAIL, NAME)
    await join(conn, tenant["id"], "notices", EMAIL, NAME)
    other = await join(conn, tenant["id"], "newsletter", OTHER, "Grace Hopper", ip="192.0.2.99")
    return {"tenant": await tenants.get_tenant(conn, "acme"), "person": person, "other": other}


async def leave_traces(conn, settings, world):
    """Everything a busy person leaves: queued mail of both kinds, a bounce reply quoting the
    address, a raw inbound message, a data request, a partner export."""
    tenant_id, person = world["tenant"]["id"], world["person"]
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant_id,
        topic_slug="newsletter",
        name="Spring",
        template="newsletter",
        subject="Spring",
        content={"headline": "Hi", "intro": "News", "blocks": []},
    )
    # Started but never sent: the relay is never reached in this test.
    campaign_queued = await campaigns.start(
        conn, mail_settings(settings, 1), tenant_id, campaign["id"]
    )
    assert campaign_queued == 2
    sent = await outbox.enqueue_transactional(
        conn,
        tenant_id=tenant_id,
        subscriber_id=person,
        recipient=EMAIL,
        template="confirm",
        payload={"confirm_url": f"https://optout.test/c/x?for={EMAIL}", "to": NAME},
    )
    await probes().set_reply(conn, id=sent, last_reply=f"550 5.1.1 <{EMAIL}>: no such user")
    await probes().add_inbound(
        conn,
        tenant_id=tenant_id,
        subscriber_id=person,
        delivery_id=sent,
        envelope_from=EMAIL,
        envelope_rcpt="bounces+abc@news.example.com",
        raw=f"From: {NAME} <{EMAIL}>\r\nReceived: from [{IP}]\r\n\r\nbye\r\n".encode(),
        parsed={"recipient": EMAIL},
    )
    await privacy.create_request(
        conn,
        hash_key=TEST_HASH_KEY,
        tenant=world["tenant"],
        kind="access",
        email=EMAIL,
        now=dt.datetime.now(dt.UTC),
    )
    # A partner withdrawal mailed before the address was known: a claim holding it.
    await claims.take_claim(
        conn, settings, tenant_id=tenant_id, sender=EMAIL, auth=UNCHECKED, sending_host=IP,
        now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    await consent.set_partner_consent(
        conn, tenant_id=tenant_id, subscriber_id=person, granted=True, source="preference_centre"
    )
    export = await partners.export_partners(conn, tenant_id=tenant_id, out=io.StringIO(), by="t")
    return export.export_id, sent


async def test_after_erasure_no_table_or_column_holds_the_address_name_or_ip(conn, settings, world):
    """STANDARDS 40: no column, queue row or log holds the email or name; queued mail is
    cancelled; the partner exports that included the person are listed."""
    export_id, transactional = await leave_traces(conn, settings, world)
    for needle in (EMAIL, NAME, IP):
        assert await holders(conn, needle), f"the set-up left no trace of {needle}"
    assert await probes().searched_columns(conn) > 40

    result = await erasure.erase_subscriber(
        conn, tenant_id=world["tenant"]["id"], subscriber_id=world["person"], by="staff"
    )

    for needle in (EMAIL, EMAIL.lower(), NAME, IP):
        assert await holders(conn, needle) == [], needle
    assert not result.already_erased
    assert [e["id"] for e in result.partner_exports] == [export_id]
    assert result.receipt["partner_exports"] == [export_id]
    assert result.receipt["erased_by"] == "staff"
    assert result.receipt["removed"]["subscribers"] == 1
    assert result.receipt["removed"]["deliveries_cancelled"] == 2  # campaign + transactional
    assert (await probes().delivery_row(conn, id=transactional))["state"] == "cancelled"
    # The other person is untouched.
    assert await holders(conn, OTHER) == [
        ("consent_evidence", "message_id"),
        ("subscribers", "email"),
    ]
    assert await holders(conn, "192.0.2.99") == [("consent_evidence", "ip")]
    # The ledger's ids stay, and the suppression is the keyed hash of the address.
    key = address_key(settings, world["tenant"]["id"], EMAIL)
    suppression = await probes().suppression_of(
        conn, tenant_id=world["tenant"]["id"], address_key=key
    )
    assert (suppression["scope"], suppression["reason"]) == ("all", "erasure")


async def test_an_erased_address_cannot_be_signed_up_again_by_staff_or_import(conn, world):
    tenant_id = world["tenant"]["id"]
    await erasure.erase_subscriber(
        conn, tenant_id=tenant_id, subscriber_id=world["person"], by="staff"
    )
    topic = await tenants.get_topic(conn, tenant_id, "newsletter")
    for source in ("import", "staff", "web_form"):
        with pytest.raises(Suppressed):
            await consent.subscribe(
                conn,
                hash_key=TEST_HASH_KEY,
                tenant_id=tenant_id,
                topic_id=topic["id"],
                email=EMAIL.upper(),
                age_attested=True,
                source=source,
                confirmed=source == "import",
                lawful_basis="consent",
            )
    assert await holders(conn, EMAIL) == []


async def test_erasing_twice_changes_nothing_and_returns_the_first_receipt(conn, world):
    first = await erasure.erase_subscriber(
        conn, tenant_id=world["tenant"]["id"], subscriber_id=world["person"], by="staff"
    )
    events = len([e async for e in probes().all_events(conn)])
    again = await erasure.erase_subscriber(
        conn, tenant_id=world["tenant"]["id"], subscriber_id=world["person"], by="staff"
    )
    assert again.already_erased
    assert again.receipt["id"] == first.receipt["id"]
    assert len([e async for e in probes().all_events(conn)]) == events


async def test_the_access_export_of_an_erased_person_holds_no_personal_data(conn, world):
    """STANDARDS 39, 40"""
    before = await privacy.access_export(conn, world["tenant"]["id"], world["person"])
    assert before["profile"]["email"] == EMAIL
    assert any(e["ip"] == IP for e in before["consent_history"])
    await erasure.erase_subscriber(
        conn, tenant_id=world["tenant"]["id"], subscriber_id=world["person"], by="staff"
    )
    after = await privacy.access_export(conn, world["tenant"]["id"], world["person"])
    text = repr(after)
    for needle in (EMAIL, NAME, IP):
        assert needle not in text
    assert after["profile"]["status"] == "erased"
    assert after["consent_history"], "the ledger's anonymous rows stay"


async def test_a_tenant_purge_clears_that_tenant_and_touches_no_other(
    conn, settings, world, tmp_path
):
    """STANDARDS 41: the tenant-scoped export-all and purge-all."""
    other_tenant = await tenants.create_tenant(
        conn, "globex", name="Globex", sender_address="news@globex.example", postal_address="2 Rd"
    )
    await tenants.create_topic(
        conn, other_tenant["id"], slug="newsletter", name="News", kind="marketing"
    )
    # The same person at another tenant: that tenant keeps its own copy.
    await join(conn, other_tenant["id"], "newsletter", EMAIL, NAME, ip="203.0.113.5")
    await leave_traces(conn, settings, world)
    # A claim from someone who never subscribed: only the tenant purge reaches it.
    await claims.take_claim(
        conn, settings, tenant_id=world["tenant"]["id"], sender="stranger@purge.example",
        auth=UNCHECKED, sending_host="198.51.100.77", now=dt.datetime.now(dt.UTC),
    )  # fmt: skip

    export = await erasure.export_tenant(conn, tenant=world["tenant"], by="staff")
    assert {s["email"] for s in export["subscribers"]} == {EMAIL, OTHER}
    assert "dkim_key_path" not in export["tenant"]
    assert "dkim_ed25519_key_path" not in export["tenant"]

    receipt = await erasure.purge_tenant(conn, tenant=world["tenant"], by="staff")
    assert receipt["removed"]["subscribers"] == 2
    for needle in (OTHER, "Grace Hopper", "192.0.2.99", IP, "stranger@purge.example"):
        assert await holders(conn, needle) == [], needle
    assert await holders(conn, "198.51.100.77") == []
    # Globex's subscriber (same address, other tenant) is untouched.
    assert sorted(await holders(conn, EMAIL)) == [
        ("consent_evidence", "message_id"),
        ("subscribers", "email"),
    ]
    assert await holders(conn, "203.0.113.5") == [("consent_evidence", "ip")]
    actions = [
        r["action"] async for r in probes().audit_actions(conn, tenant_id=world["tenant"]["id"])
    ]
    assert "tenant.export" in actions and "tenant.purge" in actions
    after = await erasure.export_tenant(conn, tenant=world["tenant"], by="staff")
    assert EMAIL not in repr(after) and OTHER not in repr(after)


async def test_unconfirmed_sign_ups_are_purged_after_thirty_days_and_may_sign_up_again(conn, world):
    tenant_id = world["tenant"]["id"]
    pending = await join(conn, tenant_id, "newsletter", "slow@example.org", "Slow", confirmed=False)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    assert await erasure.purge_unconfirmed(conn, tenant_id=tenant_id, now=soon) == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    assert await erasure.purge_unconfirmed(conn, tenant_id=tenant_id, now=later) == 1
    assert await holders(conn, "slow@example.org") == []
    assert await holders(conn, EMAIL) != []  # confirmed people stay
    again = await join(conn, tenant_id, "newsletter", "slow@example.org", "Slow", confirmed=False)
    assert again != pending  # no suppression: a fresh sign-up is welcome


async def test_the_unconfirmed_purge_age_is_a_tenant_setting(conn, world):
    assert erasure.unconfirmed_days(world["tenant"]) == 30
    tenant = await tenants.update_tenant(conn, "acme", {"limits": {"unconfirmed_purge_days": 7}})
    assert erasure.unconfirmed_days(tenant) == 7


async def test_a_later_import_of_the_erased_address_is_skipped_and_keeps_no_trace(
    conn, settings, world, tmp_path
):
    tenant_id = world["tenant"]["id"]
    await erasure.erase_subscriber(conn, tenant_id=tenant_id, subscriber_id=world["person"], by="t")
    path = tmp_path / "list.csv"
    path.write_text(f"email,name\n{EMAIL.upper()},{NAME}\nnew@example.org,New\n")
    topic = await tenants.get_topic(conn, tenant_id, "newsletter")
    result = await imports.run_import(
        conn,
        settings,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        path=path,
        options=imports.ImportOptions(lawful_basis="consent", source="fair", age_attested=True),
    )
    assert (result["rows_imported"], result["rows_skipped"]) == (1, 1)
    for needle in (EMAIL, NAME):
        assert await holders(conn, needle) == [], needle
