"""The single bounce policy: every bounce signal (SMTP reply, DSN, webhook) is recorded and
judged here, so an address is suppressed by the same rules whichever way its failure arrived.

Defaults (RFC 3463, RFC 3464 appendix C, STANDARDS 48): 5.1.1 (no such user) and 5.1.10
(null MX) suppress with scope ``all`` at once; other permanent failures after 2 within 7 days;
5.7.x (policy, reputation, authentication) is reported to the operator and never suppresses,
since it says something about the sender, not the address; delays never count. A final
failure with a temporary cause (the MTA gave up on a 4.x.x) is a soft bounce: it weighs
``soft_weight`` of a hard one, so three soft bounces close together (or a hard and a soft one)
suppress, two soft ones do not.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

import asyncpg

from mailer import events
from mailer.consent import writer as consent
from mailer.db import queries, rows
from mailer.errors import InvalidInput

log = logging.getLogger(__name__)

Source = Literal["smtp", "dsn", "webhook"]
Action = Literal["suppress", "alert", "record"]


@dataclass(frozen=True, slots=True)
class BouncePolicy:
    """The thresholds; the defaults are the documented policy.

    A permanent failure weighs 1 when it happens and decays linearly to ``floor_weight`` at
    the edge of ``window``; outside the window it weighs nothing. The address is suppressed
    once the weights reach ``suppress_score``. With the defaults (0.5 and 1.5) that is exactly
    "a second permanent failure within 7 days of an earlier one".
    """

    immediate: frozenset[str] = frozenset({"5.1.1", "5.1.10"})
    window: dt.timedelta = dt.timedelta(days=7)
    floor_weight: float = 0.5
    suppress_score: float = 1.5
    alert_prefixes: tuple[str, ...] = ("5.7.",)
    # Above 0.5 so three recent soft bounces pass 1.5 despite the decay; 2 x 0.6 stays below.
    soft_weight: float = 0.6
    # A 5.1.1 read from a notice's words (not given by the server) suppresses only once this
    # many permanent failures of the address fall within the window
    # (OPTOUT_BOUNCE_DERIVED_5_1_1_AFTER).
    derived_unknown_after: int = 2

    def weight(self, age: dt.timedelta) -> float:
        if age < dt.timedelta(0):
            age = dt.timedelta(0)
        if age > self.window:
            return 0.0
        return 1.0 - (1.0 - self.floor_weight) * (age / self.window)


DEFAULT_POLICY = BouncePolicy()


@dataclass(frozen=True, slots=True)
class BounceDecision:
    """What the policy did with one bounce signal."""

    action: Action  # suppress: the address is now suppressed; alert: tell the operator
    reason: str
    score: float = 0.0
    suppressed: bool = False  # a new suppression was written (False if one existed already)
    event_id: int = 0


async def record_bounce(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    address_key: bytes,
    delivery_id: int | None,
    status: str | None,
    permanent: bool,
    source: Source,
    subscriber_id: int | None,
    now: dt.datetime | None = None,
    policy: BouncePolicy = DEFAULT_POLICY,
    final: bool | None = None,
    derived: bool = False,
) -> BounceDecision:
    """Record one bounce signal in bounce_events and apply the policy, in one transaction.

    ``status`` is the RFC 3463 enhanced status ("5.1.1"), or None when the signal had none.
    ``final`` (default: ``permanent``) says no later delivery will happen; final and not
    permanent is a soft bounce. ``derived``: the status was read from words, not given, so
    an immediate status waits for ``policy.derived_unknown_after`` failures. Suppression goes
    through mailer.consent.suppress (the only writer of consent state).
    """
    final = permanent if final is None else final or permanent
    if source not in ("smtp", "dsn", "webhook"):
        raise InvalidInput(f"unknown bounce source {source!r}", field="source")
    if status is not None and status[:1] not in "245":
        raise InvalidInput(f"not an enhanced status code: {status!r}", field="status")
    at = now or dt.datetime.now(dt.UTC)
    q = queries().bounces
    async with conn.transaction():
        event_id: int = await q.insert_bounce_event(
            conn,
            tenant_id=tenant_id,
            address_key=address_key,
            delivery_id=delivery_id,
            status=status,
            permanent=permanent,
            final=final,
            source=source,
            occurred_at=at,
        )
        if subscriber_id is not None:
            await events.emit(
                conn,
                tenant_id=tenant_id,
                type="subscriber.bounced",
                subscriber_id=subscriber_id,
                data={
                    "class": "hard" if permanent else ("soft" if final else "transient"),
                    "status": status,
                    "channel": source,
                },
            )
        if not final:
            return BounceDecision("record", "transient failure", event_id=event_id)
        if permanent and status is not None and status.startswith(policy.alert_prefixes):
            log.warning(
                "bounce_policy_alert tenant=%s delivery=%s status=%s source=%s",
                tenant_id,
                delivery_id,
                status,
                source,
            )
            return BounceDecision(
                "alert", f"{status}: policy or reputation block", event_id=event_id
            )
        if permanent and status in policy.immediate and not derived:
            reason = f"{status}: the address does not exist"
            score = policy.suppress_score
        elif permanent and status in policy.immediate:
            recent = await rows(
                q.recent_permanent_bounces(
                    conn, tenant_id=tenant_id, address_key=address_key, since=at - policy.window
                )
            )
            permanent_count = sum(1 for r in recent if r["permanent"])
            if permanent_count < policy.derived_unknown_after:
                return BounceDecision(
                    "record",
                    f"{status} derived from the notice's words: {permanent_count} of "
                    f"{policy.derived_unknown_after} failures",
                    event_id=event_id,
                )
            score = policy.suppress_score
            reason = f"{status} (derived) {permanent_count} times within {policy.window.days} days"
        else:
            recent = await rows(
                q.recent_permanent_bounces(
                    conn,
                    tenant_id=tenant_id,
                    address_key=address_key,
                    since=at - policy.window,
                )
            )
            score = sum(
                policy.weight(at - r["occurred_at"])
                * (1.0 if r["permanent"] else policy.soft_weight)
                for r in recent
            )
            kind = "permanent" if permanent else "soft"
            if score < policy.suppress_score:
                return BounceDecision(
                    "record", f"{kind} failure below the threshold", score, event_id=event_id
                )
            reason = f"{len(recent)} final failures within {policy.window.days} days"
        added = await consent.suppress(
            conn,
            tenant_id=tenant_id,
            address_key=address_key,
            scope="all",
            reason="hard_bounce",
            source="bounce",
            subscriber_id=subscriber_id,
        )
        log.info(
            "bounce_suppressed tenant=%s delivery=%s status=%s source=%s new=%s",
            tenant_id,
            delivery_id,
            status,
            source,
            added,
        )
        return BounceDecision("suppress", reason, score, suppressed=added, event_id=event_id)
