"""The progress line `optout campaign send` and `status --follow` show."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailer.cli.campaigns import progress_line
from mailer.sending.campaigns import Stats

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def stats(**changes) -> Stats:
    values: dict[str, Any] = {
        "status": "sending",
        "total": 1000,
        "queued": 700,
        "sending": 50,
        "sent": 240,
        "deferred": 0,
        "failed": 6,
        "bounced": 4,
        "suppressed": 0,
        "cancelled": 0,
        "complained": 0,
        "unsubscribed": {},
        "first_sent_at": T0,
        "last_sent_at": T0 + dt.timedelta(seconds=24),
        "pause_reason": None,
    }
    return Stats(**(values | changes))


def test_a_terminal_gets_a_bar_with_sent_failed_rate_and_eta():
    line = progress_line(stats(), width=10)
    assert line.startswith("[##........]  25.0% sent 240 failed 10")
    assert "rate 10.0/s" in line and "ETA 0:01:15" in line and "[sending]" in line


def test_a_pipe_gets_plain_text():
    line = progress_line(stats(status="done", queued=0, sending=0, sent=990), bar=False)
    assert line.startswith("100.0% sent 990 failed 10") and "#" not in line
    assert "ETA -" in line
