"""Staff accounts in the admin API (issue 24): an admin token invites, re-roles and disables;
disabling revokes the API tokens the account created unless kept (audited either way); other
roles are refused; the audit names the person behind a token and filters by person."""

from __future__ import annotations

import dataclasses

import pytest

from mailer import api_tokens
from tests.support.api_world import bearer, build_world, sending_settings
from tests.support.staff import account_for, staff_probes
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


async def test_an_admin_token_manages_staff_and_disabling_revokes_their_tokens(world, client, conn):
    admin = bearer(world.a.tokens["admin"])
    made = await client.post(
        "/api/v1/staff",
        json={"email": "mia@x.example", "name": "Mia", "role": "marketing", "tenant": world.a.slug},
        headers=admin,
    )
    assert made.status == 201, await made.text()
    invited = await made.json()
    assert "/dashboard/invitation/" in invited["invitation_url"] and invited["valid_hours"] == 72
    listed = await (await client.get("/api/v1/staff", headers=admin)).json()
    [mia] = [a for a in listed["items"] if a["email"] == "mia@x.example"]
    assert mia["status"] == "invited"
    assert mia["roles"] == [{"tenant": world.a.slug, "role": "marketing"}]
    assert "invitation_url" not in mia

    # Two tokens made by Mia's account: one revoked with her, one kept on purpose.
    kept_owner = await account_for(conn, "compliance", world.a.id, name="Kim")
    mine = await api_tokens.create_token(
        conn, role="marketing", tenant_id=world.a.id, label="crm sync", created_by=mia["id"]
    )
    kims = await api_tokens.create_token(
        conn, role="compliance", tenant_id=world.a.id, label="exports", created_by=kept_owner
    )
    assert (await client.get("/api/v1/me", headers=bearer(mine.secret))).status == 200
    done = await client.post(f"/api/v1/staff/{mia['id']}/disable", json={}, headers=admin)
    assert (await done.json())["tokens_revoked"] == 1
    assert (await client.get("/api/v1/me", headers=bearer(mine.secret))).status == 401
    kept = await client.post(
        f"/api/v1/staff/{kept_owner}/disable", json={"keep_tokens": True}, headers=admin
    )
    assert (await kept.json())["tokens_revoked"] == 0
    assert (await client.get("/api/v1/me", headers=bearer(kims.secret))).status == 200

    lines = [dict(r) async for r in staff_probes().audit_people(conn)]
    disables = [r for r in lines if r["action"] == "staff.disable"]
    assert len(disables) == 2 and all(r["actor"].startswith("token:") for r in disables)

    # The audit names the person behind a token (its creator), and filters by person.
    await client.get(
        f"/api/v1/tenants/{world.a.slug}/subscribers/{world.a.subscriber_id}/consent",
        headers=bearer(kims.secret),
    )
    audit = await client.get("/api/v1/audit", params={"person": kept_owner}, headers=admin)
    items = (await audit.json())["items"]
    assert items and all(i["person_name"] == "Kim" for i in items)
    # What Kim did (with her token), not what was done to her (the admin's disable).
    assert {i["action"] for i in items} == {"consent_history"}
    everyone = (await (await client.get("/api/v1/audit", headers=admin)).json())["items"]
    assert any(i["person_id"] is None for i in everyone)  # tokens from before accounts


async def test_other_roles_cannot_touch_staff(world, client):
    for role in ("marketing", "compliance", "client"):
        token = bearer(world.a.tokens[role])
        assert (await client.get("/api/v1/staff", headers=token)).status == 403
        made = await client.post(
            "/api/v1/staff",
            json={"email": f"{role}@x.example", "installation_admin": True},
            headers=token,
        )
        assert made.status == 403


async def test_with_a_staff_sender_the_api_mails_the_invitation_and_answers_no_link(
    world, aiohttp_client, settings, conn
):
    """Issue 24: with OPTOUT_STAFF_MAIL_FROM the link goes only by mail (queued for the
    worker); the API answer names where it went and holds no link."""
    staff = dataclasses.replace(settings.staff, mail_from="optout@install.example")
    client = await aiohttp_client(
        create_app(dataclasses.replace(sending_settings(settings), staff=staff))
    )
    made = await client.post(
        "/api/v1/staff",
        json={"email": "mia@x.example", "name": "Mia", "role": "marketing", "tenant": world.a.slug},
        headers=bearer(world.a.tokens["admin"]),
    )
    assert made.status == 201, await made.text()
    answer = await made.json()
    assert answer["mailed_to"] == "mia@x.example" and "invitation_url" not in answer
    assert "/dashboard/invitation/" not in str(answer)
    [queued] = [r async for r in staff_probes().staff_mail_rows(conn)]
    assert queued["recipient"] == "mia@x.example" and queued["state"] == "queued"
    assert "/dashboard/invitation/" in queued["payload"]["url"]
