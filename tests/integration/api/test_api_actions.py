"""The admin API's campaign test-send and data-request completion, the verification mail for
a person's request made over the API, and the audit lines of the foundation's tenant and topic
commands."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from mailer.rights import privacy
from tests.conftest import probes, subprocess_env
from tests.support.api_world import bearer, build_world, sending_settings
from unsubscribe_web.app import create_app


@pytest.fixture
async def world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


async def post(client, token, path, body=None):
    response = await client.post(path, headers=bearer(token), json=body)
    return response.status, await response.json()


async def audit_rows(conn):
    return [dict(r) async for r in probes().audit_entries(conn)]


def run_cli(db_dsn, *args):
    return subprocess.run(
        [sys.executable, "-m", "mailer.cli", *args],
        env=subprocess_env(db_dsn),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_campaign_test_send_queues_the_message_to_one_address(world, client, conn):
    path = f"/api/v1/tenants/alpha/campaigns/{world.a.campaign_id}/test"
    status, body = await post(client, world.a.tokens["marketing"], path, {"to": "boss@x.example"})
    assert status == 202, body
    [queued] = [d async for d in probes().transactional_to(conn, recipient="boss@x.example")]
    assert queued["id"] == body["delivery_id"] and queued["template"] == "newsletter"
    assert queued["payload"]["campaign_id"] == world.a.campaign_id and queued["payload"]["test"]
    last = (await audit_rows(conn))[-1]
    assert (last["action"], last["target_type"], last["target_id"]) == (
        "test_campaign",
        "campaign",
        world.a.campaign_id,
    )
    assert last["token_id"] and "@" not in json.dumps(last["detail"])

    before = await audit_rows(conn)
    status, body = await post(client, world.a.tokens["marketing"], path, {"to": "not an address"})
    assert status == 400 and body["error"]["field"] == "email", body
    status, body = await post(client, world.a.tokens["compliance"], path, {"to": "c@x.example"})
    assert status == 403
    assert [d async for d in probes().transactional_to(conn, recipient="c@x.example")] == []
    assert await audit_rows(conn) == before


async def test_erasure_request_over_the_api_is_verified_then_completed(world, client, conn):
    token = world.a.tokens["compliance"]
    base = "/api/v1/tenants/alpha/requests"
    status, created = await post(
        client, token, base, {"kind": "erase", "email": world.a.subscriber_email}
    )
    assert status == 201 and created["status"] == "awaiting_verification"
    # The person gets the verification mail, as from `optout requests create`.
    mails = [d async for d in probes().transactional_to(conn, recipient=world.a.subscriber_email)]
    assert [m["template"] for m in mails] == ["verify_request"]

    done_path = f"{base}/{created['id']}/complete"
    status, body = await post(client, token, done_path)
    assert status == 409 and "verified" in body["error"]["message"]
    assert (await probes().subscriber_row(conn, id=world.a.subscriber_id))["erased_at"] is None

    await privacy.verify_request(conn, world.a.id, created["id"], dt.datetime.now(dt.UTC))
    status, body = await post(client, world.a.tokens["client"], done_path)
    assert status == 403  # a client may ask, not carry out
    status, body = await post(client, token, done_path)
    assert status == 200, body
    assert body["status"] == "done" and body["erasure_receipt"]["id"]
    assert (await probes().subscriber_row(conn, id=world.a.subscriber_id))["erased_at"]
    last = (await audit_rows(conn))[-1]
    assert (last["action"], last["target_type"], last["target_id"]) == (
        "request.complete",
        "data_request",
        created["id"],
    )
    assert last["token_id"] is not None and last["actor"] == body["completed_by"]
    assert "@" not in json.dumps(last["detail"])
    status, again = await post(client, token, done_path)
    assert status == 200 and again["already_done"] is True


async def test_access_request_completed_over_the_api_returns_the_data(world, client, conn):
    path = f"/api/v1/tenants/alpha/requests/{world.a.request_id}/complete"
    status, body = await post(client, world.admin, path)
    assert status == 200, body
    assert body["status"] == "done" and body["erasure_receipt"] is None
    assert world.a.subscriber_email in json.dumps(body["access"])
    # A client's removal is the controller's instruction: no verification mail is sent.
    status, created = await post(
        client,
        world.a.tokens["client"],
        "/api/v1/tenants/alpha/requests",
        {"kind": "client_removal", "email": "bob@alpha.example"},
    )
    assert status == 201 and created["status"] == "open"
    mails = [d async for d in probes().transactional_to(conn, recipient="bob@alpha.example")]
    assert "verify_request" not in [m["template"] for m in mails]


async def test_cli_completes_requests_and_writes_the_access_copy(world, conn, db_dsn, tmp_path):
    out = tmp_path / "access.json"
    args = ("requests", "complete", str(world.a.request_id), "--tenant", "alpha")
    done = run_cli(db_dsn, *args, "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"request {world.a.request_id} done"
    assert world.a.subscriber_email in out.read_text(encoding="utf-8")
    again = run_cli(db_dsn, *args)
    assert again.returncode == 0 and "already done" in again.stderr
    row = await probes().request_row(conn, id=world.a.request_id)
    assert (row["status"], row["completed_by"]) == ("done", "cli")


async def test_tenant_and_topic_commands_are_audited(conn, db_dsn):
    """Every admin action is in the audit log: actor cli, the target's id, no personal data."""
    created = run_cli(
        db_dsn,
        "tenant",
        "create",
        "gamma",
        "--name",
        "Gamma",
        "--sender-address",
        "n@gamma.example",
    )
    assert created.returncode == 0, created.stderr
    updated = run_cli(db_dsn, "tenant", "update", "gamma", "--name", "Gamma Ltd")
    assert updated.returncode == 0, updated.stderr
    topic = run_cli(db_dsn, "topic", "create", "--tenant", "gamma", "news", "--name", "News")
    assert topic.returncode == 0, topic.stderr
    entries = await audit_rows(conn)
    tenant_id = entries[0]["tenant_id"]
    assert [(e["actor"], e["action"], e["target_type"]) for e in entries] == [
        ("cli", "tenant.create", "tenant"),
        ("cli", "tenant.update", "tenant"),
        ("cli", "topic.create", "topic"),
    ]
    assert entries[0]["target_id"] == entries[1]["target_id"] == tenant_id
    assert all(e["tenant_id"] == tenant_id for e in entries)
    assert entries[1]["detail"] == {"fields": ["name"]}
    assert "@" not in json.dumps([e["detail"] for e in entries])
