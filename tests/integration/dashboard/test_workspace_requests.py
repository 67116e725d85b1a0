"""The request queue through the real app on real Postgres: each kind acted on by compliance
and closed with its receipt, a partner withdrawal attached then withdrawn (a ledger row naming
the request), closing without the action refused, a rejection and an extension mailed with
their reason, a client's CSV list answered with counts; and the sign-up form's partner box
with the partner export that follows it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import pytest

from mailer.consent import writer as consent
from mailer.db import queries
from mailer.rights import partners
from tests.conftest import probes
from tests.support.api_world import sending_settings
from tests.support.mailer_env import address_key
from tests.support.workspace import Tenant, csrf_of, ready_tenant, sign_in
from unsubscribe_web.app import create_app
from unsubscribe_web.public.subscribe import AGE_FIELD


@pytest.fixture
def app_settings(settings):
    return sending_settings(settings)


@pytest.fixture
async def client(aiohttp_client, app_settings):
    return await aiohttp_client(create_app(app_settings))


@pytest.fixture
async def acme(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "acme")


async def page(client, cookie, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text: str = await response.text()
    assert response.status == status, text
    return text


async def submit(client, cookie, path: str, data: dict[str, str], status: int = 303) -> Any:
    form = await page(client, cookie, "/dashboard/t/acme/requests")
    response = await client.post(
        path, data=data | {"csrf": csrf_of(form)}, headers=cookie, allow_redirects=False
    )
    assert response.status == status, await response.text()
    return response


async def one(conn, request_id: int) -> dict[str, Any]:
    [row] = [dict(r) async for r in probes().workspace_requests(conn) if r["id"] == request_id]
    return row


async def exported(conn, t: Tenant) -> list[str]:
    out = io.StringIO()
    await partners.export_partners(conn, tenant_id=t.id, out=out, by="test")
    return [r["email"] for r in csv.DictReader(io.StringIO(out.getvalue()))]


async def grant_partners(conn, t: Tenant, subscriber_id: int) -> None:
    await consent.set_partner_consent(
        conn, tenant_id=t.id, subscriber_id=subscriber_id, granted=True, source="preference_centre"
    )


async def test_a_partner_withdrawal_is_attached_then_withdrawn_with_a_ledger_row(
    client, conn, acme
):
    """STANDARDS 36: mail to the partner address that matched nobody becomes a request; staff
    attach it by exact address; only the action closes it, and it withdraws the consent."""
    person, address = next(iter(acme.people.items()))
    await grant_partners(conn, acme, person)
    assert await exported(conn, acme) == [address]
    request_id = await queries().inbound.insert_partner_request(
        conn,
        tenant_id=acme.id,
        requester="old-address@example.net",
        received_at=dt.datetime.now(dt.UTC),
        detail={"partner_claim_id": 1, "confirmed_by": "mailbox"},
    )
    cookie = await sign_in(client, acme.tokens["compliance"])
    base = f"/dashboard/t/acme/requests/{request_id}"
    queue = await page(client, cookie, "/dashboard/t/acme/requests")
    assert f"Request {request_id}" in queue and "Partner-sharing withdrawal" in queue

    # Done without the action is impossible: nobody is attached yet.
    refused = await submit(client, cookie, f"{base}/act", {}, status=409)
    assert "Attach this request to a subscriber first" in await refused.text()
    assert (await one(conn, request_id))["status"] == "open"
    wrong = await submit(client, cookie, f"{base}/attach", {"email": "no@example.org"}, 404)
    assert "No subscriber has that address" in await wrong.text()

    await submit(client, cookie, f"{base}/attach", {"email": address.upper()})
    assert (await one(conn, request_id))["subscriber_id"] == person
    await submit(client, cookie, f"{base}/act", {})
    row = await one(conn, request_id)
    assert row["status"] == "done"
    assert row["receipt"] == {"action": "partner_consent_withdrawn", "subscriber_id": person}
    ledger = [dict(r) async for r in probes().partner_ledger(conn, subscriber_id=person)]
    assert [(r["action"], r["source"]) for r in ledger] == [
        ("partner_grant", "preference_centre"),
        ("partner_withdraw", "partner_address"),
    ]
    assert ledger[-1]["detail"]["data_request_id"] == request_id
    assert await exported(conn, acme) == []
    shown = await page(client, cookie, base)
    assert "Receipt" in shown and "partner consent withdrawn" in shown


async def test_a_rejection_mails_its_reason_and_the_right_to_complain(client, conn, acme):
    """STANDARDS 65: Art. 12(4)."""
    person, address = next(iter(acme.people.items()))
    cookie = await sign_in(client, acme.tokens["compliance"])
    await submit(client, cookie, "/dashboard/t/acme/requests", {"kind": "erase", "email": address})
    [row] = [r async for r in probes().workspace_requests(conn)]
    assert (row["kind"], row["status"], row["subscriber_id"]) == (
        "erase",
        "awaiting_verification",
        person,
    )
    base = f"/dashboard/t/acme/requests/{row['id']}"
    refused = await submit(client, cookie, f"{base}/act", {}, status=409)
    assert "verified" in await refused.text()
    empty = await submit(client, cookie, f"{base}/reject", {"reason": "  "}, status=400)
    assert "Give the reason" in await empty.text()
    reason = "We cannot confirm the request came from the holder of the address."
    await submit(client, cookie, f"{base}/reject", {"reason": reason})
    rejected = await one(conn, row["id"])
    assert (rejected["status"], rejected["rejection_reason"]) == ("rejected", reason)
    mails = [d async for d in probes().transactional_to(conn, recipient=address)]
    assert [m["template"] for m in mails] == ["verify_request", "request_rejected"]
    assert mails[-1]["payload"]["reason"] == reason
    assert (await probes().subscriber_row(conn, id=person))["status"] == "active"
    again = await submit(client, cookie, f"{base}/act", {}, status=409)
    assert "rejected" in await again.text()


async def test_an_extension_is_mailed_with_its_reason_and_new_date(client, conn, acme):
    """STANDARDS 38"""
    address = next(iter(acme.people.values()))
    cookie = await sign_in(client, acme.tokens["compliance"])
    await submit(client, cookie, "/dashboard/t/acme/requests", {"kind": "access", "email": address})
    [row] = [r async for r in probes().workspace_requests(conn)]
    base = f"/dashboard/t/acme/requests/{row['id']}"
    await submit(client, cookie, f"{base}/extend", {"reason": "Records in three systems"})
    extended = await one(conn, row["id"])
    assert extended["extended_due_at"] > extended["due_at"]
    mail = [d async for d in probes().transactional_to(conn, recipient=address)][-1]
    assert mail["template"] == "request_extended"
    assert mail["payload"]["reason"] == "Records in three systems"
    assert dt.date.fromisoformat(mail["payload"]["due"]) > dt.date.today()
    twice = await submit(client, cookie, f"{base}/extend", {"reason": "more"}, status=409)
    assert "already extended" in await twice.text()


async def test_a_clients_csv_is_answered_with_erased_suppressed_and_not_found(
    client, conn, acme, app_settings
):
    """STANDARDS 41: the client's list by API, acted on by compliance in the queue."""
    people = list(acme.people.items())
    (erased_id, erased_address), (gone_id, gone_address) = people[0], people[1]
    await consent.suppress(
        conn,
        tenant_id=acme.id,
        address_key=address_key(app_settings, acme.id, "left@example.org"),
        scope="all",
        reason="complaint",
        source="complaint",
    )
    body = (
        f"name,email\nA,{erased_address}\nB,left@example.org\nC,nobody@example.org\n"
        f"D,not an address\nE,{erased_address}\n"
    )
    response = await client.post(
        "/api/v1/tenants/acme/client-removals",
        data=body.encode(),
        headers={
            "Authorization": f"Bearer {acme.tokens['client']}",
            "Content-Type": "text/csv",
        },
    )
    created = await response.json()
    assert response.status == 201, created
    assert created["kind"] == "client_removal" and created["status"] == "open"
    assert created["detail"]["addresses"] == 3 and created["detail"]["bad_lines"] == [5]
    # Only keyed hashes are kept: no address of the list is stored.
    stored = await one(conn, created["id"])
    assert "@" not in repr(stored["detail"]) and stored["removal_addresses"] == 3
    # 30 business days: six calendar weeks at least.
    due = dt.datetime.fromisoformat(created["due_at"])
    assert due - dt.datetime.now(dt.UTC) > dt.timedelta(days=40)

    cookie = await sign_in(client, acme.tokens["compliance"])
    await submit(client, cookie, f"/dashboard/t/acme/requests/{created['id']}/act", {})
    done = await one(conn, created["id"])
    assert done["status"] == "done"
    assert {k: done["receipt"][k] for k in ("erased", "suppressed", "not_found")} == {
        "erased": 1,
        "suppressed": 1,
        "not_found": 1,
    }
    assert (await probes().subscriber_row(conn, id=erased_id))["status"] == "erased"
    assert (await probes().subscriber_row(conn, id=gone_id))["status"] == "active"
    assert gone_address not in body

    empty = await client.post(
        "/api/v1/tenants/acme/client-removals",
        data=b"email\nnot an address\n",
        headers={
            "Authorization": f"Bearer {acme.tokens['client']}",
            "Content-Type": "text/csv",
        },
    )
    assert empty.status == 400
    assert len([r async for r in probes().workspace_requests(conn)]) == 1


