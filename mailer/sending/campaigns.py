"""Campaigns: create, validate, schedule, start (enqueue), pause, resume, cancel, statistics.

A campaign refuses to start, with one clear message and nothing queued, when anything that
would make its mail wrong is known in advance: a template error, a missing postal address, a
bad subject, an unknown topic, an empty audience, an unusable DKIM key (STANDARDS 20, 22).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer import outbox, tenants
from mailer.config import Settings
from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidInput, OptoutError
from mailer.sending import body, compose, tenant_templates
from mailer.sending.campaign_status import UnknownCampaign as UnknownCampaign
from mailer.sending.campaign_status import cancel as cancel
from mailer.sending.campaign_status import pause as pause
from mailer.sending.campaign_status import resume as resume
from mailer.sending.dkim import DkimSigner
from mailer.tenants import get_topic

log = logging.getLogger(__name__)

# The built-in template whose body a tenant's own layout can wrap (the workspace editor's).
LAID_OUT = "campaign"
ANALYZE_AFTER = 1_000  # enqueued rows after which the deliveries statistics are refreshed
STATUSES = ("draft", "scheduled", "sending", "paused", "done", "cancelled")
MAX_NAME = 200
EMPTY_AUDIENCE = (
    "nobody would receive this campaign: the topic has no confirmed, unsuppressed subscribers"
)


class CampaignRefused(InvalidInput):
    """The campaign cannot start."""

    code = "campaign_refused"


@dataclass(frozen=True, slots=True)
class Stats:
    """A campaign's progress and results."""

    status: str
    total: int
    queued: int
    sending: int
    sent: int
    deferred: int
    failed: int
    bounced: int
    suppressed: int
    cancelled: int
    complained: int
    unsubscribed: dict[str, int]  # by channel (consent_events.source)
    first_sent_at: dt.datetime | None
    last_sent_at: dt.datetime | None
    pause_reason: str | None

    @property
    def remaining(self) -> int:
        return self.queued + self.sending + self.deferred

    @property
    def rate(self) -> float:
        """Messages a second so far, over the span of the sends."""
        if not self.first_sent_at or not self.last_sent_at or self.sent < 2:
            return 0.0
        span = (self.last_sent_at - self.first_sent_at).total_seconds()
        return self.sent / span if span > 0 else 0.0


def sender_for(
    tenant: asyncpg.Record | dict[str, Any],
    topic: asyncpg.Record | dict[str, Any],
    campaign_id: int,
) -> compose.Sender:
    """The tenant-side values of a campaign's messages (From, List-Id, Feedback-ID)."""
    domain = tenant["sender_domain"]
    return compose.Sender(
        from_name=tenant["sender_name"],
        from_address=tenant["sender_address"],
        domain=domain,
        postal_address=tenant["postal_address"] or "",
        list_id=f"{topic['name']} <{topic['slug']}.{tenant['slug']}.{domain}>",
        feedback_id=f"{campaign_id}:{tenant['id']}:{topic['id']}:optout",
        contact_web=tenant["contact_web"] or "",
        contact_email=tenant["contact_email"] or "",
        contact_phone=tenant["contact_phone"] or "",
    )


def signer_for(tenant: asyncpg.Record | dict[str, Any], settings: Settings) -> DkimSigner | None:
    """The tenant's DKIM signer; None only when unsigned local development is allowed."""
    selector, path = tenant["dkim_selector"], tenant["dkim_key_path"]
    if selector and path:
        # The Ed25519 signature (RFC 8463) is added next to the RSA one, never instead of it:
        # receivers that do not know ed25519-sha256 ignore it and check the RSA signature.
        return DkimSigner.from_files(
            tenant["sender_domain"],
            selector,
            path,
            ed25519_key_path=tenant["dkim_ed25519_key_path"],
            ed25519_selector=tenant["dkim_ed25519_selector"],
        )
    if settings.mailer.allow_unsigned:
        return None
    raise CampaignRefused(
        f"tenant {tenant['slug']!r} has no DKIM key: DKIM signing is required; set it with "
        "`optout tenant update SLUG --dkim-selector S --dkim-key-path KEY.pem` "
        "(or OPTOUT_ALLOW_UNSIGNED=1 for local development only)",
        field="dkim_key_path",
    )


