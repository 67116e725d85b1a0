"""Admin API routes over the sub-processor registers (STANDARDS 41): a tenant's, read with
``policy.read`` and saved whole by compliance (``policy.write``), optionally as a material
change that publishes a policy version embedding it and starts its notice; and the
installation's (relays, hosting), read by every tenant's compliance and client tokens and
saved by an admin. Thin over mailer.rights.subprocessors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from mailer.errors import InvalidInput, OptoutError
from mailer.rights import policy, subprocessors
from mailer.sending import campaigns
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import BOOLEAN, SLUG, Endpoint, Param, obj, string

TENANT = Param("tenant", SLUG, location="path", required=True)
ENTRY = obj(
    {key: string(limit, min_length=1) for key, limit in subprocessors.LIMITS.items()},
    required=tuple(subprocessors.LIMITS),
)
ENTRIES = {"type": "array", "maxItems": subprocessors.MAX_ENTRIES, "items": ENTRY}
REGISTER = {
    "type": "object",
    "properties": {"items": {"type": "array"}, "installation": {"type": "array"}},
}


def _entry(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "purpose", "location", "updated_at", "updated_by")}


async def _listing(ctx: Ctx, tenant_id: int | None) -> list[dict[str, Any]]:
    return [_entry(r) for r in await subprocessors.register(ctx.conn, tenant_id)]


async def list_subprocessors(ctx: Ctx) -> Any:
    return {
        "items": await _listing(ctx, ctx.tenant_id),
        "installation": await _listing(ctx, None),
    }


async def save_subprocessors(ctx: Ctx) -> Any:
    """Replace the tenant's register; ``material``: publish the policy version embedding it
    (the notice period applies) and start its notice when the tenant has a notice topic."""
    assert ctx.tenant is not None
    body = ctx.body
    entries = subprocessors.check_entries(body["entries"])
    material = bool(body.get("material"))
    if material and not (body.get("effective_at") and body.get("summary")):
        raise InvalidInput("A material change needs effective_at and summary.", field="material")
    await subprocessors.save(ctx.conn, ctx.tenant_id, entries, by=ctx.principal.actor)
    answer: dict[str, Any] = {"items": await _listing(ctx, ctx.tenant_id), "version": None}
    if material:
        effective = policy.parse_effective(body["effective_at"], ctx.tenant["time_zone"])
        change = await subprocessors.publish_change(
            ctx.conn,
            tenant=ctx.tenant,
            effective_at=effective,
            summary=body["summary"],
            now=dt.datetime.now(dt.UTC),
            policy_url=f"{ctx.settings.base_url.rstrip('/')}/policy/{ctx.tenant['slug']}",
            force_reason=body.get("force_reason"),
            by=ctx.principal.actor,
        )
        ctx.target = ("policy_version", change.version["id"])
        answer["version"] = change.version["version"]
        answer["notice"] = None
        if change.notice is not None:
            notice: dict[str, Any] = {"campaign_id": change.notice["id"], "queued": 0}
            try:
                async with ctx.conn.transaction():
                    notice["queued"] = await campaigns.start(
                        ctx.conn, ctx.settings, ctx.tenant_id, change.notice["id"]
                    )
            except OptoutError as exc:
                notice["not_started"] = exc.message
            answer["notice"] = notice
    return answer


async def list_installation(ctx: Ctx) -> Any:
    return {"items": await _listing(ctx, None)}


async def save_installation(ctx: Ctx) -> Any:
    entries = subprocessors.check_entries(ctx.body["entries"])
    await subprocessors.save(ctx.conn, None, entries, by=ctx.principal.actor)
    return {"items": await _listing(ctx, None)}


ENDPOINTS = (
    Endpoint(
        "GET",
        "/tenants/{tenant}/subprocessors",
        "list_subprocessors",
        "The companies that help provide the service: the tenant's and the installation's",
        list_subprocessors,
        "policy.read",
        params=(TENANT,),
        response=REGISTER,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/subprocessors",
        "save_subprocessors",
        "Replace the tenant's register; material: publish a policy version embedding it and "
        "start its notice (the notice period applies)",
        save_subprocessors,
        "policy.write",
        params=(TENANT,),
        body=obj(
            {
                "entries": ENTRIES,
                "material": BOOLEAN,
                "effective_at": string(40, min_length=1),
                "summary": string(policy.MAX_SUMMARY_CHARS, min_length=1, multiline=True),
                "force_reason": string(500, nullable=True),
            },
            required=("entries",),
        ),
        domain_audit=True,
    ),
    Endpoint(
        "GET",
        "/subprocessors",
        "list_installation_subprocessors",
        "The installation's register (relays, hosting), shared by every tenant",
        list_installation,
        "policy.read",
        response=REGISTER,
    ),
    Endpoint(
        "POST",
        "/subprocessors",
        "save_installation_subprocessors",
        "Replace the installation's register (admins)",
        save_installation,
        "tenants.write",
        body=obj({"entries": ENTRIES}, required=("entries",)),
        domain_audit=True,
    ),
)
