"""Privacy-policy versions: publish with a notice period, the public view (current version,
the prominent notice of a coming one and its diff), notice progress, and proof of notice.

Time is a parameter (``now``) everywhere, so the notice window and the checks are testable.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from markdown_it import MarkdownIt

from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidInput, NotFound, UnknownTopic
from mailer.i18n import LANGUAGES, N_, choose, format_date, translations
from mailer.sending import campaigns

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 200_000
MAX_SUMMARY_CHARS = 2_000
DIFF_CONTEXT_LINES = 2


class NoticeTooShort(Conflict):
    """The effective date is sooner than the tenant's notice period allows."""

    code = "notice_too_short"


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # "add", "del", "same" or "gap" (lines left out between hunks)
    text: str


@dataclass(frozen=True, slots=True)
class PolicyView:
    """What the public page shows at one moment."""

    current: asyncpg.Record | None
    upcoming: asyncpg.Record | None  # published, not yet in effect: the prominent notice
    diff: list[DiffLine]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: asyncpg.Record
    campaigns: list[asyncpg.Record]
    total: int
    sent: int
    pending: int
    not_mailed: int
    rate_per_hour: float | None  # observed sending rate of the notice, None before any send
    finishes_at: dt.datetime | None  # at that rate
    warning: str | None  # set when the notice will not (or did not) finish before effective_at


@cache
def _markdown() -> MarkdownIt:
    # Raw HTML in the policy text is shown as text, never passed through (no script, no
    # iframes); markdown-it also refuses javascript: and data: link targets by default.
    return MarkdownIt("commonmark", {"html": False})


def render_markdown(text: str) -> str:
    """Safe HTML for a policy text."""
    html: str = _markdown().render(text)
    return html


def decode_body(raw: bytes) -> str:
    """The policy file as text; anything but UTF-8 is refused rather than guessed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"The policy file is not UTF-8 (byte {exc.start} cannot be read); save it as UTF-8.",
            field="file",
        ) from None
    return text.removeprefix("\ufeff")


def parse_effective(text: str, time_zone: str) -> dt.datetime:
    """``YYYY-MM-DD`` (the start of that day in the tenant's zone) or an ISO time with offset."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(time_zone))
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a date like 2026-12-31 or a time like 2026-12-31T09:00+01:00.",
            field="effective",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(time_zone))
    return moment


def diff_lines(old: str, new: str) -> list[DiffLine]:
    """A line diff of two policy texts with a little context, for people to read."""
    out: list[DiffLine] = []
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), n=DIFF_CONTEXT_LINES, lineterm=""
    )
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            if out:
                out.append(DiffLine("gap", ""))
            continue
        kind = {"+": "add", "-": "del"}.get(line[:1], "same")
        out.append(DiffLine(kind, line[1:]))
    return out


