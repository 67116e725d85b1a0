"""Admin API routes over the mailer's campaigns, the policy versions and the data requests.

Thin handlers over mailer.campaigns, mailer.policy and mailer.privacy; every object is looked
up inside the caller's tenant first, with one generic "No such ..." answer, so an id of
another tenant reads exactly like an id that does not exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from typing import Any

import asyncpg

from mailer.db import queries
from mailer.errors import InvalidInput, NotFound, OptoutError
from mailer.inbound import claims
from mailer.rights import partners, policy, privacy, queue
from mailer.sending import campaigns
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import (
    ANY_OBJECT,
    BOOLEAN,
    ID,
    SLUG,
    Endpoint,
    Param,
    integer,
    obj,
    string,
)

NO_CAMPAIGN = NotFound("No such campaign.", field="campaign_id")
NO_VERSION = NotFound("No such policy version.", field="version")
NO_REQUEST = NotFound("No such data request.", field="request_id")
MAX_VERSION = 2**31 - 1  # policy_versions.version is an integer
CAMPAIGN_TEMPLATES = ("newsletter", "campaign")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _when(value: str, field: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field} is not an ISO 8601 time.", field=field) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{field} needs a time zone, e.g. +00:00.", field=field)
    return parsed


def _campaign(row: asyncpg.Record) -> dict[str, Any]:
    fields = (
        "id",
        "topic_id",
        "name",
        "template",
        "subject",
        "content",
        "status",
        "priority",
        "policy_version_id",
        "scheduled_at",
        "started_at",
        "finished_at",
        "pause_reason",
        "created_by",
        "created_at",
        "updated_at",
    )
    out = {name: row[name] for name in fields}
    out["layout"] = (
        None
        if row["layout_id"] is None
        else {"template_id": row["layout_id"], "version": row["layout_version"]}
    )
    return out


async def _choose_layout(ctx: Ctx, row: asyncpg.Record) -> asyncpg.Record:
    """The body's ``layout`` (a template id and optional version; null: the built-in one)."""
    if "layout" not in ctx.body:
        return row
    layout = ctx.body["layout"]
    return await campaigns.choose_layout(
        ctx.conn,
        ctx.tenant_id,
        row["id"],
        None if layout is None else layout["template_id"],
        None if layout is None else layout.get("version"),
    )


async def _campaign_id(ctx: Ctx) -> int:
    campaign_id = ctx.path_id("campaign_id", NO_CAMPAIGN)
    found = await queries().campaigns.get_campaign(
        ctx.conn, tenant_id=ctx.tenant_id, id=campaign_id
    )
    if found is None:
        raise NO_CAMPAIGN
    ctx.target = ("campaign", campaign_id)
    return campaign_id


async def list_campaigns(ctx: Ctx) -> Any:
    found = await campaigns.list_campaigns(ctx.conn, ctx.tenant_id)
    return {"items": [_campaign(r) for r in found]}


async def create_campaign(ctx: Ctx) -> Any:
    body = ctx.body
    row = await campaigns.create(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        topic_slug=body["topic"],
        name=body["name"],
        template=body.get("template", "newsletter"),
        subject=body["subject"],
        content=body.get("content", {}),
        priority=body.get("priority", 0),
        created_by=ctx.principal.actor,
    )
    ctx.target = ("campaign", row["id"])
    return _campaign(await _choose_layout(ctx, row))


async def get_campaign(ctx: Ctx) -> Any:
    return _campaign(await campaigns.get(ctx.conn, ctx.tenant_id, await _campaign_id(ctx)))


async def preview_campaign(ctx: Ctx) -> Any:
    raw = await campaigns.preview(ctx.conn, ctx.settings, ctx.tenant_id, await _campaign_id(ctx))
    return {"message": raw.decode("utf-8", errors="replace")}


async def test_campaign(ctx: Ctx) -> Any:
    """Queue the campaign's message to one address, checked like a start (like `optout
    campaign test`); a running worker sends it. The address is not kept in the audit log."""
    campaign_id = await _campaign_id(ctx)
    delivery = await campaigns.test_send(
        ctx.conn, ctx.settings, ctx.tenant_id, campaign_id, ctx.body["to"]
    )
    return {"campaign_id": campaign_id, "delivery_id": delivery, "status": "queued"}


async def schedule_campaign(ctx: Ctx) -> Any:
    at = _when(ctx.body["at"], "at")
    row = await campaigns.schedule(
        ctx.conn, ctx.settings, ctx.tenant_id, await _campaign_id(ctx), at
    )
    return _campaign(row)


