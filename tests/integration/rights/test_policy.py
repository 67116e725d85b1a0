"""Policy versions: publishing rules, the public page's notice window and diff, the notice
campaign's audience end to end, and proof of notice."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from mailer import tenants
from mailer.consent import writer as consent
from mailer.csv_safe import csv_text
from mailer.db import create_pool
from mailer.errors import Conflict, InvalidInput
from mailer.rights import erasure, policy
from mailer.sending import campaigns
from mailer.sending.campaigns import CampaignRefused
from mailer.sending.worker import Worker
from tests.conftest import TEST_HASH_KEY, probes
from tests.support.mailer_env import address_key, mail_settings, make_tenant
from unsubscribe_web.app import create_app
from unsubscribe_web.public.policy_pages import CLOCK

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
V1 = "# Privacy\n\nWe keep your address.\n\nWe never share it.\n"
V2 = "# Privacy\n\nWe keep your address.\n\nWe share it with partners you choose.\n"


@pytest.fixture
async def tenant(conn, tmp_path):
    row, _ = await make_tenant(conn, tmp_path)
    await tenants.create_topic(conn, row["id"], slug="notices", name="Notices", kind="notice")
    return await tenants.get_tenant(conn, "acme")


async def publish(conn, tenant, body=V1, effective=NOW + dt.timedelta(days=31), now=NOW, **kw):
    return await policy.publish(
        conn,
        tenant=tenant,
        body=body,
        summary=kw.pop("summary", "First version"),
        effective_at=effective,
        now=now,
        **kw,
    )


async def test_a_notice_shorter_than_the_tenants_period_is_refused_unless_forced(conn, tenant):
    with pytest.raises(policy.NoticeTooShort, match="30 days"):
        await publish(conn, tenant, effective=NOW + dt.timedelta(days=29, hours=23))
    assert await policy.versions(conn, tenant["id"]) == []
    forced = await publish(
        conn, tenant, effective=NOW + dt.timedelta(days=3), force_reason="court order"
    )
    assert forced["force_reason"] == "court order"
    assert forced["version"] == 1


async def test_past_dates_empty_texts_and_out_of_order_versions_change_nothing(conn, tenant):
    with pytest.raises(InvalidInput, match="past"):
        await publish(conn, tenant, effective=NOW - dt.timedelta(days=1), force_reason="x")
    with pytest.raises(InvalidInput, match="empty"):
        await publish(conn, tenant, body="\n\n")
    with pytest.raises(InvalidInput, match="summary"):
        await publish(conn, tenant, summary=" ")
    await publish(conn, tenant, effective=NOW + dt.timedelta(days=60))
    with pytest.raises(Conflict, match="after it"):
        await publish(conn, tenant, effective=NOW + dt.timedelta(days=40))
    assert [v["version"] for v in await policy.versions(conn, tenant["id"])] == [1]


def test_a_policy_file_that_is_not_utf8_is_refused():
    with pytest.raises(InvalidInput, match="not UTF-8"):
        policy.decode_body("Données".encode("latin-1"))
    assert policy.decode_body("\ufeffDonnées".encode()) == "Données"


def test_markdown_is_rendered_without_raw_html_or_script_links():
    html = policy.render_markdown(
        "# Title\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))"
    )
    assert "<h1>Title</h1>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html


async def test_the_page_shows_the_notice_only_between_publish_and_effective_date(
    conn, tenant, settings, aiohttp_client
):
    await publish(conn, tenant, body=V1, effective=NOW + dt.timedelta(days=31))
    published_v2 = NOW + dt.timedelta(days=40)
    effective_v2 = NOW + dt.timedelta(days=75)
    await publish(
        conn,
        tenant,
        body=V2 + "<b>bold</b>\n",
        effective=effective_v2,
        now=published_v2,
        summary="We may share your address with partners you choose.",
    )
    clock = {"now": NOW}
    app = create_app(settings)
    app[CLOCK] = lambda: clock["now"]
    client = await aiohttp_client(app)

    async def page():
        response = await client.get("/policy/acme")
        assert response.status == 200
        return await response.text()

    clock["now"] = NOW + dt.timedelta(days=35)  # v1 in effect, v2 not yet published
    text = await page()
    assert 'id="policy-notice"' not in text
    assert "We never share it." in text

    clock["now"] = published_v2 + dt.timedelta(seconds=1)  # v2 announced
    text = await page()
    assert 'id="policy-notice"' in text
    assert text.index('id="policy-notice"') < text.index("<h1>")
    assert "We may share your address with partners you choose." in text
    assert (
        "15 May 2026" in text
    )  # 1 March + 75 days: the effective date, in the tenant's zone (UTC)
    assert "<del>- We never share it.</del>" in text
    assert "<ins>+ We share it with partners you choose.</ins>" in text
    assert "<ins>+ &lt;b&gt;bold&lt;/b&gt;</ins>" in text  # the diff is escaped
    assert "We never share it." in text.split('id="policy-text"')[1]  # still v1 in effect

    clock["now"] = effective_v2  # v2 in effect: no notice any more
    text = await page()
    assert 'id="policy-notice"' not in text
    body = text.split('id="policy-text"')[1]
    assert "We share it with partners you choose." in body
    assert "<b>bold</b>" not in text

    response = await client.get("/policy/acme/versions")
    listing = await response.text()
    assert response.status == 200
    assert "Version 2" in listing and "Version 1" in listing
    response = await client.get("/policy/acme/versions/1")
    assert "We never share it." in await response.text()
    assert (await client.get("/policy/nobody")).status == 404
    assert (await client.get("/policy/acme/versions/9")).status == 404


async def test_the_first_version_is_announced_before_it_takes_effect(conn, tenant):
    await publish(conn, tenant, body=V1, effective=NOW + dt.timedelta(days=31))
    view = await policy.view(conn, tenant["id"], NOW + dt.timedelta(days=1))
    assert view.current is None
    assert view.upcoming is not None
    assert view.upcoming["version"] == 1
    assert {line.kind for line in view.diff} == {"add"}
    assert (await policy.view(conn, tenant["id"], NOW - dt.timedelta(days=1))).upcoming is None


def test_the_diff_keeps_context_and_marks_gaps():
    old = "\n".join(f"line {i}" for i in range(20))
    new = old.replace("line 2", "line two").replace("line 17", "line seventeen")
    diff = policy.diff_lines(old, new)
    kinds = [d.kind for d in diff]
    assert "gap" in kinds
    assert policy.DiffLine("del", "line 2") in diff
    assert policy.DiffLine("add", "line seventeen") in diff
    assert policy.DiffLine("same", "line 10") not in diff  # far from any change


async def subscribe(conn, tenant, email, *slugs):
    result = None
    for slug in slugs:
        topic = await tenants.get_topic(conn, tenant["id"], slug)
        result = await consent.subscribe(
            conn,
            hash_key=TEST_HASH_KEY,
            tenant_id=tenant["id"],
            topic_id=topic["id"],
            email=email,
            age_attested=True,
            source="import",
            confirmed=True,
            lawful_basis="consent",
        )
    assert result is not None
    return result.subscriber_id


async def test_the_notice_reaches_marketing_unsubscribed_people_but_not_erased_or_bounced(
    conn, db_dsn, tenant, settings, smtp_sink
):
    """STANDARDS 34: a notice reaches a newsletter-unsubscribed person but not an erased or
    hard-bounced one; the proof of notice lists exactly who was mailed."""
    reader = await subscribe(conn, tenant, "reader@example.org", "newsletter", "notices")
    quitter = await subscribe(conn, tenant, "quitter@example.org", "newsletter", "notices")
    erased = await subscribe(conn, tenant, "erased@example.org", "notices")
    bounced = await subscribe(conn, tenant, "bounced@example.org", "notices")
    await consent.unsubscribe_all_marketing(
        conn, tenant_id=tenant["id"], subscriber_id=quitter, source="preference_centre"
    )
    await erasure.erase_subscriber(conn, tenant_id=tenant["id"], subscriber_id=erased, by="staff")
    await consent.suppress(
        conn,
        tenant_id=tenant["id"],
        address_key=address_key(settings, tenant["id"], "bounced@example.org"),
        scope="all",
        reason="hard_bounce",
        source="bounce",
        subscriber_id=bounced,
    )
    now = dt.datetime.now(dt.UTC)
    version = await publish(conn, tenant, effective=now + dt.timedelta(days=31), now=now)
    topic = await policy.notice_topic(conn, tenant["id"])
    campaign = await policy.create_notice_campaign(
        conn,
        tenant=tenant,
        version=version,
        topic=topic,
        policy_url="https://optout.test/policy/acme",
    )
    assert campaign["priority"] == policy.NOTICE_PRIORITY
    [status] = await policy.status(conn, tenant["id"], now)
    assert (status.warning or "").startswith("the notice has not started sending")

    s = mail_settings(settings, smtp_sink.port)
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == 2
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, s).run(until_idle=True)
    finally:
        await pool.close()
    messages = await smtp_sink.wait_for(2)
    assert sorted(rcpt for m in messages for rcpt in m.rcpt_tos) == [
        "quitter@example.org",
        "reader@example.org",
    ]
    raw = messages[0].data.decode()
    assert "List-Unsubscribe:" in raw
    assert "Unsubscribe from policy notices" in raw

    [status] = await policy.status(conn, tenant["id"], dt.datetime.now(dt.UTC))
    assert (status.sent, status.pending, status.warning) == (2, 0, None)

    _, people = await policy.proof_of_notice(conn, tenant["id"], 1)
    table = list(
        csv.DictReader(io.StringIO(csv_text(policy.PROOF_COLUMNS, policy.proof_rows(people))))
    )
    mailed = {r["email"] for r in table if r["notified_by"] == "email"}
    assert mailed == {"reader@example.org", "quitter@example.org"}
    assert all(r["sent_at"] for r in table if r["notified_by"] == "email")
    covered = {r["email"] for r in table if r["notified_by"] == "site_notice"}
    assert covered == {"bounced@example.org"}
    assert str(reader) in {r["subscriber_id"] for r in table}


async def test_the_notice_template_refuses_marketing_blocks(conn, tenant):
    """STANDARDS 34"""
    with pytest.raises(CampaignRefused, match="marketing content blocks"):
        await campaigns.create(
            conn,
            tenant_id=tenant["id"],
            topic_slug="notices",
            name="Sneaky",
            template="policy_notice",
            subject="Policy",
            content={
                "effective_date": "1 May",
                "changes": ["x"],
                "policy_url": "https://optout.test/policy/acme",
                "blocks": [{"title": "Sale!", "body": "50% off"}],
            },
        )


async def test_several_notice_topics_need_a_choice(conn, tenant):
    await tenants.create_topic(conn, tenant["id"], slug="service", name="Service", kind="notice")
    with pytest.raises(InvalidInput, match="--topic"):
        await policy.notice_topic(conn, tenant["id"])
    assert (await policy.notice_topic(conn, tenant["id"], "service"))["slug"] == "service"


async def test_status_warns_when_the_notice_will_not_finish_before_the_effective_date(
    conn, tenant, settings
):
    """At one notice per ten days, the second of two needs ten more days: past the effective
    date five days away."""
    await subscribe(conn, tenant, "one@example.org", "notices")
    await subscribe(conn, tenant, "two@example.org", "notices")
    now = dt.datetime.now(dt.UTC)
    version = await publish(
        conn, tenant, effective=now + dt.timedelta(days=5), now=now, force_reason="regulator"
    )
    topic = await policy.notice_topic(conn, tenant["id"])
    campaign = await policy.create_notice_campaign(
        conn, tenant=tenant, version=version, topic=topic, policy_url="https://optout.test/p"
    )
    assert (
        await campaigns.start(conn, mail_settings(settings, 1), tenant["id"], campaign["id"]) == 2
    )
    [first, *_] = [d async for d in probes().campaign_deliveries(conn, campaign_id=campaign["id"])]
    await probes().mark_sent(conn, id=first["id"], sent_at=now - dt.timedelta(days=10))
    [status] = await policy.status(conn, tenant["id"], now)
    assert (status.sent, status.pending) == (1, 1)
    assert status.rate_per_hour == pytest.approx(1 / 240)
    assert "after the effective date" in (status.warning or "")