async def publish(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    body: str,
    summary: str,
    effective_at: dt.datetime,
    now: dt.datetime,
    force_reason: str | None = None,
    published_by: str = "cli",
) -> asyncpg.Record:
    """Record a new version; refuses an effective date in the past, or sooner than the tenant's
    notice period unless ``force_reason`` says why (it is recorded with the version)."""
    body = body.strip("\n")
    summary = summary.strip()
    if not body.strip():
        raise InvalidInput("The policy text is empty.", field="file")
    if len(body) > MAX_BODY_CHARS:
        raise InvalidInput(f"The policy text is over {MAX_BODY_CHARS} characters.", field="file")
    if not summary:
        raise InvalidInput("Say what changes in a --summary.", field="summary")
    if len(summary) > MAX_SUMMARY_CHARS:
        raise InvalidInput(f"The summary is over {MAX_SUMMARY_CHARS} characters.", field="summary")
    if effective_at.tzinfo is None:
        raise InvalidInput("The effective time needs a time zone.", field="effective")
    if effective_at <= now:
        raise InvalidInput("The effective date is in the past.", field="effective")
    notice = dt.timedelta(days=tenant["notice_period_days"])
    reason = (force_reason or "").strip() or None
    if effective_at - now < notice and reason is None:
        earliest = (now + notice).astimezone(ZoneInfo(tenant["time_zone"]))
        raise NoticeTooShort(
            f"The tenant gives {tenant['notice_period_days']} days' notice: the earliest "
            f"effective time is {earliest:%Y-%m-%d %H:%M %Z}. Use --force REASON to publish "
            "with a shorter notice; the reason is recorded.",
            field="effective",
        )
    q = queries().policy
    async with conn.transaction():
        await q.lock_versions(conn, tenant_id=tenant["id"])
        latest = await q.latest_version(conn, tenant_id=tenant["id"])
        if latest is not None and effective_at <= latest["effective_at"]:
            raise Conflict(
                f"Version {latest['version']} takes effect on {latest['effective_at']:%Y-%m-%d}; "
                "a newer version must take effect after it.",
                field="effective",
            )
        row: asyncpg.Record = await q.insert_version(
            conn,
            tenant_id=tenant["id"],
            version=1 if latest is None else latest["version"] + 1,
            body_md=body,
            summary=summary,
            published_at=now,
            effective_at=effective_at,
            force_reason=reason,
            published_by=published_by,
        )
        await q.record_audit(
            conn,
            actor=published_by,
            tenant_id=tenant["id"],
            action="policy.publish",
            target_type="policy_version",
            target_id=row["id"],
            detail={"version": row["version"], "forced": reason is not None},
        )
    log.info(
        "policy published tenant=%s version=%s effective_at=%s forced=%s",
        tenant["id"],
        row["version"],
        effective_at.isoformat(),
        reason is not None,
    )
    return row


async def view(conn: asyncpg.Connection, tenant_id: int, now: dt.datetime) -> PolicyView:
    """The current version at ``now`` and, while a newer one is published but not yet in
    effect, that one with the diff against the current text."""
    q = queries().policy
    current = await q.in_effect(conn, tenant_id=tenant_id, now=now)
    upcoming = await q.upcoming(conn, tenant_id=tenant_id, now=now)
    diff: list[DiffLine] = []
    if upcoming is not None:
        diff = diff_lines(current["body_md"] if current else "", upcoming["body_md"])
    return PolicyView(current, upcoming, diff)


async def versions(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().policy.list_versions(conn, tenant_id=tenant_id))


async def status(conn: asyncpg.Connection, tenant_id: int, now: dt.datetime) -> list[VersionStatus]:
    """Each version with its notice campaigns' progress and whether they finish in time."""
    q = queries().policy
    out = []
    for version in await versions(conn, tenant_id):
        campaigns = await rows(
            q.notice_progress(conn, tenant_id=tenant_id, policy_version_id=version["id"])
        )
        totals = {k: sum(c[k] for c in campaigns) for k in ("total", "sent", "pending")}
        not_mailed = sum(c["not_mailed"] for c in campaigns)
        rate, finishes_at = _estimate(campaigns, totals["sent"], totals["pending"], now)
        out.append(
            VersionStatus(
                version=version,
                campaigns=campaigns,
                total=totals["total"],
                sent=totals["sent"],
                pending=totals["pending"],
                not_mailed=not_mailed,
                rate_per_hour=rate,
                finishes_at=finishes_at,
                warning=_warning(version, campaigns, totals["pending"], finishes_at, now),
            )
        )
    return out


def _estimate(
    campaigns: list[asyncpg.Record], sent: int, pending: int, now: dt.datetime
) -> tuple[float | None, dt.datetime | None]:
    if pending == 0:
        return None, now if campaigns else None
    firsts = [c["first_sent_at"] for c in campaigns if c["first_sent_at"] is not None]
    if not firsts or sent == 0:
        return None, None
    elapsed = max((now - min(firsts)).total_seconds(), 1.0)
    rate = sent / elapsed * 3600
    return rate, now + dt.timedelta(hours=pending / rate)


