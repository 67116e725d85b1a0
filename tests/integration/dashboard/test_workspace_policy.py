"""The workspace's policy pages through the real app on real Postgres, as compliance: the next
version's diff, the notice period enforced (a shorter notice only with a reason), publishing,
the notice mail edited and sent to the notice topic, the notice's progress, the proof of notice
as CSV; and the isolation table over every policy POST."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailer import tenants
from mailer.api_tokens import RIGHTS
from mailer.db import queries
from mailer.rights import policy
from tests.conftest import probes
from tests.support.api_world import sending_settings
from tests.support.mailer_env import add_subscribers
from tests.support.workspace import Tenant, csrf_of, ready_tenant, sign_in, state
from unsubscribe_web.app import create_app
from unsubscribe_web.dashboard.workspace import API_RIGHTS, csrf_for

V1 = "# Privacy policy\n\nWe keep your address to mail you.\n"
V2 = V1 + "\n## Bounces\n\nWe keep records of undeliverable mail for 12 months.\n"
NOTICE_PEOPLE = 4


@pytest.fixture
def app_settings(settings):
    relay = sending_settings(settings)
    return dataclasses.replace(
        relay, mailer=dataclasses.replace(relay.mailer, allow_unsigned=False)
    )


@pytest.fixture
async def client(aiohttp_client, app_settings):
    return await aiohttp_client(create_app(app_settings))


async def policy_tenant(conn, app_settings, tmp_path, slug: str) -> Tenant:
    """A tenant ready to send with a notice topic of NOTICE_PEOPLE and version 1 in effect."""
    t = await ready_tenant(conn, app_settings, tmp_path, slug)
    topic = await tenants.create_topic(
        conn, t.id, slug="policy-notices", name="Policy notices", kind="notice"
    )
    t.people |= await add_subscribers(
        conn, app_settings, t.id, topic["id"], NOTICE_PEOPLE, prefix=f"{slug}-n"
    )
    tenant = await queries().tenants.get_tenant(conn, id=t.id)
    # Published a minute ago, in effect since (the time is a parameter of publish).
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    await policy.publish(
        conn,
        tenant=tenant,
        body=V1,
        summary="The first policy.",
        effective_at=earlier + dt.timedelta(minutes=1),
        now=earlier,
        force_reason="the first version",
    )
    return t


@pytest.fixture
async def acme(conn, app_settings, tmp_path) -> Tenant:
    return await policy_tenant(conn, app_settings, tmp_path, "acme")


@pytest.fixture
async def beta(conn, app_settings, tmp_path) -> Tenant:
    return await policy_tenant(conn, app_settings, tmp_path, "beta")


async def get(client, cookie, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text: str = await response.text()
    assert response.status == status, text
    return text


async def post(client, cookie, path: str, data: dict[str, str], csrf: str | None) -> Any:
    form = dict(data) | ({"csrf": csrf} if csrf is not None else {})
    return await client.post(path, data=form, headers=cookie, allow_redirects=False)


def local(days: float) -> str:
    """A datetime-local value ``days`` from now, in the tenants' zone (UTC)."""
    moment = dt.datetime.now(ZoneInfo("UTC")) + dt.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M")