async def create(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    topic_slug: str,
    name: str,
    template: str,
    subject: str,
    content: dict[str, Any],
    priority: int = 0,
    created_by: str = "cli",
) -> asyncpg.Record:
    """A new draft; the template and subject are checked now, everything else at start."""
    topic = await get_topic(conn, tenant_id, topic_slug)
    tenant = await queries().tenants.get_tenant(conn, id=tenant_id)
    # Render once with the real template now: a typo is cheaper to hear about today.
    _prepare(tenant, topic, 0, template, subject, content)
    return await queries().campaigns.create_campaign(
        conn,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        name=name,
        template=template,
        subject=subject,
        content=content,
        priority=priority,
        created_by=created_by,
    )


def _prepare(
    tenant: asyncpg.Record | dict[str, Any],
    topic: asyncpg.Record | dict[str, Any],
    campaign_id: int,
    template: str,
    subject: str,
    content: dict[str, Any],
    layout: compose.Layout | None = None,
) -> compose.PreparedMessage:
    try:
        return compose.prepare(
            template, sender_for(tenant, topic, campaign_id), subject, content, layout=layout
        )
    except OptoutError as exc:
        raise CampaignRefused(exc.message, field=exc.field) from exc


async def get(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> asyncpg.Record:
    row = await queries().campaigns.get_campaign(conn, tenant_id=tenant_id, id=campaign_id)
    if row is None:
        raise UnknownCampaign(f"No campaign {campaign_id} in this tenant.", field="campaign")
    return row


async def list_campaigns(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().campaigns.list_campaigns(conn, tenant_id=tenant_id))


async def check(
    conn: asyncpg.Connection, settings: Settings, campaign: asyncpg.Record
) -> compose.PreparedMessage:
    """Everything that would make the campaign's mail wrong, checked before anything queues."""
    tenant = await queries().tenants.get_tenant(conn, id=campaign["tenant_id"])
    topic = await queries().tenants.get_topic(
        conn, tenant_id=campaign["tenant_id"], id=campaign["topic_id"]
    )
    if topic is None:
        raise CampaignRefused("the campaign's topic no longer exists", field="topic")
    prepared = _prepare(
        tenant,
        topic,
        campaign["id"],
        campaign["template"],
        campaign["subject"],
        campaign["content"],
        await tenant_templates.layout_for(conn, campaign),
    )
    _check_contact(tenant, topic)
    _check_sending(tenant, settings)
    return prepared


def _check_contact(
    tenant: asyncpg.Record | dict[str, Any], topic: asyncpg.Record | dict[str, Any]
) -> None:
    """A commercial message names a web page, email or phone besides the postal address (CASL,
    STANDARDS 42); a policy notice is not commercial and goes out regardless."""
    if topic["kind"] == "marketing" and not tenants.has_contact(tenant):
        raise CampaignRefused(
            f"tenant {tenant['slug']!r} has no contact details besides its postal address "
            "(CASL: a web page, email or phone in every commercial message); set one with "
            f"`optout tenant update {tenant['slug']} --contact-email ADDRESS` "
            "(or --contact-web URL, --contact-phone NUMBER)",
            field="contact_email",
        )


def _check_sending(tenant: asyncpg.Record | dict[str, Any], settings: Settings) -> None:
    try:
        signer_for(tenant, settings)
    except OptoutError as exc:
        raise CampaignRefused(
            f"cannot sign the campaign's mail: {exc.message}", field="dkim_key_path"
        ) from exc
    if settings.smtp is None:
        raise CampaignRefused("SMTP_URL is not set: there is no relay to send through")


async def problems(
    conn: asyncpg.Connection, settings: Settings, campaign: asyncpg.Record
) -> list[CampaignRefused]:
    """Every refusal ``start`` would make now, all at once (``check`` stops at the first): the
    workspace shows them beside the campaign before anyone presses Send."""
    found: list[CampaignRefused] = []
    tenant_id = campaign["tenant_id"]
    tenant = await queries().tenants.get_tenant(conn, id=tenant_id)
    topic = await queries().tenants.get_topic(conn, tenant_id=tenant_id, id=campaign["topic_id"])
    if topic is None:
        return [CampaignRefused("the campaign's topic no longer exists", field="topic")]
    values = dict(tenant)
    if not (tenant["postal_address"] or "").strip():
        found.append(
            CampaignRefused(
                "the tenant has no postal address; CAN-SPAM requires one in every commercial "
                "message",
                field="postal_address",
            )
        )
        values["postal_address"] = "-"  # to find the content's own problems too
    try:
        _prepare(
            values,
            topic,
            campaign["id"],
            campaign["template"],
            campaign["subject"],
            campaign["content"],
            await tenant_templates.layout_for(conn, campaign),
        )
    except CampaignRefused as exc:
        found.append(exc)
    try:
        _check_contact(tenant, topic)
    except CampaignRefused as exc:
        found.append(exc)
    try:
        _check_sending(tenant, settings)
    except CampaignRefused as exc:
        found.append(exc)
    audience: int = await queries().campaigns.audience_size(
        conn, tenant_id=tenant_id, topic_id=topic["id"]
    )
    if audience == 0 and campaign["status"] in ("draft", "scheduled"):
        found.append(CampaignRefused(EMPTY_AUDIENCE, field="topic"))
    return found


async def create_draft(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    topic_slug: str,
    name: str,
    subject: str,
    content: dict[str, Any],
    template: str = "campaign",
    created_by: str = "cli",
    layout_id: int | None = None,
) -> asyncpg.Record:
    """A new draft as the workspace saves it: the form is checked, the content is not (a
    draft may be unfinished; ``problems`` lists what stops it from being sent). ``layout_id``
    is one of the tenant's own templates, in place of the built-in layout."""
    topic = await get_topic(conn, tenant_id, topic_slug)
    _check_draft(name, subject, template, content)
    if layout_id is not None:
        await tenant_templates.get(conn, tenant_id, layout_id)
    row = await queries().campaigns.create_campaign(
        conn,
        tenant_id=tenant_id,
        topic_id=topic["id"],
        name=name,
        template=template,
        subject=subject,
        content=content,
        priority=0,
        created_by=created_by,
    )
    if layout_id is not None:
        row = await queries().email_templates.set_campaign_layout(
            conn, tenant_id=tenant_id, id=row["id"], layout_id=layout_id
        )
    return row


async def update_draft(
    conn: asyncpg.Connection,
    *,
    tenant_id: int,
    campaign_id: int,
    topic_slug: str,
    name: str,
    subject: str,
    content: dict[str, Any],
    layout_id: int | None = None,
) -> asyncpg.Record:
    """Change a campaign that has not started yet (``layout_id`` None: the built-in layout)."""
    campaign = await get(conn, tenant_id, campaign_id)
    topic = await get_topic(conn, tenant_id, topic_slug)
    _check_draft(name, subject, campaign["template"], content)
    if layout_id is not None:
        await tenant_templates.get(conn, tenant_id, layout_id)
    row = await queries().campaigns.update_draft(
        conn,
        tenant_id=tenant_id,
        id=campaign_id,
        topic_id=topic["id"],
        name=name,
        subject=subject,
        content=content,
    )
    if row is None:
        raise Conflict(
            f"the campaign is {campaign['status']}; only a draft or a scheduled campaign "
            "can be edited (duplicate it to send it again)"
        )
    if layout_id != campaign["layout_id"]:
        row = await queries().email_templates.set_campaign_layout(
            conn, tenant_id=tenant_id, id=campaign_id, layout_id=layout_id
        )
    return row


async def choose_layout(
    conn: asyncpg.Connection,
    tenant_id: int,
    campaign_id: int,
    layout_id: int | None,
    version: int | None = None,
) -> asyncpg.Record:
    """Lay a campaign that has not started out in one of the tenant's own templates, at
    ``version`` (None: the template's newest, pinned when the campaign starts), or (None) in
    the built-in layout. Another tenant's template reads like one that does not exist."""
    campaign = await get(conn, tenant_id, campaign_id)
    if layout_id is None and version is not None:
        raise InvalidInput("A version needs a template_id.", field="version")
    if layout_id is not None:
        if campaign["template"] != LAID_OUT:
            # The newsletter template is a whole message of its own: nothing to lay out.
            raise InvalidInput(
                f"A layout takes a campaign of the {LAID_OUT!r} template (a body in Markdown "
                f"or HTML); this one uses {campaign['template']!r}.",
                field="layout",
            )
        await tenant_templates.get(conn, tenant_id, layout_id)
        if version is not None:
            await tenant_templates.version(conn, layout_id, version)
    row: asyncpg.Record | None = await queries().email_templates.choose_campaign_layout(
        conn, tenant_id=tenant_id, id=campaign_id, layout_id=layout_id, layout_version=version
    )
    if row is None:
        raise Conflict(
            f"the campaign is {campaign['status']}; only a draft or a scheduled campaign "
            "can change its layout"
        )
    return row


async def duplicate(
    conn: asyncpg.Connection, tenant_id: int, campaign_id: int, *, created_by: str = "cli"
) -> asyncpg.Record:
    """A new draft with the campaign's topic, subject and content."""
    campaign = await get(conn, tenant_id, campaign_id)
    name = f"Copy of {campaign['name']}"[:MAX_NAME]
    row = await queries().campaigns.create_campaign(
        conn,
        tenant_id=tenant_id,
        topic_id=campaign["topic_id"],
        name=name,
        template=campaign["template"],
        subject=campaign["subject"],
        content=campaign["content"],
        priority=campaign["priority"],
        created_by=created_by,
    )
    if campaign["layout_id"] is not None:  # the copy follows the template's newest version
        row = await queries().email_templates.set_campaign_layout(
            conn, tenant_id=tenant_id, id=row["id"], layout_id=campaign["layout_id"]
        )
    return row


def _check_draft(name: str, subject: str, template: str, content: dict[str, Any]) -> None:
    name, subject = name.strip(), subject.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"the name must have 1 to {MAX_NAME} characters", field="name")
    if not subject or len(subject) > compose.MAX_SUBJECT:
        raise CampaignRefused(
            f"the subject must have 1 to {compose.MAX_SUBJECT} characters", field="subject"
        )
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name + subject):
        raise InvalidInput("the name and subject must be one line of text", field="subject")
    if template in compose.BODY_TEMPLATES:
        body.check_values(content)