def _warning(
    version: asyncpg.Record,
    campaigns: list[asyncpg.Record],
    pending: int,
    finishes_at: dt.datetime | None,
    now: dt.datetime,
) -> str | None:
    effective_at: dt.datetime = version["effective_at"]
    if effective_at <= now:
        return f"{pending} notice(s) still unsent after the effective date" if pending else None
    if not campaigns:
        return "no notice campaign"
    idle = [c for c in campaigns if c["status"] in ("draft", "paused", "cancelled")]
    if idle and not any(c["status"] in ("sending", "scheduled", "done") for c in campaigns):
        return (
            f"the notice has not started sending (campaign {idle[0]['id']} is {idle[0]['status']})"
        )
    if pending and finishes_at is None:
        return "the notice has not started sending"
    if finishes_at is not None and finishes_at > effective_at:
        return (
            f"at the current rate the notice finishes {finishes_at:%Y-%m-%d %H:%M %Z}, "
            "after the effective date"
        )
    return None


async def proof_of_notice(
    conn: asyncpg.Connection, tenant_id: int, version: int
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """The version and, per person, whether they were mailed the notice and when, or are
    covered by the site notice."""
    row = await get_version(conn, tenant_id, version)
    people = await rows(
        queries().policy.proof_of_notice(conn, tenant_id=tenant_id, policy_version_id=row["id"])
    )
    return row, people


async def get_version(conn: asyncpg.Connection, tenant_id: int, version: int) -> asyncpg.Record:
    row = await queries().policy.get_version(conn, tenant_id=tenant_id, version=version)
    if row is None:
        raise NotFound(f"No policy version {version}.", field="version")
    return row


PROOF_COLUMNS = ("subscriber_id", "email", "notified_by", "sent_at", "delivery_state")


def proof_rows(people: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Proof-of-notice rows as CSV-ready dicts."""
    return [
        {
            "subscriber_id": p["subscriber_id"],
            "email": p["email"] or "(erased)",
            "notified_by": p["notified_by"],
            "sent_at": p["sent_at"].isoformat() if p["sent_at"] else "",
            "delivery_state": p["state"] or "",
        }
        for p in people
    ]


# --- the notice campaign -----------------------------------------------------------------------

# Below transactional mail (100: a person is waiting) and above every marketing campaign (0):
# the notice must be out before the effective date.
NOTICE_PRIORITY = 50
NOTICE_TEMPLATE = "policy_notice"
NOTICE_SUBJECT = N_("Changes to our privacy policy from %(day)s")


async def notice_topic(
    conn: asyncpg.Connection, tenant_id: int, slug: str | None = None
) -> asyncpg.Record:
    """The tenant's notice topic: the one named, or the only one there is."""
    topics = await rows(queries().policy.notice_topics(conn, tenant_id=tenant_id))
    if slug is not None:
        for topic in topics:
            if topic["slug"] == slug:
                return topic
        raise UnknownTopic(f"No notice topic {slug!r} in this tenant.", field="topic")
    if not topics:
        raise Conflict(
            "The tenant has no notice topic (optout topic create SLUG --kind notice).",
            field="topic",
        )
    if len(topics) > 1:
        names = ", ".join(t["slug"] for t in topics)
        raise InvalidInput(f"Several notice topics ({names}): choose one with --topic.")
    return topics[0]


async def first_notice_topic(conn: asyncpg.Connection, tenant_id: int) -> asyncpg.Record | None:
    """The notice topic a version published without choosing one is announced on (the
    oldest), or None: then the public page's notice alone covers everyone."""
    topics = await rows(queries().policy.notice_topics(conn, tenant_id=tenant_id))
    return topics[0] if topics else None


async def create_notice_campaign(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    version: asyncpg.Record,
    topic: asyncpg.Record,
    policy_url: str,
    by: str = "cli",
) -> asyncpg.Record:
    """A draft notice campaign of ``version`` on the notice topic (mailer.campaigns does the
    rest: start enqueues the audience, the worker sends in priority order)."""
    zone = ZoneInfo(tenant["time_zone"])
    changes = [line.strip("-* ").strip() for line in version["summary"].splitlines()]
    # Optout's own subject, in every shipped language (compose picks the reader's); the body
    # formats the day itself, per language, in the tenant's zone.
    subjects = {
        language: translations(language).gettext(NOTICE_SUBJECT)
        % {"day": format_date(version["effective_at"], language, zone)}
        for language in LANGUAGES
    }
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant["id"],
        topic_slug=topic["slug"],
        name=f"Privacy policy version {version['version']}",
        template=NOTICE_TEMPLATE,
        subject=subjects[choose(tenant["default_language"])],
        content={
            "effective_at": version["effective_at"].isoformat(),
            "time_zone": tenant["time_zone"],
            "subjects": subjects,
            "changes": [c for c in changes if c],
            "policy_url": policy_url,
        },
        priority=NOTICE_PRIORITY,
        created_by=by,
    )
    linked: asyncpg.Record = await queries().policy.link_campaign(
        conn, tenant_id=tenant["id"], id=campaign["id"], policy_version_id=version["id"]
    )
    return linked


# --- the workspace's view of a notice ----------------------------------------------------------

MAX_HEADLINE_CHARS = 200
MAX_CHANGES = 50


def earliest_effective(tenant: asyncpg.Record, now: dt.datetime) -> dt.datetime:
    """The soonest effective time the tenant's notice period allows without a recorded reason."""
    return now + dt.timedelta(days=tenant["notice_period_days"])


@dataclass(frozen=True, slots=True)
class NoticeProgress:
    """A version's notice as compliance follows it: every notice campaign's deliveries summed."""

    status: VersionStatus
    total: int
    delivered: int
    bounced: int
    not_sent: int  # failed, suppressed or cancelled: these people rely on the site notice
    pending: int
    time_left: dt.timedelta

    @property
    def percent_delivered(self) -> int:
        return round(100 * self.delivered / self.total) if self.total else 0


async def notice_progress(
    conn: asyncpg.Connection, tenant_id: int, version: int, now: dt.datetime
) -> NoticeProgress:
    """Delivered, bounced and not yet sent against the time left before the effective date,
    with the warning ``status`` gives when the notice will not finish in time."""
    row = await get_version(conn, tenant_id, version)
    found = next(s for s in await status(conn, tenant_id, now) if s.version["id"] == row["id"])
    figures = [await campaigns.stats(conn, tenant_id, c["id"]) for c in found.campaigns]
    return NoticeProgress(
        status=found,
        total=sum(f.total for f in figures),
        delivered=sum(f.sent for f in figures),
        bounced=sum(f.bounced for f in figures),
        not_sent=sum(f.failed + f.suppressed + f.cancelled for f in figures),
        pending=sum(f.remaining for f in figures),
        time_left=max(row["effective_at"] - now, dt.timedelta(0)),
    )


def notice_changes(text: str) -> list[str]:
    """The notice's list of changes, one a line (list markers dropped, blank lines skipped)."""
    changes = [line.strip().lstrip("-*").strip() for line in text.splitlines()]
    return [c for c in changes if c]


async def update_notice(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    campaign: asyncpg.Record,
    subject: str,
    headline: str,
    changes: list[str],
) -> asyncpg.Record:
    """Rewrite a notice campaign that has not started: its subject, headline and list of
    changes. The effective date and the policy link stay the version's own, and the notice
    template still refuses marketing content (compose checks it before any send)."""
    if campaign["policy_version_id"] is None:
        raise InvalidInput("This campaign is not a policy notice.", field="campaign")
    if not changes:
        raise InvalidInput("List at least one change, one a line.", field="changes")
    if len(changes) > MAX_CHANGES or any(len(c) > MAX_SUMMARY_CHARS for c in changes):
        raise InvalidInput(
            f"At most {MAX_CHANGES} changes of {MAX_SUMMARY_CHARS} characters each.",
            field="changes",
        )
    headline = headline.strip()
    if len(headline) > MAX_HEADLINE_CHARS or any(ord(c) < 32 for c in headline):
        raise InvalidInput(
            f"The headline is one line of at most {MAX_HEADLINE_CHARS} characters.",
            field="headline",
        )
    topic = await queries().tenants.get_topic(conn, tenant_id=tenant_id, id=campaign["topic_id"])
    content = {
        k: v for k, v in dict(campaign["content"] or {}).items() if k not in ("headline", "changes")
    }
    content["changes"] = changes
    if headline:
        content["headline"] = headline
    return await campaigns.update_draft(
        conn,
        tenant_id=tenant_id,
        campaign_id=campaign["id"],
        topic_slug=topic["slug"],
        name=campaign["name"],
        subject=subject,
        content=content,
        layout_id=campaign["layout_id"],
    )