async def test_compliance_writes_publishes_and_sends_the_notice_with_proof(
    client, conn, acme, app_settings
):
    """The diff against the version in effect; a date inside the 30 days' notice refused with
    the earliest time; a valid one publishes; the notice is edited and queued for everyone on
    the notice topic; the proof lists them all, and the others under the site notice."""
    cookie = await sign_in(client, acme.tokens["compliance"])
    page = await get(client, cookie, "/dashboard/t/acme/policy/new")
    assert "the earliest effective time is" in page
    token = csrf_of(page)
    form = {"body": V2, "summary": "Bounce records kept 12 months.", "effective": local(5)}

    shown = await get_post(client, cookie, "/dashboard/t/acme/policy/new", form, token)
    assert "<ins>+ We keep records of undeliverable mail for 12 months.</ins>" in shown
    assert "Changes since version 1 (in effect)" in shown

    before = await state(conn)
    response = await post(client, cookie, "/dashboard/t/acme/policy", form, token)
    assert response.status == 409
    text = await response.text()
    assert "30 days&#39; notice: the earliest effective time is" in text
    assert await state(conn) == before
    assert len(await policy.versions(conn, acme.id)) == 1

    form["effective"] = local(31)
    response = await post(client, cookie, "/dashboard/t/acme/policy", form, token)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/dashboard/t/acme/policy/v/2?done=published"
    version = await policy.get_version(conn, acme.id, 2)
    assert version["published_by"].endswith(":compliance") and version["force_reason"] is None

    page = await get(client, cookie, "/dashboard/t/acme/policy/v/2")
    assert "0</span>% delivered" in page and "The notice mail (draft)" in page
    response = await post(
        client,
        cookie,
        "/dashboard/t/acme/policy/v/2/notice",
        {"subject": "Our policy changes", "headline": "", "changes": "- Bounces kept 12 months"},
        token,
    )
    assert response.status == 303
    page = await get(client, cookie, "/dashboard/t/acme/policy/v/2")
    assert "Bounces kept 12 months" in page and 'value="Our policy changes"' in page

    response = await post(client, cookie, "/dashboard/t/acme/policy/v/2/notice/send", {}, token)
    assert response.status == 303, await response.text()
    page = await get(client, cookie, "/dashboard/t/acme/policy/v/2")
    assert f'data-field="pending">{NOTICE_PEOPLE}<' in page
    assert "The notice mail (sending)" in page

    response = await client.get("/dashboard/t/acme/policy/v/2/proof.csv", headers=cookie)
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    notice_people = {email for email in acme.people.values() if "-n" in email}
    assert {r["email"] for r in rows} == set(acme.people.values())
    # Nothing is sent yet (no worker here): everyone is covered by the site notice for now.
    assert {r["notified_by"] for r in rows} == {"site_notice"}
    assert notice_people <= {r["email"] for r in rows}
    actions = [r["action"] async for r in probes().audit_actions(conn, tenant_id=acme.id)]
    assert {
        "publish_policy_version",
        "update_policy_notice",
        "start_policy_notice",
        "policy_version_proof",
    } <= set(actions)


async def get_post(client, cookie, path: str, data: dict[str, str], token: str) -> str:
    response = await post(client, cookie, path, data, token)
    text: str = await response.text()
    assert response.status == 200, text
    return text


async def test_a_shorter_notice_is_published_only_with_its_reason_recorded(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["compliance"])
    token = csrf_of(await get(client, cookie, "/dashboard/t/acme/policy/new"))
    form = {
        "body": V2,
        "summary": "Urgent fix.",
        "effective": local(2),
        "force_reason": "A regulator asked for the change at once",
    }
    response = await post(client, cookie, "/dashboard/t/acme/policy", form, token)
    assert response.status == 303
    version = await policy.get_version(conn, acme.id, 2)
    assert version["force_reason"] == "A regulator asked for the change at once"
    page = await get(client, cookie, "/dashboard/t/acme/policy")
    assert "short notice: A regulator asked for the change at once" in page
    # Two days left and the notice still a draft: the version's page warns, in red, at once.
    page = await get(client, cookie, "/dashboard/t/acme/policy/v/2")
    warning = page.split('id="notice-warning"', 1)[1].split("</p>", 1)[0]
    assert "the notice has not started sending" in warning
    assert 'id="time-left">Time left before the effective date: 1 day 23 hours' in page


async def test_a_tenant_without_a_notice_topic_publishes_with_the_site_notice_alone(
    client, conn, app_settings, tmp_path
):
    solo = await ready_tenant(conn, app_settings, tmp_path, "solo")
    cookie = await sign_in(client, solo.tokens["compliance"])
    token = csrf_of(await get(client, cookie, "/dashboard/t/solo/policy/new"))
    form = {"body": V2, "summary": "First.", "effective": local(31)}
    response = await post(client, cookie, "/dashboard/t/solo/policy", form, token)
    assert response.status == 303, await response.text()
    page = await get(client, cookie, "/dashboard/t/solo/policy/v/1")
    assert 'id="no-notice"' in page and 'id="send-form"' not in page


