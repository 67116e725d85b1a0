"""The sub-processor registers through the admin API on real Postgres (STANDARDS 41): compliance
saves its tenant's register, a change marked material publishes a policy version embedding it
(notice period enforced) and starts its notice to the notice topic; the public policy page
lists the register; the installation's register is read by every tenant's compliance and
client tokens and saved only by an admin; the CLI does the same."""

from __future__ import annotations

import asyncio
import datetime as dt

from mailer import api_tokens, tenants
from mailer.db import queries
from mailer.rights import policy, subprocessors
from tests.conftest import subprocess_env
from tests.support.api_world import sending_settings
from tests.support.cli import optout
from tests.support.mailer_env import add_subscribers
from tests.support.workspace import ready_tenant
from unsubscribe_web.app import create_app

HOST = {"name": "Example Hosting GmbH", "purpose": "Runs our servers", "location": "Frankfurt, DE"}
RELAY = {"name": "Relay Mail Inc.", "purpose": "Delivers email", "location": "Dublin, IE"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_material_change_publishes_a_version_embedding_the_register_and_its_notice(
    aiohttp_client, conn, settings, tmp_path
):
    relay_settings = sending_settings(settings)
    client = await aiohttp_client(create_app(relay_settings))
    acme = await ready_tenant(conn, relay_settings, tmp_path, "acme")
    topic = await tenants.create_topic(
        conn, acme.id, slug="policy-notices", name="Policy notices", kind="notice"
    )
    notified = await add_subscribers(conn, relay_settings, acme.id, topic["id"], 4, prefix="n")
    admin = await api_tokens.create_token(conn, role="admin", tenant_id=None)
    response = await client.post(
        "/api/v1/subprocessors", json={"entries": [RELAY]}, headers=bearer(admin.secret)
    )
    assert response.status == 200, await response.text()

    compliance = bearer(acme.tokens["compliance"])
    path = "/api/v1/tenants/acme/subprocessors"
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=31)).isoformat()
    change = {"entries": [HOST], "material": True, "summary": "A new host.", "effective_at": soon}
    # Inside the 30 days' notice: refused, and nothing changed (the register neither).
    response = await client.post(path, json=change, headers=compliance)
    assert response.status == 409, await response.text()
    assert await subprocessors.register(conn, acme.id) == []
    assert await policy.versions(conn, acme.id) == []

    response = await client.post(path, json=change | {"effective_at": later}, headers=compliance)
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert answer["version"] == 1 and answer["notice"]["queued"] == len(notified)
    version = await policy.get_version(conn, acme.id, 1)
    assert "| Example Hosting GmbH | Runs our servers | Frankfurt, DE |" in version["body_md"]
    assert "| Relay Mail Inc. | Delivers email | Dublin, IE |" in version["body_md"]

    # The public page lists both registers, and announces the version.
    page = await (await client.get("/policy/acme")).text()
    register = page.split('id="subprocessors"', 1)[1].split("</section>", 1)[0]
    assert "Example Hosting GmbH" in register and "Relay Mail Inc." in register
    assert "A new host." in page.split('id="policy-notice"', 1)[1]

    # A change not marked material only changes the register.
    response = await client.post(
        path, json={"entries": [HOST, RELAY | {"name": "Other"}]}, headers=compliance
    )
    assert response.status == 200
    assert len(await policy.versions(conn, acme.id)) == 1
    assert [r["name"] for r in await subprocessors.register(conn, acme.id)] == [
        HOST["name"],
        "Other",
    ]


async def test_the_installation_register_is_read_by_every_tenant_and_saved_by_admins(
    aiohttp_client, conn, settings, tmp_path
):
    client = await aiohttp_client(create_app(settings))
    acme = await ready_tenant(conn, settings, tmp_path, "acme")
    await subprocessors.save(conn, None, subprocessors.check_entries([RELAY]), by="test")
    for role in ("compliance", "client"):
        for path in ("/api/v1/subprocessors", "/api/v1/tenants/acme/subprocessors"):
            response = await client.get(path, headers=bearer(acme.tokens[role]))
            assert response.status == 200, (role, path)
            body = await response.json()
            listed = body["installation"] if "tenants" in path else body["items"]
            assert [r["name"] for r in listed] == [RELAY["name"]]
    response = await client.post(
        "/api/v1/subprocessors", json={"entries": []}, headers=bearer(acme.tokens["compliance"])
    )
    assert response.status == 403
    assert [r["name"] for r in await subprocessors.register(conn, None)] == [RELAY["name"]]


async def test_the_cli_adds_and_removes_companies_and_publishes_a_material_change(
    conn, db_dsn, settings, tmp_path
):
    await ready_tenant(conn, settings, tmp_path, "acme")
    env = subprocess_env(db_dsn)

    def run(*args: str):
        return optout("subprocessors", *args, env=env)

    added = await asyncio.to_thread(
        run, "add", "--tenant", "acme", "--name", "Host", "--purpose", "Servers", "--location", "DE"
    )
    assert added.returncode == 0, added.stderr
    removed = await asyncio.to_thread(run, "remove", "--tenant", "acme", "--name", "Nobody")
    assert removed.returncode == 1 and "No company 'Nobody'" in removed.stderr
    material = await asyncio.to_thread(
        run, "add", "--tenant", "acme", "--name", "Relay", "--purpose", "Mail",
        "--location", "IE", "--material", "--effective",
        (dt.date.today() + dt.timedelta(days=40)).isoformat(), "--summary", "A relay.",
    )  # fmt: skip
    assert material.returncode == 0, material.stderr
    assert "published version 1" in material.stdout
    tenant = await queries().tenants.get_tenant_by_slug(conn, slug="acme")
    body = (await policy.get_version(conn, tenant["id"], 1))["body_md"]
    assert "| Host | Servers | DE |" in body and "| Relay | Mail | IE |" in body
    listed = await asyncio.to_thread(run, "list", "--tenant", "acme")
    assert listed.stdout.splitlines() == ["Host  |  Servers  |  DE", "Relay  |  Mail  |  IE"]
    refused = await asyncio.to_thread(
        run, "add", "--installation", "--name", "X", "--purpose", "Y", "--location", "Z",
        "--material", "--effective", "2031-01-01", "--summary", "S",
    )  # fmt: skip
    assert refused.returncode == 2 and await subprocessors.register(conn, None) == []
