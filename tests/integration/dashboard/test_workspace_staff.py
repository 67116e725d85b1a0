"""The workspace's staff page (issue 24): an admin invites a person into the tenant (the link is
shown once), changes a role (that person's sessions end) and, as installation admin, disables
an account; a tenant's admin cannot disable, nor reach another tenant's people."""

from __future__ import annotations

import dataclasses
import re

import pytest

from mailer.api_tokens import Principal
from tests.support.api_world import sending_settings
from tests.support.staff import account_for, session_as, staff_probes
from tests.support.workspace import Tenant, csrf_of, ready_tenant, sign_in
from unsubscribe_web.app import create_app


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


@pytest.fixture
async def acme(conn, settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, settings, tmp_path, "acme", people=1)


async def page(client, cookie, path="/dashboard/t/acme/staff", status=200) -> str:
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text
    return str(text)


async def post(client, cookie, path, data):
    return await client.post(
        f"/dashboard/t/acme/staff/{path}", data=data, headers=cookie, allow_redirects=False
    )


async def test_an_admin_invites_changes_a_role_and_disables(client, conn, acme):
    admin = await sign_in(client, acme.tokens["admin"])
    html = await page(client, admin)
    invited = await post(
        client,
        admin,
        "invite",
        {"csrf": csrf_of(html), "email": "mia@acme.example", "name": "Mia", "role": "marketing"},
    )
    text = await invited.text()
    assert invited.status == 200, text
    link = re.search(r'<code id="invitation-link">([^<]+)</code>', text)
    assert link and "/dashboard/invitation/" in link.group(1)
    assert link.group(1) not in await page(client, admin)  # shown once

    marketer = await account_for(conn, "marketing", acme.id)
    mia_cookie = await sign_in(client, acme.tokens["marketing"])
    assert (await client.get("/dashboard", headers=mia_cookie)).status == 200
    changed = await post(
        client, admin, "role", {"csrf": csrf_of(html), "account": str(marketer), "role": "client"}
    )
    assert changed.status == 303
    assert (await client.get("/dashboard", headers=mia_cookie)).status == 401
    disabled = await post(
        client, admin, "disable", {"csrf": csrf_of(html), "account": str(marketer)}
    )
    assert disabled.status == 303
    rows = {r["email"]: r for r in [dict(x) async for x in staff_probes().staff_state(conn)]}
    assert rows[f"marketing.{acme.id}@staff.example"]["status"] == "disabled"
    assert rows["mia@acme.example"]["status"] == "invited"
    actions = [r["action"] async for r in staff_probes().audit_people(conn)]
    assert {"staff.invite", "staff.role", "staff.disable"} <= set(actions)


async def test_a_tenant_admin_cannot_disable_or_touch_installation_admins(client, conn, acme):
    # An account that is admin of acme only.
    tenant_admin_raw = "tenant-admin-session-id-for-this-test"
    await session_as(conn, Principal(None, "admin", acme.id), tenant_admin_raw)
    cookie = {"Cookie": f"__Host-optout_staff={tenant_admin_raw}"}
    html = await page(client, cookie)
    target = await account_for(conn, "compliance", acme.id)
    before = [dict(r) async for r in staff_probes().staff_state(conn)]
    refused = await post(client, cookie, "disable", {"csrf": csrf_of(html), "account": str(target)})
    assert refused.status == 403
    boss = await account_for(conn, "admin", None)
    await staff_probes().grant(conn, account_id=boss, tenant_id=acme.id, role="admin")
    before = [dict(r) async for r in staff_probes().staff_state(conn)]
    touched = await post(
        client, cookie, "role", {"csrf": csrf_of(html), "account": str(boss), "role": "client"}
    )
    assert touched.status == 403
    assert [dict(r) async for r in staff_probes().staff_state(conn)] == before


async def test_with_a_staff_sender_the_workspace_mails_the_invitation(
    aiohttp_client, settings, conn, acme
):
    """Issue 24: with OPTOUT_STAFF_MAIL_FROM the page says where the invitation went and shows
    no link; the mail is queued for the worker."""
    staff = dataclasses.replace(settings.staff, mail_from="optout@install.example")
    client = await aiohttp_client(
        create_app(dataclasses.replace(sending_settings(settings), staff=staff))
    )
    admin = await sign_in(client, acme.tokens["admin"])
    html = await page(client, admin)
    invited = await post(
        client,
        admin,
        "invite",
        {"csrf": csrf_of(html), "email": "mia@acme.example", "name": "Mia", "role": "marketing"},
    )
    text = await invited.text()
    assert invited.status == 200, text
    assert "Invitation mailed to mia@acme.example" in text
    assert "invitation-link" not in text and "/dashboard/invitation/" not in text
    [queued] = [r async for r in staff_probes().staff_mail_rows(conn)]
    assert queued["recipient"] == "mia@acme.example" and queued["template"] == "staff_invite"