async def test_the_public_page_announces_the_version_published_in_the_workspace(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["compliance"])
    token = csrf_of(await get(client, cookie, "/dashboard/t/acme/policy/new"))
    form = {"body": V2, "summary": "Bounce records kept 12 months.", "effective": local(31)}
    assert (await post(client, cookie, "/dashboard/t/acme/policy", form, token)).status == 303
    public = await get(client, {}, "/policy/acme")
    assert 'id="policy-notice"' in public
    assert "Bounce records kept 12 months." in public
    assert "<ins>+ We keep records of undeliverable mail for 12 months.</ins>" in public


# --- isolation ----------------------------------------------------------------------------------

# Every policy POST of the workspace: the data it needs, and the API endpoint whose right it takes.
POLICY_POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "ws_policy_preview": ("publish_policy_version", {"body": V2, "summary": "S"}),
    "ws_policy_publish": (
        "publish_policy_version",
        {"body": V2, "summary": "S", "effective": "2099-01-01T10:00"},
    ),
    "ws_policy_notice_save": (
        "publish_policy_version",
        {"subject": "S", "headline": "", "changes": "one"},
    ),
    "ws_policy_notice_send": ("publish_policy_version", {}),
    "ws_subprocessors_save": (
        "save_subprocessors",
        {"rows": "1", "name_0": "Host", "purpose_0": "Servers", "location_0": "DE"},
    ),
}


async def test_every_policy_post_refuses_other_tenants_missing_rights_and_missing_csrf(
    client, conn, acme, beta
):
    """For each POST: beta's tenant and beta's version under acme, marketing and client (who
    lack policy.write), no or another session's CSRF token, no session: refused, nothing
    changed."""
    for t in (acme, beta):
        tenant = await queries().tenants.get_tenant(conn, id=t.id)
        now = dt.datetime.now(dt.UTC)
        version = await policy.publish(
            conn,
            tenant=tenant,
            body=V2,
            summary="S",
            effective_at=now + dt.timedelta(days=40),
            now=now,
        )
        topic = await policy.notice_topic(conn, t.id)
        await policy.create_notice_campaign(
            conn, tenant=tenant, version=version, topic=topic, policy_url="http://x/policy"
        )
    # Beta's version 3 exists, acme's does not: a version number of the other tenant.
    beta_tenant = await queries().tenants.get_tenant(conn, id=beta.id)
    await policy.publish(
        conn,
        tenant=beta_tenant,
        body=V2 + "\nMore.\n",
        summary="S",
        effective_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=60),
        now=dt.datetime.now(dt.UTC),
    )
    sessions = {role: await sign_in(client, acme.tokens[role]) for role in acme.tokens}
    csrf = {role: csrf_for(client.app, secret) for role, secret in acme.tokens.items()}
    before = await state(conn) | {"versions": await _versions(conn)}
    for name, (api, data) in POLICY_POSTS.items():
        route = client.app.router[name]
        has_version = "{version}" in str(route.canonical)

        def url(slug: str, version: int = 2, route: Any = route, has: bool = has_version) -> str:
            parts = {"tenant": slug} | ({"version": str(version)} if has else {})
            return str(route.url_for(**parts))

        right = API_RIGHTS[api]
        cases: list[tuple[str, str, dict[str, str], str | None, int]] = [
            ("other tenant", url("beta"), sessions["compliance"], csrf["compliance"], 404)
        ]
        if has_version:
            cases.append(
                (
                    "other tenant's version",
                    url("acme", 3),
                    sessions["compliance"],
                    csrf["compliance"],
                    404,
                )
            )
        for role in ("marketing", "client"):
            assert right not in RIGHTS[role], (name, role)
            cases.append((f"{role} lacks {right}", url("acme"), sessions[role], csrf[role], 403))
        cases.append(("no CSRF", url("acme"), sessions["compliance"], None, 403))
        cases.append(
            ("another session's CSRF", url("acme"), sessions["compliance"], csrf["admin"], 403)
        )
        cases.append(("no session", url("acme"), {}, csrf["compliance"], 401))
        for label, path, cookie, token, status in cases:
            response = await post(client, cookie, path, data, token)
            assert response.status == status, (name, label, await response.text())
            assert await state(conn) | {"versions": await _versions(conn)} == before, (name, label)


