"""Request deadlines, checked against dates worked out by hand with a calendar (STANDARDS 38)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.errors import InvalidInput
from mailer.rights import deadlines
from mailer.rights.deadlines import ExtensionRefused

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# (received_at, time zone, last day on time, due_at = the instant it becomes overdue)
PERSON_CASES = [
    # plain month
    ("2026-01-15T10:00:00+00:00", "UTC", "2026-02-15", "2026-02-16T00:00:00+00:00"),
    # 31 January: February has no 31st, so its last day
    ("2026-01-31T12:00:00+00:00", "UTC", "2026-02-28", "2026-03-01T00:00:00+00:00"),
    # the same in a leap year ends on the leap day
    ("2028-01-31T12:00:00+00:00", "UTC", "2028-02-29", "2028-03-01T00:00:00+00:00"),
    # received on the leap day: 29 March
    ("2028-02-29T09:00:00+00:00", "UTC", "2028-03-29", "2028-03-30T00:00:00+00:00"),
    # 31 March: April has 30 days
    ("2026-03-31T08:00:00+00:00", "UTC", "2026-04-30", "2026-05-01T00:00:00+00:00"),
    # across the year end
    ("2026-12-15T08:00:00+00:00", "UTC", "2027-01-15", "2027-01-16T00:00:00+00:00"),
    # 23:30 UTC on 31 Jan is already 1 Feb in Paris: due 1 March, Paris midnight = 23:00 UTC
    ("2026-01-31T23:30:00+00:00", "Europe/Paris", "2026-03-01", "2026-03-01T23:00:00+00:00"),
    # 03:00 UTC on 1 March is still 28 Feb in New York; by 29 March New York is on summer
    # time (from 8 March 2026), so its midnight is 04:00 UTC
    ("2026-03-01T03:00:00+00:00", "America/New_York", "2026-03-28", "2026-03-29T04:00:00+00:00"),
]

# (received_at, time zone, holidays, last day, due_at)
CLIENT_CASES = [
    # Monday 1 June 2026: 4 days that week, then five full weeks, then Monday 13 July
    ("2026-06-01T10:00:00+00:00", "UTC", [], "2026-07-13", "2026-07-14T00:00:00+00:00"),
    # received on a Saturday: Monday 8 June is day 1, six full weeks end Friday 17 July
    ("2026-06-06T10:00:00+00:00", "UTC", [], "2026-07-17", "2026-07-18T00:00:00+00:00"),
    # two Friday holidays push Monday 13 July two business days on, to Wednesday 15 July
    (
        "2026-06-01T10:00:00+00:00",
        "UTC",
        ["2026-06-05", "2026-07-03"],
        "2026-07-15",
        "2026-07-16T00:00:00+00:00",
    ),
    # a holiday on a Saturday costs nothing
    ("2026-06-01T10:00:00+00:00", "UTC", ["2026-06-06"], "2026-07-13", "2026-07-14T00:00:00+00:00"),
    # Friday 18 Dec 2026; Christmas (Fri 25 Dec) and New Year (Fri 1 Jan 2027) skipped:
    # Dec 21-24 (4), 28-31 (8), Jan 4-8 (13), 11-15 (18), 18-22 (23), 25-29 (28), Feb 1, 2 (30)
    (
        "2026-12-18T15:00:00+00:00",
        "Europe/Berlin",
        ["2026-12-25", "2027-01-01"],
        "2027-02-02",
        "2027-02-02T23:00:00+00:00",
    ),
    # Friday 23:30 UTC is Saturday morning in Tokyo: counted like the Saturday case; JST
    # midnight after 17 July is 15:00 UTC that day
    ("2026-06-05T23:30:00+00:00", "Asia/Tokyo", [], "2026-07-17", "2026-07-17T15:00:00+00:00"),
]


@pytest.mark.parametrize(("received", "zone", "last", "due"), PERSON_CASES)
def test_a_persons_request_is_due_one_calendar_month_later(received, zone, last, due):
    """STANDARDS 38"""
    got = deadlines.due_at("access", at(received), zone)
    assert got == at(due)
    assert deadlines.last_day(got, zone) == dt.date.fromisoformat(last)


@pytest.mark.parametrize(("received", "zone", "holidays", "last", "due"), CLIENT_CASES)
def test_a_client_removal_is_due_thirty_business_days_later(received, zone, holidays, last, due):
    days = [dt.date.fromisoformat(d) for d in holidays]
    got = deadlines.due_at("client_removal", at(received), zone, days)
    assert got == at(due)
    assert deadlines.last_day(got, zone) == dt.date.fromisoformat(last)


def test_an_extension_runs_to_three_months_from_receipt_in_all():
    """STANDARDS 38: 31 Jan + 3 months ends on 30 April."""
    received = at("2026-01-31T12:00:00+00:00")
    due = deadlines.due_at("erase", received, "UTC")
    extended = deadlines.extended_due_at(
        kind="erase",
        received_at=received,
        due=due,
        already_extended=False,
        reason="many requests this month",
        now=at("2026-02-20T12:00:00+00:00"),
        time_zone="UTC",
    )
    assert extended == at("2026-05-01T00:00:00+00:00")
    assert deadlines.last_day(extended, "UTC") == dt.date(2026, 4, 30)


def _extend(**changes):
    received = at("2026-01-15T10:00:00+00:00")
    args: dict[str, Any] = {
        "kind": "access",
        "received_at": received,
        "due": deadlines.due_at("access", received, "UTC"),
        "already_extended": False,
        "reason": "complex request",
        "now": at("2026-02-01T00:00:00+00:00"),
        "time_zone": "UTC",
    } | changes
    return deadlines.extended_due_at(**args)


def test_an_extension_after_the_first_deadline_is_refused():
    """STANDARDS 38: the last on-time day is 15 Feb; at 16 Feb 00:00 it is too late."""
    assert _extend(now=at("2026-02-15T23:59:59+00:00")) == at("2026-04-16T00:00:00+00:00")
    with pytest.raises(ExtensionRefused, match="deadline has passed"):
        _extend(now=at("2026-02-16T00:00:00+00:00"))


def test_only_one_extension_with_a_reason_and_never_beyond_three_months():
    with pytest.raises(ExtensionRefused, match="already extended"):
        _extend(already_extended=True)
    with pytest.raises(InvalidInput, match="reason"):
        _extend(reason="  ")
    with pytest.raises(InvalidInput, match="months"):
        _extend(months_total=4)
    with pytest.raises(ExtensionRefused, match="client"):
        _extend(kind="client_removal")
    assert _extend(months_total=2) == at("2026-03-16T00:00:00+00:00")


def test_overdue_from_the_deadline_instant_on():
    due = at("2026-02-16T00:00:00+00:00")
    assert not deadlines.is_overdue(due, None, at("2026-02-15T23:59:59+00:00"))
    assert deadlines.is_overdue(due, None, due)
    extended = at("2026-04-16T00:00:00+00:00")
    assert not deadlines.is_overdue(due, extended, at("2026-03-01T00:00:00+00:00"))


def test_naive_times_and_unknown_kinds_are_refused():
    with pytest.raises(InvalidInput):
        deadlines.due_at("access", dt.datetime(2026, 1, 1), "UTC")
    with pytest.raises(InvalidInput):
        deadlines.due_at("gossip", at("2026-01-01T00:00:00+00:00"), "UTC")


@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_a_month_later_is_never_more_than_31_days_nor_fewer_than_28(day):
    later = deadlines.add_months(day, 1)
    assert 28 <= (later - day).days <= 31
    assert later.month == day.month % 12 + 1


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2090, 1, 1),
        timezones=st.just(UTC),
    )
)
def test_thirty_business_days_end_on_a_weekday_six_weeks_on(received):
    due = deadlines.due_at("client_removal", received, "UTC")
    last = deadlines.last_day(due, "UTC")
    assert last.weekday() < 5
    assert (last - received.date()).days in range(40, 45)