async def update_campaign(ctx: Ctx) -> Any:
    """Change a draft or scheduled campaign (what the workspace editor saves)."""
    campaign_id = await _campaign_id(ctx)
    current = await campaigns.get(ctx.conn, ctx.tenant_id, campaign_id)
    topic = await queries().tenants.get_topic(
        ctx.conn, tenant_id=ctx.tenant_id, id=current["topic_id"]
    )
    body = ctx.body
    row = await campaigns.update_draft(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        campaign_id=campaign_id,
        topic_slug=body.get("topic", topic["slug"]),
        name=body.get("name", current["name"]),
        subject=body.get("subject", current["subject"]),
        content=body.get("content", current["content"]),
        layout_id=current["layout_id"],  # kept unless the body names another (below)
    )
    return _campaign(await _choose_layout(ctx, row))


async def duplicate_campaign(ctx: Ctx) -> Any:
    row = await campaigns.duplicate(
        ctx.conn, ctx.tenant_id, await _campaign_id(ctx), created_by=ctx.principal.actor
    )
    ctx.target = ("campaign", row["id"])
    return _campaign(row)


async def check_campaign(ctx: Ctx) -> Any:
    """Every refusal a start would make now (empty when it can be sent)."""
    campaign = await campaigns.get(ctx.conn, ctx.tenant_id, await _campaign_id(ctx))
    found = await campaigns.problems(ctx.conn, ctx.settings, campaign)
    return {"items": [{"message": p.message, "field": p.field} for p in found]}


async def start_campaign(ctx: Ctx) -> Any:
    """Check and queue every recipient now (like `optout campaign send`)."""
    campaign_id = await _campaign_id(ctx)
    queued = await campaigns.start(ctx.conn, ctx.settings, ctx.tenant_id, campaign_id)
    return {"campaign_id": campaign_id, "queued": queued}


async def retry_campaign(ctx: Ctx) -> Any:
    """Queue the soft failures again (never bounces)."""
    campaign_id = await _campaign_id(ctx)
    count = await campaigns.retry_failed(ctx.conn, ctx.tenant_id, campaign_id)
    return {"campaign_id": campaign_id, "queued": count}


async def pause_campaign(ctx: Ctx) -> Any:
    return _campaign(await campaigns.pause(ctx.conn, ctx.tenant_id, await _campaign_id(ctx)))


async def resume_campaign(ctx: Ctx) -> Any:
    return _campaign(await campaigns.resume(ctx.conn, ctx.tenant_id, await _campaign_id(ctx)))


async def cancel_campaign(ctx: Ctx) -> Any:
    return _campaign(await campaigns.cancel(ctx.conn, ctx.tenant_id, await _campaign_id(ctx)))


async def campaign_stats(ctx: Ctx) -> Any:
    stats = await campaigns.stats(ctx.conn, ctx.tenant_id, await _campaign_id(ctx))
    return dataclasses.asdict(stats) | {"remaining": stats.remaining, "rate": stats.rate}


def _version(row: asyncpg.Record) -> dict[str, Any]:
    fields = (
        "id",
        "version",
        "summary",
        "body_md",
        "published_at",
        "effective_at",
        "force_reason",
        "published_by",
    )
    return {name: row[name] for name in fields}


