"""The single bounce policy (STANDARDS 48): what suppresses, what only counts, what alerts."""

from __future__ import annotations

import datetime as dt

import pytest

from mailer.errors import InvalidInput
from mailer.sending.bounce_policy import BouncePolicy, record_bounce
from tests.conftest import probes
from tests.support.mailer_env import add_subscribers, address_key, make_tenant

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def person(conn, settings, tmp_path):
    tenant, topic = await make_tenant(conn, tmp_path)
    people = await add_subscribers(conn, settings, tenant["id"], topic["id"], 1)
    [(subscriber_id, email)] = people.items()
    return tenant["id"], subscriber_id, address_key(settings, tenant["id"], email)


async def bounce(conn, person, status, *, permanent=True, at=T0, delivery_id=None, **kw):
    tenant_id, subscriber_id, key = person
    return await record_bounce(
        conn,
        tenant_id=tenant_id,
        address_key=key,
        delivery_id=delivery_id,
        status=status,
        permanent=permanent,
        source=kw.pop("source", "dsn"),
        subscriber_id=subscriber_id,
        now=at,
        **kw,
    )


async def suppression(conn, person):
    tenant_id, _, key = person
    return await probes().suppression_of(conn, tenant_id=tenant_id, address_key=key)


@pytest.mark.parametrize("status", ["5.1.1", "5.1.10"])
async def test_no_such_user_and_null_mx_suppress_everything_at_once(conn, person, status):
    decision = await bounce(conn, person, status)
    assert decision.action == "suppress" and decision.suppressed
    row = await suppression(conn, person)
    assert (row["scope"], row["reason"]) == ("all", "hard_bounce")
    events = [e async for e in probes().all_events(conn)]
    assert [(e["action"], e["source"]) for e in events] == [("suppress", "bounce")]


async def test_other_permanent_failures_suppress_on_the_second_within_seven_days(conn, person):
    first = await bounce(conn, person, "5.2.2")
    assert first.action == "record" and await suppression(conn, person) is None
    second = await bounce(conn, person, "5.2.2", at=T0 + dt.timedelta(days=6, hours=23))
    assert second.action == "suppress" and second.score >= 1.5
    assert (await suppression(conn, person))["scope"] == "all"


async def test_failures_further_apart_than_the_window_never_add_up(conn, person):
    await bounce(conn, person, "5.2.2")
    late = await bounce(conn, person, None, at=T0 + dt.timedelta(days=7, hours=1))
    assert late.action == "record" and late.score == pytest.approx(1.0)
    assert await suppression(conn, person) is None


async def test_an_older_failure_counts_less_than_a_fresh_one(conn, person):
    policy = BouncePolicy()
    assert policy.weight(dt.timedelta(0)) == 1.0
    assert policy.weight(dt.timedelta(days=3.5)) == pytest.approx(0.75)
    assert policy.weight(dt.timedelta(days=8)) == 0.0
    custom = BouncePolicy(window=dt.timedelta(days=1), suppress_score=2.5)
    for hours in (0, 5, 10):
        decision = await bounce(
            conn, person, "5.4.4", at=T0 + dt.timedelta(hours=hours), policy=custom
        )
    assert decision.action == "suppress" and decision.score >= 2.5


async def test_the_smtp_reply_and_the_later_dsn_of_one_delivery_are_one_failure(conn, person):
    tenant_id, subscriber_id, _ = person
    delivery = await probes().insert_delivery(
        conn, tenant_id=tenant_id, subscriber_id=subscriber_id
    )
    await bounce(conn, person, "5.2.2", source="smtp", delivery_id=delivery)
    again = await bounce(conn, person, "5.2.2", delivery_id=delivery, at=T0 + dt.timedelta(hours=2))
    assert again.action == "record"
    assert await suppression(conn, person) is None


async def test_policy_blocks_alert_and_never_suppress(conn, person, caplog):
    for day in range(5):
        decision = await bounce(conn, person, "5.7.1", at=T0 + dt.timedelta(days=day))
        assert decision.action == "alert"
    assert await suppression(conn, person) is None
    assert "bounce_policy_alert" in caplog.text


async def test_transient_failures_never_suppress(conn, person):
    for day in range(5):
        decision = await bounce(
            conn, person, "4.2.2", permanent=False, at=T0 + dt.timedelta(hours=day)
        )
        assert decision.action == "record"
    assert await suppression(conn, person) is None
    tenant_id, _, _ = person
    assert len([e async for e in probes().bounce_events_of(conn, tenant_id=tenant_id)]) == 5


async def test_bad_signals_are_refused(conn, person):
    with pytest.raises(InvalidInput):
        await bounce(conn, person, "5.1.1", source="carrier-pigeon")
    with pytest.raises(InvalidInput):
        await bounce(conn, person, "9.9.9")
