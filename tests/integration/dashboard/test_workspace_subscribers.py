"""The workspace's subscriber pages through the real app on real Postgres: finding a person by
exact address (keyed hash) or id, the list with masked addresses a keyset page at a time, a
person's page, and the staff actions by role (unsubscribe from a topic or all marketing,
suppress, open a data request), each through the consent writer or mailer.rights, with the
ledger row naming the staff actor, and the same actions through the admin API."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from mailer import api_tokens, tenants
from mailer.api_tokens import Principal
from mailer.consent import writer
from mailer.db import queries
from tests.conftest import probes
from tests.support.mailer_env import add_subscribers
from tests.support.staff import account_for
from tests.support.workspace import (
    Tenant,
    csrf_of,
    page_of,
    sign_in,
    state,
    submit,
)
from unsubscribe_web.dashboard.subscribers import PAGE_SIZE


async def signed_up(conn, settings, t: Tenant, email: str) -> int:
    """A person who signed up on the form (with evidence) and confirmed."""
    result = await writer.subscribe(
        conn,
        hash_key=settings.hash_key,
        tenant_id=t.id,
        topic_id=t.topic_id,
        email=email,
        age_attested=True,
        source="web_form",
        evidence=writer.Evidence(ip="192.0.2.7", user_agent="Firefox/1", form_text="Yes please"),
    )
    await writer.confirm(
        conn,
        hash_key=settings.hash_key,
        tenant_id=t.id,
        subscriber_id=result.subscriber_id,
        topic_id=t.topic_id,
    )
    return result.subscriber_id


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr id="subscriber-(\d+)">', html)]


async def test_find_by_exact_address_in_any_case_or_by_id_shows_one_masked_row(
    client, conn, app_settings, acme, beta
):
    person = await signed_up(conn, app_settings, acme, "Jane.Doe@Example.org")
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = "/dashboard/t/acme/subscribers"
    for query in ("jane.doe@EXAMPLE.org", f"{person}", f"#{person}"):
        html = await page_of(client, cookie, f"{base}?{urlencode({'q': query})}")
        assert listed_ids(html) == [person], query
        assert "J***@E***.org" in html and "Jane.Doe@Example.org" not in html
    # Another tenant's person, by address or by id, is nobody here.
    other = min(beta.people)
    for query in (beta.people[other], str(other), "nobody@example.org"):
        html = await page_of(client, cookie, f"{base}?q={query}")
        assert listed_ids(html) == [] and 'id="no-match"' in html, query
    html = await page_of(client, cookie, f"{base}?q=jane", status=400)
    assert "exact email address or a subscriber id" in html


async def test_the_list_pages_by_keyset_with_masked_addresses(client, conn, app_settings, acme):
    extra = await add_subscribers(conn, app_settings, acme.id, acme.topic_id, PAGE_SIZE, "many")
    everyone = sorted(acme.people | extra)
    cookie = await sign_in(client, acme.tokens["client"])
    first = await page_of(client, cookie, "/dashboard/t/acme/subscribers")
    assert listed_ids(first) == everyone[:PAGE_SIZE]
    assert "@example.org" not in first  # every address masked: r***@e***.org
    following = re.search(r'href="([^"]+)" id="next-page"', first)
    assert following is not None and "after=" in following.group(1)
    second = await page_of(client, cookie, following.group(1).replace("&amp;", "&"))
    assert listed_ids(second) == everyone[PAGE_SIZE:]
    assert 'id="next-page"' not in second


async def test_a_marketer_unsubscribes_a_person_from_a_topic_one_ledger_row_naming_them(
    client, conn, app_settings, acme
):
    person = await signed_up(conn, app_settings, acme, "ann@example.org")
    cookie = await sign_in(client, acme.tokens["marketing"])
    url = f"/dashboard/t/acme/subscribers/{person}"
    html = await page_of(client, cookie, url)
    assert "ann@example.org" in html and 'id="topic-newsletter"' in html
    # Marketing may not read the consent proof: the ledger shows, its evidence does not.
    assert "web_form" in html and "192.0.2.7" not in html
    response = await submit(
        client, cookie, f"{url}/unsubscribe", {"topic": "newsletter"}, csrf_of(html)
    )
    assert response.status == 303
    done = await page_of(client, cookie, response.headers["Location"])
    assert "Unsubscribed." in done
    assert re.search(r'id="topic-newsletter">.*?unsubscribed', done, re.S)
    marketer = await _account_actor(conn, acme.tokens["marketing"])
    rows = [dict(r) async for r in probes().staff_ledger_rows(conn, subscriber_id=person)]
    assert rows == [
        {"action": "unsubscribe", "topic_id": acme.topic_id, "source": "staff", "actor": marketer}
    ]
    assert marketer in done  # the ledger on the page names who did it
    lines = [dict(r) async for r in probes().audit_lines(conn)]
    assert lines[-1]["action"] == "unsubscribe_subscriber" and lines[-1]["actor"] == marketer
    # The same form again: nothing to change, no second row.
    again = await submit(
        client, cookie, f"{url}/unsubscribe", {"topic": "newsletter"}, csrf_of(html)
    )
    assert "done=already" in again.headers["Location"]
    assert len([r async for r in probes().staff_ledger_rows(conn, subscriber_id=person)]) == 1


async def test_unsubscribe_from_all_marketing_and_suppress_go_through_the_consent_writer(
    client, conn, app_settings, acme
):
    await tenants.create_topic(conn, acme.id, slug="offers", name="Offers", kind="marketing")
    person = min(acme.people)
    cookie = await sign_in(client, acme.tokens["compliance"])
    url = f"/dashboard/t/acme/subscribers/{person}"
    html = await page_of(client, cookie, url)
    response = await submit(
        client, cookie, f"{url}/unsubscribe", {"topic": "all-marketing"}, csrf_of(html)
    )
    assert response.status == 303
    key = (await queries().consent.get_subscriber(conn, tenant_id=acme.id, id=person))["email_key"]
    found = await queries().consent.get_suppression(conn, tenant_id=acme.id, address_key=key)
    assert found["scope"] == "marketing"
    response = await submit(client, cookie, f"{url}/suppress", {"scope": "all"}, csrf_of(html))
    assert response.status == 303
    page = await page_of(client, cookie, response.headers["Location"])
    assert "all mail" in page
    rows = [dict(r) async for r in probes().staff_ledger_rows(conn, subscriber_id=person)]
    assert [r["action"] for r in rows] == ["unsubscribe_all", "suppress"]
    assert {r["source"] for r in rows} == {"staff"}


async def test_compliance_sees_the_evidence_and_that_read_is_audited(
    client, conn, app_settings, acme
):
    person = await signed_up(conn, app_settings, acme, "eve@example.org")
    cookie = await sign_in(client, acme.tokens["compliance"])
    before = await probes().audit_count(conn)
    html = await page_of(client, cookie, f"/dashboard/t/acme/subscribers/{person}")
    assert "192.0.2.7" in html and "Firefox/1" in html and "Yes please" in html
    lines = [dict(r) async for r in probes().audit_lines(conn)]
    assert await probes().audit_count(conn) == before + 1
    assert lines[-1]["action"] == "consent_history" and lines[-1]["target_id"] == person


async def test_staff_open_an_erasure_request_the_person_verifies_by_mail(
    client, conn, app_settings, acme
):
    person = min(acme.people)
    cookie = await sign_in(client, acme.tokens["compliance"])
    url = f"/dashboard/t/acme/subscribers/{person}"
    html = await page_of(client, cookie, url)
    response = await submit(client, cookie, f"{url}/request", {"kind": "erase"}, csrf_of(html))
    assert response.status == 303
    page = await page_of(client, cookie, response.headers["Location"])
    assert re.search(r"<td>erase</td><td>awaiting_verification</td>", page)
    # Marketing has no right to open requests: no form, and the POST is refused.
    marketing = await sign_in(client, acme.tokens["marketing"])
    theirs = await page_of(client, marketing, url)
    assert 'id="request-form"' not in theirs
    before = await state(conn)
    refused = await submit(client, marketing, f"{url}/request", {"kind": "access"}, csrf_of(theirs))
    assert refused.status == 403 and await state(conn) == before


async def test_bad_input_gets_one_clear_error_and_changes_nothing(client, conn, acme):
    person = min(acme.people)
    cookie = await sign_in(client, acme.tokens["admin"])
    url = f"/dashboard/t/acme/subscribers/{person}"
    token = csrf_of(await page_of(client, cookie, url))
    before = await state(conn)
    for path, data, message in (
        ("unsubscribe", {"topic": "no-such-topic"}, "topic"),
        ("suppress", {"scope": "everything"}, "marketing, or all mail"),
        ("request", {"kind": "rectify"}, "access or an erasure"),
    ):
        response = await submit(client, cookie, f"{url}/{path}", data, token)
        text = await response.text()
        assert response.status in (400, 404), (path, text)
        assert message in text.lower() or message in text, (path, text)
        assert await state(conn) == before, path
    for bad in ("0", "abc", "99999999999999999999"):
        await page_of(client, cookie, f"/dashboard/t/acme/subscribers/{bad}", status=404)


async def test_the_api_unsubscribes_and_suppresses_naming_the_token(client, conn, acme):
    person = min(acme.people)
    headers = {"Authorization": f"Bearer {acme.tokens['marketing']}"}
    path = f"/api/v1/tenants/acme/subscribers/{person}"
    response = await client.post(
        f"{path}/unsubscribe", json={"topic": "newsletter"}, headers=headers
    )
    assert response.status == 200 and (await response.json())["changed"] is True
    response = await client.post(f"{path}/unsubscribe", json={}, headers=headers)
    assert response.status == 400
    response = await client.post(f"{path}/suppress", json={"scope": "all"}, headers=headers)
    assert response.status == 200
    actor = await _actor(conn, acme.tokens["marketing"])
    rows = [dict(r) async for r in probes().staff_ledger_rows(conn, subscriber_id=person)]
    assert [(r["action"], r["source"], r["actor"]) for r in rows] == [
        ("unsubscribe", "api", actor),
        ("suppress", "api", actor),
    ]
    history = await client.get(
        f"{path}/consent", headers={"Authorization": f"Bearer {acme.tokens['compliance']}"}
    )
    events = (await history.json())["events"]
    assert [e["actor"] for e in events if e["source"] == "api"] == [actor, actor]


async def _actor(conn, secret: str) -> str:
    principal = await api_tokens.authenticate(conn, f"Bearer {secret}")
    return principal.actor


async def _account_actor(conn, secret: str) -> str:
    """The workspace's actor: the staff account signed in with the token's role and tenant."""
    principal = await api_tokens.authenticate(conn, f"Bearer {secret}")
    account_id = await account_for(conn, principal.role, principal.tenant_id)
    return Principal(None, principal.role, principal.tenant_id, account_id).actor


async def test_get_and_head_on_the_new_pages_change_nothing_and_need_a_session(client, conn, acme):
    """G4: link scanners and prefetchers only read; without a session, back to sign-in."""
    person = min(acme.people)
    paths = (
        "/dashboard/t/acme/subscribers",
        f"/dashboard/t/acme/subscribers?q={person}",
        f"/dashboard/t/acme/subscribers/{person}",
        "/dashboard/t/acme/imports",
        f"/dashboard/t/acme/subscribers/{person}/unsubscribe",  # a POST route: GET is refused
    )
    cookie = await sign_in(client, acme.tokens["marketing"])
    before = await state(conn)
    for path in paths:
        for method in ("GET", "HEAD"):
            response = await client.request(method, path, headers=cookie, allow_redirects=False)
            assert response.status in (200, 405), (method, path)
        response = await client.get(path, allow_redirects=False)
        assert response.status in (303, 405), path
        if response.status == 303:
            assert response.headers["Location"] == "/dashboard", path
    assert await state(conn) == before
