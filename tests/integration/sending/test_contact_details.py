"""Contact details besides the postal address (STANDARDS 42, CASL): a marketing campaign of a
tenant with none is refused in one line naming `optout tenant update`, nothing queued; a policy
notice still goes; once set, the footer of both parts shows them, and so do the public pages."""

from __future__ import annotations

import asyncio
import email
import email.policy

import pytest

from mailer import tenants
from mailer.db import queries
from mailer.errors import InvalidInput
from mailer.sending import campaigns
from tests.conftest import probes, subprocess_env
from tests.support.cli import optout
from tests.support.mailer_env import add_subscribers, mail_settings, make_tenant


async def _without_contact(conn, settings, tmp_path):
    tenant, topic = await make_tenant(conn, tmp_path, contact=None)
    await add_subscribers(conn, settings, tenant["id"], topic["id"], 3)
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug="newsletter",
        name="News",
        template="newsletter",
        subject="News",
        content={"headline": "News", "intro": "Hello.", "blocks": []},
    )
    return tenant, topic, campaign


async def queued(conn, campaign_id: int) -> int:
    found = [r["n"] async for r in probes().delivery_states(conn, campaign_id=campaign_id)]
    return sum(found)


async def test_a_marketing_campaign_without_contact_details_is_refused_in_one_line(
    conn, settings, smtp_sink, tmp_path, db_dsn
):
    """STANDARDS 42: the refusal names the `tenant update` option; nothing is queued, by the
    library, in the workspace's list of problems, and by `optout campaign send` (exit 2)."""
    s = mail_settings(settings, smtp_sink.port)
    tenant, _, campaign = await _without_contact(conn, s, tmp_path)
    with pytest.raises(campaigns.CampaignRefused) as refused:
        await campaigns.start(conn, s, tenant["id"], campaign["id"])
    assert "\n" not in refused.value.message
    assert "optout tenant update acme --contact-email" in refused.value.message
    assert await queued(conn, campaign["id"]) == 0
    problems = await campaigns.problems(conn, s, campaign)
    assert any("--contact-email" in p.message for p in problems)

    env = subprocess_env(db_dsn)
    sent = await asyncio.to_thread(
        optout, "campaign", "send", str(campaign["id"]), "--tenant", "acme", env=env
    )
    assert sent.returncode == 2  # the tenant's configuration, like a missing DKIM key
    [line] = sent.stderr.strip().splitlines()
    assert "optout tenant update acme --contact-email" in line
    assert await queued(conn, campaign["id"]) == 0

    # The operator follows the line; the same campaign then starts.
    updated = await asyncio.to_thread(
        optout, "tenant", "update", "acme", "--contact-email", "help@acme.example", env=env
    )
    assert updated.returncode == 0, updated.stderr
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == 3


async def test_a_policy_notice_is_not_commercial_and_goes_without_contact_details(
    conn, settings, smtp_sink, tmp_path
):
    s = mail_settings(settings, smtp_sink.port)
    tenant, topic = await make_tenant(conn, tmp_path, contact=None, topic_kind="notice")
    await add_subscribers(conn, s, tenant["id"], topic["id"], 2)
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug="newsletter",
        name="Notice",
        template="policy_notice",
        subject="Changes to our privacy policy",
        content={"effective_date": "1 May", "changes": ["One"], "policy_url": "https://x/p"},
    )
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == 2


async def test_the_footer_of_both_parts_shows_every_contact_detail(conn, settings, tmp_path):
    tenant, _ = await make_tenant(conn, tmp_path)
    await tenants.update_tenant(
        conn,
        "acme",
        {
            "contact_web": "https://acme.example/help",
            "contact_email": "help@acme.example",
            "contact_phone": "+1 555 0100",
        },
    )
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug="newsletter",
        name="News",
        template="newsletter",
        subject="News",
        content={"headline": "News", "intro": "Hello.", "blocks": []},
    )
    raw = await campaigns.preview(conn, settings, tenant["id"], campaign["id"])
    message = email.message_from_bytes(raw, policy=email.policy.default)
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and rich is not None
    text, html = plain.get_content(), rich.get_content()
    assert "Contact us: https://acme.example/help help@acme.example +1 555 0100" in text
    assert 'href="https://acme.example/help"' in html
    assert 'href="mailto:help@acme.example"' in html and "+1 555 0100" in html


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("contact_web", "javascript:alert(1)", "is not a web address"),
        ("contact_web", "acme.example", "is not a web address"),
        ("contact_email", "not an address", "contact_email:"),
        ("contact_phone", "call us", "is not a phone number"),
    ],
)
async def test_bad_contact_details_are_refused_and_nothing_changes(
    conn, tmp_path, field, value, says
):
    await make_tenant(conn, tmp_path)
    before = dict(await queries().tenants.get_tenant_by_slug(conn, slug="acme"))
    with pytest.raises(InvalidInput) as refused:
        await tenants.update_tenant(conn, "acme", {field: value})
    assert says in refused.value.message and refused.value.field == field
    assert dict(await queries().tenants.get_tenant_by_slug(conn, slug="acme")) == before
