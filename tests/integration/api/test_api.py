"""The admin API as a client uses it: subscribers by address and by topic with a cursor,
consent proof, suppressions, CSV imports over HTTP, the audit log, and bad JSON refused with
nothing written."""

from __future__ import annotations

import io
import json

import pytest

from tests.conftest import probes
from tests.support.api_world import bearer, build_world
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def get(client, token, path, **params):
    response = await client.get(path, headers=bearer(token), params=params)
    return response.status, await response.json()


async def test_subscribers_by_address_topic_state_and_cursor(world, client, conn, settings):
    token = world.a.tokens["marketing"]
    base = "/api/v1/tenants/alpha/subscribers"
    status, body = await get(client, token, base, email="  ALICE@alpha.example ")
    assert status == 200 and [s["email"] for s in body["items"]] == ["alice@alpha.example"]
    status, body = await get(client, token, base, email="nobody@alpha.example")
    assert body["items"] == []
    status, body = await get(client, token, base, email="not an address")
    assert status == 400 and body["error"]["field"] == "email"

    status, body = await get(client, token, base, topic="news", state="pending")
    assert [s["email"] for s in body["items"]] == ["bob@alpha.example"]
    assert body["items"][0]["state"] == "pending"
    status, body = await get(client, token, base, state="pending")
    assert status == 400 and body["error"]["field"] == "state"

    # Page through everyone one at a time with the cursor.
    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        status, body = await get(client, token, base, **params)
        seen += [s["email"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["alice@alpha.example", "bob@alpha.example"]

    status, body = await get(client, token, f"{base}/{world.a.subscriber_id}")
    assert body["subscriptions"][0]["topic"] == "news"
    assert body["subscriptions"][0]["state"] == "confirmed"


async def test_consent_history_is_the_proof_with_its_evidence(world, client):
    token = world.a.tokens["compliance"]
    status, body = await get(
        client, token, f"/api/v1/tenants/alpha/subscribers/{world.a.subscriber_id}/consent"
    )
    assert status == 200
    assert [(e["action"], e["effect"], e["source"]) for e in body["events"]] == [
        ("subscribe", "pending", "web_form"),
        ("confirm", "grant", "double_opt_in"),
    ]
    evidence = body["events"][0]["evidence"]
    assert evidence["ip"] == "192.0.2.1" and evidence["form_text"] == "Yes please"


async def test_suppressions_by_api(world, client, conn):
    token = world.a.tokens["compliance"]
    path = "/api/v1/tenants/alpha/suppressions"
    response = await client.post(
        path,
        headers=bearer(token),
        json={"email": "alice@alpha.example", "reason": "complaint"},
    )
    body = await response.json()
    assert response.status == 201 and body["added"] is True
    assert body["suppression"]["scope"] == "all" and "@" not in json.dumps(body)
    status, body = await get(client, token, path, email="alice@alpha.example")
    assert status == 200 and body["items"][0]["reason"] == "complaint"
    _status, body = await get(client, token, path)
    assert len(body["items"]) == 2 and body["next_cursor"] is None
    response = await client.post(
        f"{path}/import",
        headers=bearer(token) | {"Content-Type": "text/csv"},
        params={"reason": "unsubscribe"},
        data="email\nx@old.example\ny@old.example\nbroken\n",
    )
    body = await response.json()
    assert response.status == 200
    assert (body["added"], body["bad"], body["bad_rows"][0]["line"]) == (2, 1, 4)


async def test_csv_import_over_http(world, client, conn):
    token = world.a.tokens["marketing"]
    path = "/api/v1/tenants/alpha/imports"
    params = {"topic": "news", "lawful_basis": "consent", "source": "shop", "age_attested": "true"}
    headers = bearer(token) | {"Content-Type": "text/csv"}
    data = "email,name\nc1@x.example,C\nbad-row,X\nc2@x.example,D\nalice@alpha.example,A\n"
    response = await client.post(path, headers=headers, params=params, data=data)
    body = await response.json()
    assert response.status == 201, body
    assert (body["rows_imported"], body["rows_skipped"], body["rows_bad"]) == (2, 1, 1)
    status, errors = await get(client, token, f"{path}/{body['id']}/errors")
    assert status == 200
    assert errors["items"] == [{"line": 3, "reason": "The email address has no @ sign."}]
    _status, listed = await get(client, token, path)
    assert listed["items"][0]["id"] == body["id"]

    before = dict(await probes().import_table_counts(conn))
    response = await client.post(path, headers=headers, params=params, data="name\nx\n")
    assert response.status == 400 and (await response.json())["error"]["field"] == "file"
    response = await client.post(
        path, headers=headers, params=params | {"topic": "nope"}, data=data
    )
    assert response.status == 404
    response = await client.post(
        path, headers=headers, params=params | {"age_attested": "false"}, data=data
    )
    assert response.status == 400
    assert dict(await probes().import_table_counts(conn)) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "zeta", "name": "Z", "sender_address": "z@z.example", "colour": "red"}, "colour"),
        ({"slug": "zeta", "name": 5, "sender_address": "z@z.example"}, "name"),
        ({"slug": "zeta", "name": "Z", "sender_address": "z@z.example", "minimum_age": "13"}, None),
        ({"slug": "Zeta!", "name": "Z", "sender_address": "z@z.example"}, "slug"),
        ({"slug": "zeta", "name": "Z\u0000", "sender_address": "z@z.example"}, "name"),
        ({"slug": "zeta", "name": "Z", "sender_address": "not-mail"}, "email"),
        ({"name": "Z", "sender_address": "z@z.example"}, "slug"),
        ([1, 2], None),
    ],
)
async def test_bad_json_is_refused_and_changes_nothing(world, client, conn, body, field):
    before = [dict(r) async for r in probes().audit_entries(conn)]
    response = await client.post("/api/v1/tenants", headers=bearer(world.admin), json=body)
    answer = await response.json()
    assert response.status == 400, answer
    assert set(answer["error"]) == {"code", "message", "field"}
    if field:
        assert answer["error"]["field"] == field
    _status, tenants = await get(client, world.admin, "/api/v1/tenants")
    assert [t["slug"] for t in tenants["items"]] == ["alpha", "beta"]
    assert [dict(r) async for r in probes().audit_entries(conn)] == before


