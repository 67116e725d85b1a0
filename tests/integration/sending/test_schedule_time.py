"""A start time in the past is refused by the core, for the CLI and the API alike, before
anything is queued: a worker would otherwise start the mass send at once."""

from __future__ import annotations

import datetime as dt

import pytest

from mailer import api_tokens
from mailer.sending import campaigns
from mailer.sending.campaigns import CampaignRefused, check_schedule_time
from tests.conftest import probes, subprocess_env
from tests.support.cli import optout
from tests.support.mailer_env import newsletter_campaign, sink_env
from unsubscribe_web.app import create_app

PAST = "2020-01-01T09:00+00:00"


async def _untouched(conn, tenant_id: int, campaign_id: int) -> None:
    campaign = await campaigns.get(conn, tenant_id, campaign_id)
    assert campaign["status"] == "draft" and campaign["scheduled_at"] is None
    assert [r async for r in probes().delivery_states(conn, campaign_id=campaign_id)] == []


async def test_the_cli_refuses_a_past_time_and_queues_nothing(conn, db_dsn, settings, tmp_path):
    tenant, _, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 5)
    # A relay is set (nothing is sent in this test): only the time is wrong.
    env = sink_env(subprocess_env(db_dsn), 2525)
    result = optout("campaign", "schedule", str(campaign["id"]), "--tenant", "acme",
                    "--at", PAST, env=env)  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("optout: the start time 2020-01-01 09:00 UTC is in the past")
    assert "optout campaign send" in result.stderr
    await _untouched(conn, tenant["id"], campaign["id"])

    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat(timespec="minutes")
    result = optout("campaign", "schedule", str(campaign["id"]), "--tenant", "acme",
                    "--at", later, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (await campaigns.get(conn, tenant["id"], campaign["id"]))["status"] == "scheduled"


async def test_the_api_refuses_a_past_time_and_queues_nothing(
    aiohttp_client, conn, settings, tmp_path
):
    tenant, _, campaign, _ = await newsletter_campaign(conn, settings, tmp_path, 5)
    token = await api_tokens.create_token(conn, role="marketing", tenant_id=tenant["id"])
    client = await aiohttp_client(create_app(settings))
    reply = await client.post(
        f"/api/v1/tenants/acme/campaigns/{campaign['id']}/schedule",
        json={"at": PAST},
        headers={"Authorization": f"Bearer {token.secret}"},
    )
    assert reply.status == 400
    error = (await reply.json())["error"]
    assert error["code"] == "campaign_refused" and "in the past" in error["message"]
    await _untouched(conn, tenant["id"], campaign["id"])


def test_the_boundary_is_now():
    now = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
    check_schedule_time(now, now)
    check_schedule_time(now + dt.timedelta(minutes=1), now)
    paris = dt.timezone(dt.timedelta(hours=2))
    # 10:59 in Paris is 08:59 UTC: a minute ago
    with pytest.raises(CampaignRefused, match="in the past"):
        check_schedule_time(dt.datetime(2026, 6, 1, 10, 59, tzinfo=paris), now)
    with pytest.raises(CampaignRefused, match="time zone"):
        check_schedule_time(dt.datetime(2026, 6, 1, 12, 0), now)
