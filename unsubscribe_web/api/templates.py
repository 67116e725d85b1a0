"""Admin API routes over each tenant's own email templates (issue 17): list, create from the
built-in newsletter layout, read a version, save a new version, preview. Thin over
mailer.sending.tenant_templates; a template of another tenant reads like one that does not
exist. A refused save stores nothing and answers 400 with the one reason."""

from __future__ import annotations

from typing import Any

import asyncpg

from mailer.sending import sandbox, tenant_templates
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import ID, SLUG, Endpoint, Param, integer, obj, string

MAX_VERSION = 2**31 - 1
TENANT = Param("tenant", SLUG, location="path", required=True)
TEMPLATE = Param("template_id", ID, location="path", required=True)
# The checks in mailer count octets; the schema's bound is in characters, so it only stops
# bodies that cannot possibly fit.
PART = string(sandbox.MAX_SOURCE, multiline=True)
# Both parts at their limit, each character escaped as \uXXXX in the worst case, and the rest.
MAX_BODY = 2 * 6 * sandbox.MAX_SOURCE + 64 * 1024


def _template(row: asyncpg.Record) -> dict[str, Any]:
    return {name: row[name] for name in ("id", "name", "created_at", "created_by")}


def _version(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "version": row["version"],
        "html": row["html"],
        "text": row["body_text"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
    }


async def list_templates(ctx: Ctx) -> Any:
    found = await tenant_templates.list_templates(ctx.conn, ctx.tenant_id)
    return {"items": [_template(r) | {"version": r["version"]} for r in found]}


async def create_template(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    row = await tenant_templates.create(
        ctx.conn,
        ctx.tenant,
        ctx.body["name"],
        created_by=ctx.principal.actor,
        html=ctx.body.get("html"),
        text=ctx.body.get("text"),
    )
    ctx.target = ("email_template", row["id"])
    return await _full(ctx, row)


async def _full(ctx: Ctx, row: asyncpg.Record, number: int | None = None) -> dict[str, Any]:
    chosen = await tenant_templates.version(ctx.conn, row["id"], number)
    versions = await tenant_templates.versions(ctx.conn, row["id"])
    return _template(row) | {
        "current": _version(chosen),
        "versions": [v["version"] for v in versions],
    }


async def get_template(ctx: Ctx) -> Any:
    row = await tenant_templates.get(
        ctx.conn, ctx.tenant_id, ctx.path_id("template_id", tenant_templates.NO_TEMPLATE)
    )
    return await _full(ctx, row, ctx.query.get("version"))


async def save_template(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    template_id = ctx.path_id("template_id", tenant_templates.NO_TEMPLATE)
    added = await tenant_templates.save(
        ctx.conn,
        ctx.tenant,
        template_id,
        html=ctx.body["html"],
        text=ctx.body["text"],
        created_by=ctx.principal.actor,
    )
    ctx.target = ("email_template", template_id)
    row = await tenant_templates.get(ctx.conn, ctx.tenant_id, template_id)
    return await _full(ctx, row, added["version"])


async def preview_template(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    template_id = ctx.path_id("template_id", tenant_templates.NO_TEMPLATE)
    html_part, text_part = await tenant_templates.preview(
        ctx.conn, ctx.settings, ctx.tenant, template_id
    )
    return {"html": html_part, "text": text_part}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/tenants/{tenant}/templates",
        "list_templates",
        "The tenant's own email templates and their newest version",
        list_templates,
        "templates.read",
        params=(TENANT,),
        response={"type": "object", "properties": {"items": {"type": "array"}}},
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/templates",
        "create_template",
        "A new template (version 1): the built-in newsletter layout unless parts are given; "
        "refused without the footer, on a template error, over 256 KiB or over 1 s to render",
        create_template,
        "templates.write",
        params=(TENANT,),
        body=obj(
            {"name": string(tenant_templates.MAX_NAME, min_length=1), "html": PART, "text": PART},
            required=("name",),
        ),
        status=201,
        max_body=MAX_BODY,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/templates/{template_id}",
        "get_template",
        "One template at its newest version (or ?version=N) and its version numbers",
        get_template,
        "templates.read",
        params=(TENANT, TEMPLATE, Param("version", integer(1, MAX_VERSION))),
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/templates/{template_id}/versions",
        "save_template",
        "Save the parts as the template's next version (checked like a new template)",
        save_template,
        "templates.write",
        params=(TENANT, TEMPLATE),
        body=obj({"html": PART, "text": PART}, required=("html", "text")),
        status=201,
        max_body=MAX_BODY,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/templates/{template_id}/preview",
        "preview_template",
        "The newest version's parts for a sample recipient and a sample body",
        preview_template,
        "templates.read",
        params=(TENANT, TEMPLATE),
    ),
)