async def preview(
    conn: asyncpg.Connection, settings: Settings, tenant_id: int, campaign_id: int
) -> bytes:
    """The message as a sample recipient would get it (links carry subscriber 0)."""
    campaign = await get(conn, tenant_id, campaign_id)
    tenant = await queries().tenants.get_tenant(conn, id=tenant_id)
    topic = await queries().tenants.get_topic(conn, tenant_id=tenant_id, id=campaign["topic_id"])
    prepared = _prepare(
        tenant,
        topic,
        campaign_id,
        campaign["template"],
        campaign["subject"],
        campaign["content"],
        await tenant_templates.layout_for(conn, campaign),
    )
    domain = tenant["sender_domain"]
    return prepared.render(
        compose.Recipient(
            to_address=f"preview@{domain}",
            to_name="Preview",
            message_id=f"<c{campaign_id}.preview@{domain}>",
            unsubscribe_url=f"{settings.base_url}/u/PREVIEW",
            mailto_unsubscribe=f"unsubscribe+preview@{domain}",
            preferences_url=f"{settings.base_url}/p/PREVIEW",
        )
    )


async def start(
    conn: asyncpg.Connection, settings: Settings, tenant_id: int, campaign_id: int
) -> int:
    """Check, enqueue every recipient in one statement and start sending; returns the count.

    Refused (nothing queued) when the checks fail or nobody would receive it."""
    q = queries().campaigns
    async with conn.transaction():
        campaign = await q.lock_campaign(conn, tenant_id=tenant_id, id=campaign_id)
        if campaign is None:
            raise UnknownCampaign(field="campaign")
        if campaign["status"] not in ("draft", "scheduled"):
            raise Conflict(
                f"the campaign is {campaign['status']}; only a draft or a scheduled "
                "campaign can start"
            )
        await check(conn, settings, campaign)
        # The layout's version now is the one every recipient gets, whatever edits follow.
        await queries().email_templates.pin_campaign_layout(conn, id=campaign_id)
        # The enqueue joins every row to its subscriber in the tenant: the outbox's
        # per-statement check need not look again (migration 0210).
        await q.subscribers_checked(conn, value="on")
        tag: str = await q.enqueue(conn, campaign_id=campaign_id)
        await q.subscribers_checked(conn, value="off")
        queued = int(tag.split()[-1])  # "INSERT 0 n"
        if queued == 0:
            raise CampaignRefused(EMPTY_AUDIENCE, field="topic")
        await q.set_status(
            conn, tenant_id=tenant_id, id=campaign_id, status="sending", pause_reason=None
        )
        await queries().outbox.notify_work(conn)
    if queued >= ANALYZE_AFTER:
        await q.analyze_deliveries(conn)
    log.info("campaign_started campaign=%s queued=%s", campaign_id, queued)
    return queued


