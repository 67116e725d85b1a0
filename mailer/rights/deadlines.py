"""Due dates of data requests, computed in the tenant's time zone (pure: no clock, no database).

A person's own request (access, rectification, erasure) is due one calendar month after
receipt (GDPR Art. 12(3)), extendable once to three months in all; a client's removal request
is due 30 business days after receipt, weekends and the tenant's holidays skipped.

Counting follows the EU rules on periods (Regulation 1182/71, Art. 3): the day of receipt is
not counted, and a period ends with the last hour of its last day. A period of months ends on
the same date of the later month, or on that month's last day when the date does not exist
there (received 31 January: due 28 or 29 February). So every ``due_at`` here is the instant the
request becomes overdue: local midnight at the start of the day after the last day.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from mailer.errors import Conflict, InvalidInput

PERSON_KINDS = frozenset({"access", "rectify", "erase", "partner_withdrawal"})
CLIENT_KINDS = frozenset({"client_removal"})
PERSON_MONTHS = 1
MAX_PERSON_MONTHS = 3  # Art. 12(3): "extended by two further months"
CLIENT_BUSINESS_DAYS = 30  # the policy's promise to client organisations
SATURDAY = 5


class ExtensionRefused(Conflict):
    """This request cannot be extended."""

    code = "extension_refused"


def _zone(time_zone: str | ZoneInfo) -> ZoneInfo:
    return time_zone if isinstance(time_zone, ZoneInfo) else ZoneInfo(time_zone)


def _aware(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise InvalidInput("A time without a time zone is ambiguous.", field="received_at")
    return moment


def add_months(day: dt.date, months: int) -> dt.date:
    """The same date ``months`` later, or the last day of that month when it has no such date."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_day(day: dt.date, time_zone: str | ZoneInfo) -> dt.datetime:
    """The instant ``day`` ends in the zone: the next local midnight, in UTC."""
    zone = _zone(time_zone)
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return midnight.astimezone(dt.UTC)


def last_day(due_at: dt.datetime, time_zone: str | ZoneInfo) -> dt.date:
    """The last day on which the request is still on time, as people read a due date."""
    local = _aware(due_at).astimezone(_zone(time_zone))
    return (local - dt.timedelta(microseconds=1)).date()


def local_date(moment: dt.datetime, time_zone: str | ZoneInfo) -> dt.date:
    return _aware(moment).astimezone(_zone(time_zone)).date()


def months_deadline(
    received_at: dt.datetime, time_zone: str | ZoneInfo, months: int = PERSON_MONTHS
) -> dt.datetime:
    """Due ``months`` calendar months after receipt, at the end of that day, local time."""
    received = local_date(received_at, time_zone)
    return end_of_day(add_months(received, months), time_zone)


def business_days_deadline(
    received_at: dt.datetime,
    time_zone: str | ZoneInfo,
    holidays: Iterable[dt.date] = (),
    days: int = CLIENT_BUSINESS_DAYS,
) -> dt.datetime:
    """Due at the end of the ``days``-th business day after the day of receipt."""
    skipped = frozenset(holidays)
    day = local_date(received_at, time_zone)
    counted = 0
    # At most days + weekends + holidays iterations: bounded by the calendar itself.
    while counted < days:
        day += dt.timedelta(days=1)
        if day.weekday() < SATURDAY and day not in skipped:
            counted += 1
    return end_of_day(day, time_zone)


def due_at(
    kind: str,
    received_at: dt.datetime,
    time_zone: str | ZoneInfo,
    holidays: Iterable[dt.date] = (),
) -> dt.datetime:
    """The first deadline of a request of ``kind`` received at ``received_at``."""
    if kind in CLIENT_KINDS:
        return business_days_deadline(received_at, time_zone, holidays)
    if kind in PERSON_KINDS:
        return months_deadline(received_at, time_zone)
    raise InvalidInput(f"Unknown request kind {kind!r}.", field="kind")


def extended_due_at(
    *,
    kind: str,
    received_at: dt.datetime,
    due: dt.datetime,
    already_extended: bool,
    reason: str,
    now: dt.datetime,
    time_zone: str | ZoneInfo,
    months_total: int = MAX_PERSON_MONTHS,
) -> dt.datetime:
    """The new deadline of one extension, or ExtensionRefused / InvalidInput saying why not.

    Art. 12(3): only a person's request, only once, decided and recorded (with its reason)
    before the first deadline, and never beyond three months from receipt in all.
    """
    if kind not in PERSON_KINDS:
        raise ExtensionRefused("A client's removal request cannot be extended.", field="kind")
    if already_extended:
        raise ExtensionRefused("This request was already extended once.")
    if not reason.strip():
        raise InvalidInput("An extension needs a reason.", field="reason")
    if _aware(now) >= due:
        raise ExtensionRefused(
            "The first deadline has passed: an extension must be decided before it."
        )
    if not PERSON_MONTHS < months_total <= MAX_PERSON_MONTHS:
        raise InvalidInput(
            f"An extension runs to 2 or {MAX_PERSON_MONTHS} months from receipt in all.",
            field="months",
        )
    return months_deadline(received_at, time_zone, months_total)


def is_overdue(due: dt.datetime, extended: dt.datetime | None, now: dt.datetime) -> bool:
    return _aware(now) >= (extended or due)