async def test_the_queue_lists_overdue_first(client, conn, acme):
    people = list(acme.people.values())
    now = dt.datetime.now(dt.UTC)
    ids = []
    for received in (now - dt.timedelta(days=3), now - dt.timedelta(days=60)):
        row = await queries().privacy.insert_request(
            conn,
            tenant_id=acme.id,
            subscriber_id=None,
            kind="partner_withdrawal",
            requester=people[1],
            status="open",
            received_at=received,
            due_at=received + dt.timedelta(days=30),
            verified_at=received,
            detail={},
        )
        ids.append(row["id"])
    cookie = await sign_in(client, acme.tokens["compliance"])
    html = await page(client, cookie, "/dashboard/t/acme/requests")
    assert html.index(f"Request {ids[1]}") < html.index(f"Request {ids[0]}")
    assert "1 overdue" in html


async def test_the_signup_partner_box_is_unticked_and_a_tick_is_one_ledger_row(
    client, conn, acme, app_settings
):
    """STANDARDS 35: never pre-ticked; the consent text is the evidence."""
    form = await page(client, {}, "/s/acme/newsletter")
    box = re.search(r'<input type="checkbox" id="partners"[^>]*>', form)
    assert box is not None and "checked" not in box.group(0)
    partner_text = re.search(r'<span id="partner-text">([^<]+)</span>', form)
    assert partner_text is not None and "partners" in partner_text.group(1)

    for email, ticked in (("plain@example.org", False), ("sharer@example.org", True)):
        data = {"email": email, AGE_FIELD: "yes"} | ({"partners": "yes"} if ticked else {})
        response = await client.post("/s/acme/newsletter", data=data)
        assert response.status == 200, await response.text()
    plain = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=acme.id, email_key=address_key(app_settings, acme.id, "plain@example.org")
    )
    sharer = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=acme.id, email_key=address_key(app_settings, acme.id, "sharer@example.org")
    )
    assert not plain["partner_consent"] and sharer["partner_consent"]
    assert [r async for r in probes().partner_ledger(conn, subscriber_id=plain["id"])] == []
    [row] = [dict(r) async for r in probes().partner_ledger(conn, subscriber_id=sharer["id"])]
    assert (row["action"], row["source"]) == ("partner_grant", "web_form")
    assert row["form_text"] == partner_text.group(1).replace("&#39;", "'")
    # Not shared before the mailbox confirms the sign-up.
    assert "sharer@example.org" not in await exported(conn, acme)


async def test_the_partner_export_drops_withdrawn_and_suppressed_people(conn, acme, app_settings):
    """STANDARDS 33, 36"""
    ids = list(acme.people)
    for person in ids:
        await grant_partners(conn, acme, person)
    assert await exported(conn, acme) == list(acme.people.values())
    await consent.set_partner_consent(
        conn, tenant_id=acme.id, subscriber_id=ids[0], granted=False, source="partner_address"
    )
    # Unsubscribed from all marketing: a marketing-scope suppression stops sharing too.
    await consent.unsubscribe_all_marketing(
        conn, tenant_id=acme.id, subscriber_id=ids[1], source="preference_centre"
    )
    assert await exported(conn, acme) == [acme.people[ids[2]]]
    await consent.suppress(
        conn,
        tenant_id=acme.id,
        address_key=address_key(app_settings, acme.id, acme.people[ids[2]]),
        scope="all",
        reason="hard_bounce",
        source="bounce",
        subscriber_id=ids[2],
    )
    assert await exported(conn, acme) == []
