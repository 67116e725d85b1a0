"""One consent-ledger row as plain data: the same shape for the API and `optout consent
history`, so what a person is shown and what staff see cannot drift apart."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import asyncpg


def _as_is(moment: dt.datetime) -> Any:
    return moment


def event_view(e: asyncpg.Record, *, time: Callable[[dt.datetime], Any] = _as_is) -> dict[str, Any]:
    """A row of the ``api.consent_history`` query; ``time`` presents ``occurred_at``."""
    return {
        "id": e["id"],
        "occurred_at": time(e["occurred_at"]),
        "action": e["action"],
        "effect": e["effect"],
        "source": e["source"],
        # Who on the staff made a staff or API change (None: the person, or the system).
        "actor": e["actor"],
        "topic": e["topic"],
        "lawful_basis": e["lawful_basis"],
        "campaign_id": e["campaign_id"],
        "policy_version": e["policy_version"],
        "evidence": None if e["evidence_id"] is None else _evidence(e),
    }


def _evidence(e: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": e["evidence_id"],
        "erased": e["evidence_erased_at"] is not None,
        "ip": str(e["ip"]) if e["ip"] is not None else None,
        "user_agent": e["user_agent"],
        "form_text": e["form_text"],
        "message_id": e["message_id"],
        "detail": e["detail"],
    }
