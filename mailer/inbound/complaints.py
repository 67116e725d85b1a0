"""Complaints (ARF reports, relay webhooks): suppress the person from all of the tenant's mail,
count the complaint toward its campaign, and alert or pause when the campaign's complaint
rate passes the thresholds (STANDARDS 28: below 0.1%, never 0.3%).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from mailer import events
from mailer.consent import writer as consent
from mailer.consent.writer import Evidence
from mailer.db import queries
from mailer.errors import Conflict
from mailer.inbound.matching import Match, delivery_address_key
from mailer.inbound_settings import InboundSettings
from mailer.sending import campaign_status

__all__ = ["RateCheck", "apply_complaint", "check_campaign_rate", "thresholds_for"]

log = logging.getLogger(__name__)

# Feedback types that are not complaints (RFC 6430 not-spam; a report that a mail was fine).
NOT_COMPLAINTS = frozenset({"not-spam"})
ALERT_ACTION = "complaint_rate_alert"
PAUSE_ACTION = "complaint_rate_pause"


@dataclass(frozen=True, slots=True)
class Thresholds:
    alert_rate: float
    pause_rate: float
    min_deliveries: int


@dataclass(frozen=True, slots=True)
class RateCheck:
    """A campaign's complaint rate after a complaint, and what was done about it."""

    campaign_id: int
    delivered: int
    complained: int
    bounced: int
    rate: float
    action: str  # none | below_minimum | alert | pause (alert and pause also when repeated)
    paused: bool  # this check paused the campaign


def thresholds_for(settings: InboundSettings, tenant_limits: Any) -> Thresholds:
    """The configured thresholds; a tenant's ``limits`` may override each one."""
    limits = tenant_limits if isinstance(tenant_limits, dict) else {}

    def pick(name: str, default: float) -> float:
        value = limits.get(name)
        return float(value) if isinstance(value, int | float) and value >= 0 else default

    return Thresholds(
        alert_rate=pick("complaint_alert_rate", settings.complaint_alert_rate),
        pause_rate=pick("complaint_pause_rate", settings.complaint_pause_rate),
        min_deliveries=int(pick("complaint_min_deliveries", settings.complaint_min_deliveries)),
    )


async def apply_complaint(
    conn: asyncpg.Connection,
    *,
    hash_key: bytes,
    settings: InboundSettings,
    match: Match,
    feedback_type: str | None,
    evidence_message_id: str | None,
    channel: str,
    event_id: int,
    auth: dict[str, Any] | None = None,
    counts: bool = True,
) -> tuple[str, dict[str, Any]]:
    """Apply one complaint inside the caller's transaction; returns (outcome, details).

    Outcome ``complaint`` is what counts toward the campaign's rate; inbound event
    ``event_id`` is marked so before the rate is computed. With ``counts`` False (a report
    not signed by a configured feedback loop) the person is still suppressed, but the
    outcome is ``complaint_not_counted`` and the rate is left alone.
    """
    if (feedback_type or "").lower() in NOT_COMPLAINTS:
        return "not_spam", {}
    address_key = await _address_key(conn, hash_key, match)
    if address_key is None:
        return "unmatched", {"reason": "no address known for the complained-about message"}
    added = await consent.suppress(
        conn,
        tenant_id=match.tenant_id,
        address_key=address_key,
        scope="all",
        reason="complaint",
        source="complaint",
        subscriber_id=match.subscriber_id,
        evidence=Evidence(
            message_id=evidence_message_id,
            detail={
                "channel": channel,
                "feedback_type": feedback_type,
                "matched_by": match.via,
                **({"auth": auth} if auth is not None else {}),
            },
        ),
        campaign_id=match.campaign_id,
    )
    if match.subscriber_id is not None:
        await events.emit(
            conn,
            tenant_id=match.tenant_id,
            type="subscriber.complained",
            subscriber_id=match.subscriber_id,
            campaign_id=match.campaign_id,
            data={"feedback_type": (feedback_type or "abuse").lower()[:40], "channel": channel},
        )
    details: dict[str, Any] = {"suppressed": added}
    if not counts:
        return "complaint_not_counted", details
    await queries().inbound.mark_complaint(
        conn,
        id=event_id,
        tenant_id=match.tenant_id,
        delivery_id=match.delivery_id,
        subscriber_id=match.subscriber_id,
    )
    if match.campaign_id is not None:
        check = await check_campaign_rate(
            conn, settings=settings, tenant_id=match.tenant_id, campaign_id=match.campaign_id
        )
        details["campaign_rate"] = asdict(check)
    return "complaint", details