async def _version_row(ctx: Ctx) -> asyncpg.Record:
    raw = ctx.request.match_info["version"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_VERSION:
        raise NO_VERSION
    row = await queries().policy.get_version(ctx.conn, tenant_id=ctx.tenant_id, version=int(raw))
    if row is None:
        raise NO_VERSION
    return row


async def list_versions(ctx: Ctx) -> Any:
    return {"items": [_version(r) for r in await policy.versions(ctx.conn, ctx.tenant_id)]}


async def publish_version(ctx: Ctx) -> Any:
    """Publish, and create the change notice on the notice topic when the tenant has one; the
    notice starts at once when it can (like `optout policy publish`)."""
    assert ctx.tenant is not None
    body = ctx.body
    effective = _when(body["effective_at"], "effective_at")
    topic = None
    if body.get("notice", True):
        topic = await policy.notice_topic(ctx.conn, ctx.tenant_id, body.get("topic"))
    version = await policy.publish(
        ctx.conn,
        tenant=ctx.tenant,
        body=body["body"],
        summary=body["summary"],
        effective_at=effective,
        now=_now(),
        force_reason=body.get("force_reason"),
        published_by=ctx.principal.actor,
    )
    ctx.target = ("policy_version", version["id"])
    notice: dict[str, Any] | None = None
    if topic is not None:
        url = f"{ctx.settings.base_url.rstrip('/')}/policy/{ctx.tenant['slug']}"
        campaign = await policy.create_notice_campaign(
            ctx.conn,
            tenant=ctx.tenant,
            version=version,
            topic=topic,
            policy_url=url,
            by=ctx.principal.actor,
        )
        notice = {"campaign_id": campaign["id"], "queued": 0, "not_started": None}
        try:
            async with ctx.conn.transaction():
                notice["queued"] = await campaigns.start(
                    ctx.conn, ctx.settings, ctx.tenant_id, campaign["id"]
                )
        except OptoutError as exc:
            notice["not_started"] = exc.message
    return _version(version) | {"notice": notice}


async def get_version(ctx: Ctx) -> Any:
    return _version(await _version_row(ctx))


async def version_proof(ctx: Ctx) -> Any:
    row = await _version_row(ctx)
    ctx.target = ("policy_version", row["id"])
    _, people = await policy.proof_of_notice(ctx.conn, ctx.tenant_id, row["version"])
    return {"version": row["version"], "items": policy.proof_rows(people)}


def _request(row: asyncpg.Record) -> dict[str, Any]:
    fields = (
        "id",
        "subscriber_id",
        "kind",
        "requester",
        "status",
        "received_at",
        "due_at",
        "extended_due_at",
        "extension_reason",
        "verified_at",
        "completed_at",
        "completed_by",
        "receipt",
        "rejection_reason",
        "rejected_at",
        "detail",
    )
    # The list query leaves some columns out; one shape serves both.
    return {name: row[name] for name in fields if name in row}


async def _request_id(ctx: Ctx) -> int:
    request_id = ctx.path_id("request_id", NO_REQUEST)
    found = await queries().privacy.get_request(ctx.conn, tenant_id=ctx.tenant_id, id=request_id)
    if found is None:
        raise NO_REQUEST
    ctx.target = ("data_request", request_id)
    return request_id


async def list_requests(ctx: Ctx) -> Any:
    overdue_at = _now() if ctx.query.get("overdue") else None
    found = await privacy.list_requests(ctx.conn, tenant_id=ctx.tenant_id, overdue_at=overdue_at)
    return {"items": [_request(r) for r in found]}


async def list_partner_claims(ctx: Ctx) -> Any:
    assert ctx.tenant_id is not None
    return {"items": await claims.list_claims(ctx.conn, ctx.tenant_id)}


async def create_request(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    row = await privacy.create_request(
        ctx.conn,
        hash_key=ctx.settings.hash_key,
        tenant=ctx.tenant,
        kind=ctx.body["kind"],
        email=ctx.body["email"],
        now=_now(),
        actor=ctx.principal.actor,
    )
    ctx.target = ("data_request", row["id"])
    # A person's request is verified through a link mailed to the address on file (as from
    # `optout requests create`); a client's removal needs none. The answer is the same.
    await privacy.send_verification(
        ctx.conn, ctx.settings, tenant_id=ctx.tenant_id, request_id=row["id"]
    )
    return _request(row)


async def get_request(ctx: Ctx) -> Any:
    return _request(await privacy.get_request(ctx.conn, ctx.tenant_id, await _request_id(ctx)))


async def extend_request(ctx: Ctx) -> Any:
    """Extend once, before the deadline; the person is mailed the reason and the new date."""
    assert ctx.tenant is not None
    row, mailed = await queue.extend(
        ctx.conn,
        tenant=ctx.tenant,
        request_id=await _request_id(ctx),
        reason=ctx.body["reason"],
        now=_now(),
        months_total=ctx.body.get("months", 3),
        by=ctx.principal.actor,
    )
    return _request(row) | {"mailed": mailed}


async def complete_request(ctx: Ctx) -> Any:
    """The request's action (like `optout requests complete`): it does the work and closes the
    request with its receipt. An access request answers with the person's data (``"access":
    "link"`` mails them the single-use link instead); a rectification takes the correction."""
    assert ctx.tenant is not None
    body = ctx.body or {}
    done = await queue.act(
        ctx.conn,
        ctx.settings,
        tenant=ctx.tenant,
        request_id=await _request_id(ctx),
        by=ctx.principal.actor,
        now=_now(),
        token_id=ctx.principal.token_id,
        correction=queue.Correction(body.get("name"), body.get("email")),
        access_by=body.get("access", "copy"),
    )
    receipt = None
    if done.erasure_receipt is not None:
        receipt = {"id": done.erasure_receipt["id"], "partner_export_ids": []}
        receipt["partner_export_ids"] = [e["id"] for e in done.partner_exports]
    return _request(done.request) | {
        "already_done": done.already_done,
        "erasure_receipt": receipt,
        "access": done.access,
    }


async def export_partners(ctx: Ctx) -> Any:
    """Only those who consent to partner sharing now; the export is recorded (who was in it)
    so an erasure can tell the partner later (GDPR Art. 19)."""
    out = io.StringIO()
    done = await partners.export_partners(
        ctx.conn,
        tenant_id=ctx.tenant_id,
        out=out,
        by=ctx.principal.actor,
        partner=(ctx.body or {}).get("partner", ""),
    )
    return {"export_id": done.export_id, "row_count": done.row_count, "csv": out.getvalue()}


TENANT = Param("tenant", SLUG, location="path", required=True)
CAMPAIGN = Param("campaign_id", ID, location="path", required=True)
VERSION = Param("version", integer(1, MAX_VERSION), location="path", required=True)
REQUEST = Param("request_id", ID, location="path", required=True)
LIST = {"type": "object", "properties": {"items": {"type": "array"}}}
CAMPAIGN_PATH = "/tenants/{tenant}/campaigns/{campaign_id}"
# One of the tenant's own templates as the campaign's layout, at a version (default: its
# newest, pinned at start); null: the built-in layout.
LAYOUT = obj({"template_id": ID, "version": integer(1, MAX_VERSION)}, required=("template_id",)) | {
    "type": ["object", "null"]
}


def _campaign_action(
    verb: str, handler: Any, summary: str, right: str = "campaigns.write", status: int = 200
) -> Endpoint:
    return Endpoint(
        "POST",
        f"{CAMPAIGN_PATH}/{verb}",
        f"{verb}_campaign",
        summary,
        handler,
        right,
        params=(TENANT, CAMPAIGN),
        status=status,
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/tenants/{tenant}/partner-exports",
        "export_partners",
        "CSV of the subscribers who consent to partner sharing now (the export is recorded)",
        export_partners,
        "partners.export",
        params=(TENANT,),
        body=obj({"partner": string(200)}),
        status=201,
        own_transaction=True,  # one repeatable-read snapshot, audited by mailer.partners
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/campaigns",
        "list_campaigns",
        "Campaigns, newest first",
        list_campaigns,
        "campaigns.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/campaigns",
        "create_campaign",
        "Create a draft campaign for a topic from a template",
        create_campaign,
        "campaigns.write",
        params=(TENANT,),
        body=obj(
            {
                "topic": SLUG,
                "name": string(200, min_length=1),
                "template": string(enum=CAMPAIGN_TEMPLATES),
                "subject": string(255, min_length=1),
                "content": ANY_OBJECT,
                "priority": integer(0, 40),
                "layout": LAYOUT,
            },
            required=("topic", "name", "subject"),
        ),
        status=201,
    ),
    Endpoint(
        "GET",
        CAMPAIGN_PATH,
        "get_campaign",
        "One campaign",
        get_campaign,
        "campaigns.read",
        params=(TENANT, CAMPAIGN),
    ),
    Endpoint(
        "GET",
        f"{CAMPAIGN_PATH}/preview",
        "preview_campaign",
        "The message as a sample recipient would get it",
        preview_campaign,
        "campaigns.read",
        params=(TENANT, CAMPAIGN),
    ),
    Endpoint(
        "GET",
        f"{CAMPAIGN_PATH}/stats",
        "campaign_stats",
        "Progress and results: sent, failed, bounced, unsubscribed, complained",
        campaign_stats,
        "campaigns.read",
        params=(TENANT, CAMPAIGN),
    ),
    Endpoint(
        "POST",
        f"{CAMPAIGN_PATH}/schedule",
        "schedule_campaign",
        "Start at a time (checked now and again at the start)",
        schedule_campaign,
        "campaigns.write",
        params=(TENANT, CAMPAIGN),
        body=obj({"at": string(40, min_length=1)}, required=("at",)),
    ),
    Endpoint(
        "POST",
        f"{CAMPAIGN_PATH}/test",
        "test_campaign",
        "Queue the campaign's message to one address (checked like a start)",
        test_campaign,
        "campaigns.write",
        params=(TENANT, CAMPAIGN),
        body=obj({"to": string(254, min_length=3)}, required=("to",)),
        status=202,
    ),
    Endpoint(
        "PATCH",
        CAMPAIGN_PATH,
        "update_campaign",
        "Change a draft or scheduled campaign",
        update_campaign,
        "campaigns.write",
        params=(TENANT, CAMPAIGN),
        body=obj(
            {
                "topic": SLUG,
                "name": string(200, min_length=1),
                "subject": string(255, min_length=1),
                "content": ANY_OBJECT,
                "layout": LAYOUT,
            }
        ),
    ),
    Endpoint(
        "GET",
        f"{CAMPAIGN_PATH}/checks",
        "check_campaign",
        "Every refusal a start would make now",
        check_campaign,
        "campaigns.read",
        params=(TENANT, CAMPAIGN),
        response=LIST,
    ),
    _campaign_action(
        "duplicate", duplicate_campaign, "A new draft with the same content", status=201
    ),
    _campaign_action(
        "start", start_campaign, "Check and queue every recipient now", "campaigns.send"
    ),
    _campaign_action("pause", pause_campaign, "Stop sending for now"),
    _campaign_action("resume", resume_campaign, "Go on sending"),
    _campaign_action("cancel", cancel_campaign, "Stop for good; queued mail is cancelled"),
    _campaign_action("retry", retry_campaign, "Queue the soft failures again", "campaigns.send"),
    Endpoint(
        "GET",
        "/tenants/{tenant}/policy/versions",
        "list_policy_versions",
        "Privacy-policy versions",
        list_versions,
        "policy.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/policy/versions",
        "publish_policy_version",
        "Publish a version (the tenant's notice period applies) and start its change notice",
        publish_version,
        "policy.write",
        params=(TENANT,),
        body=obj(
            {
                "body": string(policy.MAX_BODY_CHARS, min_length=1, multiline=True),
                "summary": string(policy.MAX_SUMMARY_CHARS, min_length=1, multiline=True),
                "effective_at": string(40, min_length=1),
                "force_reason": string(500, nullable=True),
                "notice": BOOLEAN,
                "topic": SLUG,
            },
            required=("body", "summary", "effective_at"),
        ),
        status=201,
        domain_audit=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/policy/versions/{version}",
        "get_policy_version",
        "One policy version",
        get_version,
        "policy.read",
        params=(TENANT, VERSION),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/policy/versions/{version}/proof",
        "policy_version_proof",
        "Proof of notice: who was mailed the change notice and when",
        version_proof,
        "policy.read",
        params=(TENANT, VERSION),
        response=LIST,
        audit_read=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/requests",
        "list_requests",
        "Data requests with their due dates",
        list_requests,
        "requests.read",
        params=(TENANT, Param("overdue", BOOLEAN, description="only those past their due date")),
        response=LIST,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/partner-claims",
        "list_partner_claims",
        "Partner-sharing withdrawals mailed from unknown addresses: listed ones carry no "
        "deadline; a confirmed one names its data request",
        list_partner_claims,
        "requests.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/requests",
        "create_request",
        "Record a data request (access, rectify, erase, client_removal) about an address",
        create_request,
        "requests.create",
        params=(TENANT,),
        body=obj(
            {"kind": string(enum=tuple(privacy.REQUEST_KINDS)), "email": string(254)},
            required=("kind", "email"),
        ),
        status=201,
        domain_audit=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/requests/{request_id}",
        "get_request",
        "One data request",
        get_request,
        "requests.read",
        params=(TENANT, REQUEST),
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/requests/{request_id}/extend",
        "extend_request",
        "Extend a person's request once, before its deadline, with a reason (mailed to them)",
        extend_request,
        "requests.write",
        params=(TENANT, REQUEST),
        body=obj(
            {"reason": string(500, min_length=1), "months": integer(2, 3)}, required=("reason",)
        ),
        domain_audit=True,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/requests/{request_id}/complete",
        "complete_request",
        "The request's action: do its work (access, rectify, erase, partner withdrawal, "
        "client removal) and close it with its receipt",
        complete_request,
        "requests.write",
        params=(TENANT, REQUEST),
        body=obj(
            {
                "access": string(enum=queue.ACCESS_BY),
                "name": string(privacy.MAX_NAME),
                "email": string(254),
            }
        ),
        domain_audit=True,  # mailer.privacy audits the completion with the token's id
    ),
)
