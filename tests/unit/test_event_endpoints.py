"""What staff see of an endpoint (issue 22): never a secret, and `failing` once every attempt
for a day has failed."""

from __future__ import annotations

import datetime as dt

from mailer import event_endpoints

NOW = dt.datetime(2031, 1, 2, 12, tzinfo=dt.UTC)


def row(failing_since):
    return {
        "id": 1,
        "url": "https://crm.example.com/in",
        "event_types": [],
        "include_address": False,
        "active": True,
        "failing_since": failing_since,
        "old_secret_until": None,
        "created_at": NOW,
        "timeout_seconds": None,
        "concurrency": None,
        "secret_sealed": b"sealed",
    }


def test_failing_after_a_day_of_failures_only():
    assert not event_endpoints.view(row(None), NOW)["failing"]
    assert not event_endpoints.view(row(NOW - dt.timedelta(hours=23)), NOW)["failing"]
    assert event_endpoints.view(row(NOW - dt.timedelta(hours=25)), NOW)["failing"]


def test_the_view_never_carries_a_secret():
    assert "secret_sealed" not in event_endpoints.view(row(None), NOW)