async def check_campaign_rate(
    conn: asyncpg.Connection, *, settings: InboundSettings, tenant_id: int, campaign_id: int
) -> RateCheck:
    """Alert above the alert rate, pause above the pause rate; neither before the minimum."""
    q = queries().inbound
    campaign = await q.get_campaign(conn, tenant_id=tenant_id, id=campaign_id)
    counts = await q.campaign_feedback_counts(conn, campaign_id=campaign_id)
    delivered, complained = int(counts["delivered"]), int(counts["complained"])
    rate = complained / delivered if delivered else 0.0
    limits = thresholds_for(settings, campaign["limits"] if campaign is not None else None)

    def result(action: str, paused: bool = False) -> RateCheck:
        return RateCheck(
            campaign_id, delivered, complained, int(counts["bounced"]), rate, action, paused
        )

    if campaign is None or delivered < limits.min_deliveries:
        return result("below_minimum" if campaign is not None else "none")
    detail = {
        "delivered": delivered,
        "complained": complained,
        "rate": rate,
        "alert_rate": limits.alert_rate,
        "pause_rate": limits.pause_rate,
    }
    if rate > limits.pause_rate:
        reason = (
            f"complaint rate {rate:.2%} ({complained} of {delivered}) is above "
            f"{limits.pause_rate:.2%}"
        )
        paused = await _pause(conn, tenant_id, campaign_id, reason)
        if paused:
            await q.record_alert(
                conn, tenant_id=tenant_id, campaign_id=campaign_id, action=PAUSE_ACTION,
                detail=detail,
            )  # fmt: skip
            log.warning(
                "complaint rate pause campaign=%s tenant=%s rate=%.5f complained=%d delivered=%d",
                campaign_id, tenant_id, rate, complained, delivered,
            )  # fmt: skip
        await _alert_once(conn, tenant_id, campaign_id, detail)
        return result("pause", paused)
    if rate > limits.alert_rate:
        await _alert_once(conn, tenant_id, campaign_id, detail)
        return result("alert")
    return result("none")


async def _pause(conn: asyncpg.Connection, tenant_id: int, campaign_id: int, reason: str) -> bool:
    """Pause through the campaign status change (campaign_status); False if it is not sending."""
    try:
        await campaign_status.pause(conn, tenant_id, campaign_id, reason)
    except Conflict:
        return False
    return True


async def _alert_once(
    conn: asyncpg.Connection, tenant_id: int, campaign_id: int, detail: dict[str, Any]
) -> None:
    q = queries().inbound
    if await q.alert_recorded(
        conn, tenant_id=tenant_id, campaign_id=campaign_id, action=ALERT_ACTION
    ):
        return
    await q.record_alert(
        conn, tenant_id=tenant_id, campaign_id=campaign_id, action=ALERT_ACTION, detail=detail
    )
    log.warning(
        "complaint rate alert campaign=%s tenant=%s rate=%.5f complained=%d delivered=%d",
        campaign_id, tenant_id, detail["rate"], detail["complained"], detail["delivered"],
    )  # fmt: skip


async def _address_key(conn: asyncpg.Connection, hash_key: bytes, match: Match) -> bytes | None:
    if match.delivery is not None:
        key = delivery_address_key(hash_key, match.delivery)
        if key is not None:
            return key
    if match.subscriber_id is None:
        return None
    subscriber = await queries().consent.get_subscriber(
        conn, tenant_id=match.tenant_id, id=match.subscriber_id
    )
    if subscriber is None or subscriber["email_key"] is None:
        return None
    return bytes(subscriber["email_key"])