async def test_send(
    conn: asyncpg.Connection, settings: Settings, tenant_id: int, campaign_id: int, to: str
) -> int:
    """Queue the campaign's message to one address, checked like a start; a running worker
    sends it as transactional mail. Returns the delivery id."""
    campaign = await get(conn, tenant_id, campaign_id)
    await check(conn, settings, campaign)
    return await outbox.enqueue_transactional(
        conn,
        tenant_id=tenant_id,
        recipient=to,
        template=campaign["template"],
        payload={"campaign_id": campaign["id"], "test": True},
        hash_key=settings.hash_key,  # names no subscriber: erasure finds it by the address
    )


def check_schedule_time(at: dt.datetime, now: dt.datetime) -> None:
    """Refuse a start time in the past: a worker would start the mass send at once."""
    if at.tzinfo is None:
        raise CampaignRefused(
            "the start time needs a time zone offset, e.g. +02:00 or Z", field="at"
        )
    if at < now:
        raise CampaignRefused(
            f"the start time {at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC is in the past "
            f"(now {now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC); give a later time, "
            "or start it now with `optout campaign send`",
            field="at",
        )


async def schedule(
    conn: asyncpg.Connection,
    settings: Settings,
    tenant_id: int,
    campaign_id: int,
    at: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> asyncpg.Record:
    """Start at ``at`` (a worker starts it); checked now, and again when it starts."""
    check_schedule_time(at, now or dt.datetime.now(dt.UTC))
    campaign = await get(conn, tenant_id, campaign_id)
    await check(conn, settings, campaign)
    row = await queries().campaigns.schedule(
        conn, tenant_id=tenant_id, id=campaign_id, scheduled_at=at
    )
    if row is None:
        raise Conflict(f"the campaign is {campaign['status']}; only a draft can be scheduled")
    return row


async def start_due(conn: asyncpg.Connection, settings: Settings) -> int:
    """Start scheduled campaigns whose time has come (called by workers); returns how many."""
    started = 0
    async with conn.transaction():
        due = await rows(queries().campaigns.due_scheduled(conn))
        for row in due:
            try:
                async with conn.transaction():
                    await start(conn, settings, row["tenant_id"], row["id"])
                started += 1
            except OptoutError as exc:
                log.warning("campaign_not_started campaign=%s reason=%s", row["id"], exc.message)
                await queries().campaigns.set_status(
                    conn,
                    tenant_id=row["tenant_id"],
                    id=row["id"],
                    status="paused",
                    pause_reason=f"could not start: {exc.message}"[:500],
                )
    return started


async def retry_failed(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> int:
    """Queue the soft failures again (never bounces); reopens a finished campaign."""
    q = queries().campaigns
    async with conn.transaction():
        campaign = await q.lock_campaign(conn, tenant_id=tenant_id, id=campaign_id)
        if campaign is None:
            raise UnknownCampaign(field="campaign")
        if campaign["status"] in ("draft", "scheduled", "cancelled"):
            raise Conflict(f"the campaign is {campaign['status']}; nothing has failed yet")
        count: int = await q.retry_failed(conn, campaign_id=campaign_id)
        if count and campaign["status"] == "done":
            await q.set_status(
                conn, tenant_id=tenant_id, id=campaign_id, status="sending", pause_reason=None
            )
        await queries().outbox.notify_work(conn)
        return count


async def stats(conn: asyncpg.Connection, tenant_id: int, campaign_id: int) -> Stats:
    """A campaign's figures: counts summed from its counter rows (no scan of its deliveries),
    and, once the retention job folded it, the figures frozen then."""
    campaign = await get(conn, tenant_id, campaign_id)
    q = queries().campaigns
    counts = await q.delivery_counts(conn, campaign_id=campaign_id)
    if campaign["folded_at"] is not None:
        unsubscribed = dict(campaign["folded_unsubscribed"] or {})
        later_bounces: int = campaign["folded_later_bounces"]
        complained: int = campaign["folded_complaints"]
    else:
        unsubscribed = {
            r["source"]: r["people"]
            for r in await rows(q.unsubscribes_by_channel(conn, campaign_id=campaign_id))
        }
        later_bounces = await q.later_bounces(conn, campaign_id=campaign_id)
        complained = await q.complaints(conn, campaign_id=campaign_id)
    return Stats(
        status=campaign["status"],
        total=counts["total"],
        queued=counts["queued"],
        sending=counts["sending"],
        sent=counts["sent"],
        deferred=counts["deferred"],
        failed=counts["failed"],
        bounced=counts["bounced"] + later_bounces,
        suppressed=counts["suppressed"],
        cancelled=counts["cancelled"],
        complained=complained,
        unsubscribed=unsubscribed,
        first_sent_at=counts["first_sent_at"],
        last_sent_at=counts["last_sent_at"],
        pause_reason=campaign["pause_reason"],
    )