async def _versions(conn) -> list[dict[str, Any]]:
    """Policy versions and sub-processor registers: what the policy POSTs could change."""
    versions = [dict(r) async for r in probes().policy_versions_all(conn)]
    registers = [dict(r) async for r in probes().subprocessors_all(conn)]
    return versions + registers


async def test_policy_pages_of_another_tenant_read_like_none_and_need_the_right(
    client, conn, acme, beta
):
    cookie = await sign_in(client, acme.tokens["compliance"])
    await get(client, cookie, "/dashboard/t/beta/policy", 404)
    await get(client, cookie, "/dashboard/t/beta/policy/v/1", 404)
    await get(client, cookie, "/dashboard/t/beta/policy/v/1/proof.csv", 404)
    await get(client, cookie, "/dashboard/t/acme/policy/v/99", 404)
    marketing = await sign_in(client, acme.tokens["marketing"])
    await get(client, marketing, "/dashboard/t/acme/policy", 403)
    client_role = await sign_in(client, acme.tokens["client"])
    # A client may read the versions (policy.read) but not write the next one.
    await get(client, client_role, "/dashboard/t/acme/policy")
    await get(client, client_role, "/dashboard/t/acme/policy/new", 403)
    # The register: read by a client (no form), another tenant's reads like none.
    shown = await get(client, client_role, "/dashboard/t/acme/subprocessors")
    assert 'id="register-list"' in shown and 'id="register-form"' not in shown
    await get(client, cookie, "/dashboard/t/beta/subprocessors", 404)
    await get(client, marketing, "/dashboard/t/acme/subprocessors", 403)


# --- the sub-processor register -----------------------------------------------------------------


async def test_compliance_edits_the_register_and_a_material_change_publishes_a_version(
    client, conn, acme
):
    """STANDARDS 41: rows added and removed (an emptied row); a material change inside the
    notice period refused with nothing saved; a valid one publishes the version embedding the
    register and opens its page, where the notice is a draft."""
    cookie = await sign_in(client, acme.tokens["compliance"])
    page = await get(client, cookie, "/dashboard/t/acme/subprocessors")
    token = csrf_of(page)
    path = "/dashboard/t/acme/subprocessors"
    rows = {
        "rows": "3",
        "name_0": "Host GmbH", "purpose_0": "Servers", "location_0": "Frankfurt, DE",
        "name_1": "Relay Inc.", "purpose_1": "Mail", "location_1": "Dublin, IE",
    }  # fmt: skip
    response = await post(client, cookie, path, rows, token)
    assert response.status == 303 and response.headers["Location"] == f"{path}?done=saved"
    page = await get(client, cookie, path)
    assert 'value="Host GmbH"' in page and 'value="Relay Inc."' in page

    emptied = rows | {"name_1": "", "purpose_1": "", "location_1": ""}
    soon = emptied | {"material": "1", "effective": local(3), "summary": "Relay removed."}
    response = await post(client, cookie, path, soon, token)
    assert response.status == 409
    assert "the earliest effective time is" in (await response.text()).replace("&#39;", "'")
    assert [r["name"] async for r in probes().subprocessors_all(conn)] == [
        "Host GmbH",
        "Relay Inc.",
    ]

    response = await post(client, cookie, path, soon | {"effective": local(31)}, token)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/dashboard/t/acme/policy/v/2?done=published"
    body = (await policy.get_version(conn, acme.id, 2))["body_md"]
    assert body.startswith(V1.strip()) and "| Host GmbH | Servers | Frankfurt, DE |" in body
    assert "Relay Inc." not in body
    page = await get(client, cookie, "/dashboard/t/acme/policy/v/2")
    assert "The notice mail (draft)" in page