async def test_not_json_and_oversized_bodies(world, client):
    headers = bearer(world.admin) | {"Content-Type": "application/json"}
    response = await client.post("/api/v1/tenants", headers=headers, data=b"{not json")
    assert response.status == 400 and "not JSON" in (await response.json())["error"]["message"]
    response = await client.post("/api/v1/tenants", headers=headers, data=b"\xff\xfe")
    assert response.status == 400
    big = json.dumps({"slug": "x", "name": "x" * (1024 * 1024), "sender_address": "a@b.example"})
    response = await client.post("/api/v1/tenants", headers=headers, data=io.BytesIO(big.encode()))
    assert response.status == 413 and "error" in await response.json()


async def test_audit_log_names_who_did_what_without_personal_data(world, client, conn):
    token = world.a.tokens["marketing"]
    response = await client.post(
        "/api/v1/tenants/alpha/topics", headers=bearer(token), json={"slug": "deals", "name": "D"}
    )
    topic = await response.json()
    status, _ = await get(
        client,
        world.a.tokens["compliance"],
        f"/api/v1/tenants/alpha/subscribers/{world.a.subscriber_id}/consent",
    )
    status, body = await get(client, world.admin, "/api/v1/audit", tenant="alpha")
    assert status == 200
    entries = body["items"]
    assert entries[0]["action"] == "consent_history"
    assert entries[0]["target_type"] == "subscriber"
    assert entries[0]["target_id"] == world.a.subscriber_id
    assert entries[1]["action"] == "create_topic" and entries[1]["target_id"] == topic["id"]
    assert entries[1]["actor"].endswith(":marketing") and entries[1]["token_id"]
    assert all(e["tenant"] == "alpha" for e in entries)
    assert "@" not in json.dumps(entries)
    for role in ("marketing", "compliance", "client"):
        status, body = await get(client, world.a.tokens[role], "/api/v1/audit")
        assert status == 403


@pytest.mark.parametrize("depth", [65, 30_000])
async def test_deeply_nested_json_is_400_not_a_500(world, client, conn, depth):
    """Issue 14: a body nested past the parser's recursion limit (once a RecursionError and a
    500) or past 64 levels is refused with 400 and changes nothing."""
    before = [dict(r) async for r in probes().audit_entries(conn)]
    headers = bearer(world.admin) | {"Content-Type": "application/json"}
    nested = b'{"slug": "zeta", "name": "Z", "sender_address": "z@z.example", "x": '
    data = nested + b"[" * depth + b"]" * depth + b"}"
    response = await client.post("/api/v1/tenants", headers=headers, data=data)
    answer = await response.json()
    assert response.status == 400, answer
    assert "nested more than 64 levels" in answer["error"]["message"]
    _status, tenants = await get(client, world.admin, "/api/v1/tenants")
    assert [t["slug"] for t in tenants["items"]] == ["alpha", "beta"]
    assert [dict(r) async for r in probes().audit_entries(conn)] == before


async def test_the_client_role_reads_the_proof_of_notice(world, client):
    """Issue 14: the client (the controller) keeps reading who was told of a policy change
    and when, for its own tenant only (docs/api.md, roles)."""
    token = world.a.tokens["client"]
    status, proof = await get(client, token, "/api/v1/tenants/alpha/policy/versions/1/proof")
    assert status == 200, proof
    assert proof["version"] == 1
    assert {row["subscriber_id"] for row in proof["items"]} >= {world.a.subscriber_id}
    assert set(proof["items"][0]) == {
        "subscriber_id", "email", "notified_by", "sent_at", "delivery_state",
    }  # fmt: skip
    status, _ = await get(client, token, "/api/v1/tenants/beta/policy/versions/1/proof")
    assert status == 404
