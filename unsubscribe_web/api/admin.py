"""The admin JSON API under /api/v1, for admin, marketing, compliance and client tokens.

A sub-application with its own error middleware. Every request is checked in one order:
the token (401), then the tenant in the path (404 when it is not the token's, word for word
the answer for a tenant that does not exist), then the role's right (403), then the input
(400). Handlers are thin: they call mailer and shape JSON. Writes are audited in the same
transaction as the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from mailer import api_tokens, audit, json_input, tenants, wording
from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.api_tokens import Principal
from mailer.consent import imports, suppression_lists
from mailer.consent.ledger import event_view
from mailer.db import queries, rows
from mailer.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OptoutError,
    Unauthorized,
    UnknownSubscriber,
    UnknownTenant,
)
from mailer.i18n import LANGUAGES
from unsubscribe_web import uploads
from unsubscribe_web.api import campaigns as api_campaigns
from unsubscribe_web.api import events as api_events
from unsubscribe_web.api import openapi
from unsubscribe_web.api import requests as api_requests
from unsubscribe_web.api import staff as api_staff
from unsubscribe_web.api import subprocessors as api_subprocessors
from unsubscribe_web.api import subscribers as api_subscribers
from unsubscribe_web.api import templates as api_templates
from unsubscribe_web.api.context import DEFAULT_LIMIT, MAX_LIMIT, Ctx, id_cursor, page
from unsubscribe_web.api.spec import (
    ANY_OBJECT,
    BOOLEAN,
    ID,
    SLUG,
    SLUG_PATTERN,
    Endpoint,
    Param,
    check,
    check_query,
    integer,
    obj,
    string,
)
from unsubscribe_web.errors import error_response
from unsubscribe_web.keys import POOL, SETTINGS

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
OPENAPI_DOC = web.AppKey("openapi_document", dict)


# --- shaping ------------------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


_dumps = partial(json.dumps, default=_json_default)


def _tenant(row: asyncpg.Record) -> dict[str, Any]:
    fields = (
        "id",
        "slug",
        "name",
        "sender_name",
        "sender_address",
        "sender_domain",
        "postal_address",
        "contact_web",
        "contact_email",
        "contact_phone",
        "dkim_selector",
        "partner_address",
        "time_zone",
        "minimum_age",
        "notice_period_days",
        "holidays",
        "limits",
        "created_at",
        "updated_at",
    )
    return {name: row[name] for name in fields}


def _topic(row: asyncpg.Record) -> dict[str, Any]:
    return {name: row[name] for name in ("id", "slug", "name", "description", "kind", "created_at")}


def _subscriber(row: asyncpg.Record) -> dict[str, Any]:
    out = {
        name: row[name]
        for name in (
            "id",
            "email",
            "name",
            "status",
            "partner_consent",
            "age_attested_at",
            "created_at",
            "erased_at",
        )
    }
    if "state" in row:
        out["state"] = row["state"]
    if "external_id" in row:
        out["external_id"] = row["external_id"]
    return out


NO_TENANT = UnknownTenant("No such tenant.", field="tenant")
NO_SUBSCRIBER = UnknownSubscriber("No such subscriber.", field="subscriber_id")
NO_IMPORT = NotFound("No such import.", field="import_id")


# --- handlers -----------------------------------------------------------------------------------


async def me(ctx: Ctx) -> Any:
    slug = None
    if ctx.principal.tenant_id is not None:
        row = await queries().tenants.get_tenant(ctx.conn, id=ctx.principal.tenant_id)
        slug = row["slug"] if row else None
    return {
        "token_id": ctx.principal.token_id,
        "role": ctx.principal.role,
        "tenant": slug,
        "rights": sorted(api_tokens.RIGHTS[ctx.principal.role]),
    }


async def list_tenants(ctx: Ctx) -> Any:
    found = await tenants.list_tenants(ctx.conn)
    return {"items": [_tenant(r) for r in found if ctx.principal.sees(r["id"])]}


async def create_tenant(ctx: Ctx) -> Any:
    fields = dict(ctx.body)
    slug = fields.pop("slug")
    row = await tenants.create_tenant(ctx.conn, slug, **fields)
    ctx.target = ("tenant", row["id"])
    return _tenant(row)


async def get_tenant(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    return _tenant(ctx.tenant)


async def update_tenant(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    if not ctx.body:
        raise InvalidInput("Nothing to change: give at least one field.")
    row = await tenants.update_tenant(ctx.conn, ctx.tenant["slug"], ctx.body)
    ctx.target = ("tenant", row["id"])
    return _tenant(row)


async def list_topics(ctx: Ctx) -> Any:
    return {"items": [_topic(r) for r in await tenants.list_topics(ctx.conn, ctx.tenant_id)]}


async def create_topic(ctx: Ctx) -> Any:
    row = await tenants.create_topic(
        ctx.conn,
        ctx.tenant_id,
        slug=ctx.body["slug"],
        name=ctx.body["name"],
        kind=ctx.body.get("kind", "marketing"),
        description=ctx.body.get("description", ""),
    )
    ctx.target = ("topic", row["id"])
    return _topic(row)


async def get_topic(ctx: Ctx) -> Any:
    return _topic(await tenants.get_topic(ctx.conn, ctx.tenant_id, ctx.request.match_info["topic"]))


def _wording(row: Any) -> dict[str, Any]:
    return {
        "key": row["key"],
        "language": row["language"],
        "text": row["text"],
        "updated_at": row["updated_at"].isoformat(),
    }


async def list_tenant_wording(ctx: Ctx) -> Any:
    return {"items": [_wording(r) for r in await wording.list_wording(ctx.conn, ctx.tenant_id)]}


async def set_tenant_wording(ctx: Ctx) -> Any:
    info = ctx.request.match_info
    row = await wording.set_wording(
        ctx.conn, ctx.tenant_id, info["key"], info["language"], ctx.body["text"]
    )
    ctx.target = ("tenant", ctx.tenant_id)
    return _wording(row)


async def clear_tenant_wording(ctx: Ctx) -> Any:
    info = ctx.request.match_info
    cleared = await wording.clear_wording(ctx.conn, ctx.tenant_id, info["key"], info["language"])
    ctx.target = ("tenant", ctx.tenant_id)
    return {"cleared": cleared}


async def list_subscribers(ctx: Ctx) -> Any:
    q = ctx.query
    limit = q.get("limit", DEFAULT_LIMIT)
    if "email" in q:
        # By keyed hash: the same lookup the consent core uses, never a scan of addresses.
        address = parse_address(q["email"])
        key = suppression_key(tenant_hash_key(ctx.settings.hash_key, ctx.tenant_id), address)
        row = await queries().consent.get_subscriber_by_key(
            ctx.conn, tenant_id=ctx.tenant_id, email_key=key
        )
        return {"items": [_subscriber(row)] if row else [], "next_cursor": None}
    after = id_cursor(q.get("cursor"))
    api = queries().api
    if "topic" in q:
        topic = await tenants.get_topic(ctx.conn, ctx.tenant_id, q["topic"])
        found = await rows(
            api.list_topic_subscribers(
                ctx.conn,
                tenant_id=ctx.tenant_id,
                topic_id=topic["id"],
                state=q.get("state"),
                after_id=after,
                lim=limit,
            )
        )
    elif "state" in q:
        raise InvalidInput("Filtering by state needs a topic.", field="state")
    else:
        found = await rows(
            api.list_subscribers(ctx.conn, tenant_id=ctx.tenant_id, after_id=after, lim=limit)
        )
    items = [_subscriber(r) for r in found]
    return page(items, limit, str(items[-1]["id"]) if items else None)


async def _get_subscriber(ctx: Ctx) -> asyncpg.Record:
    subscriber_id = ctx.path_id("subscriber_id", NO_SUBSCRIBER)
    row = await queries().consent.get_subscriber(
        ctx.conn, tenant_id=ctx.tenant_id, id=subscriber_id
    )
    if row is None:
        raise NO_SUBSCRIBER
    return row


async def get_subscriber(ctx: Ctx) -> Any:
    row = await _get_subscriber(ctx)
    subscriptions = await rows(
        queries().consent.list_subscriptions(
            ctx.conn, tenant_id=ctx.tenant_id, subscriber_id=row["id"]
        )
    )
    return _subscriber(row) | {
        "subscriptions": [
            {
                "topic": s["slug"],
                "topic_id": s["topic_id"],
                "kind": s["kind"],
                "state": s["state"],
                "confirmed_at": s["confirmed_at"],
                "unsubscribed_at": s["unsubscribed_at"],
            }
            for s in subscriptions
        ]
    }


async def consent_history(ctx: Ctx) -> Any:
    row = await _get_subscriber(ctx)
    ctx.target = ("subscriber", row["id"])
    events = await rows(
        queries().api.consent_history(ctx.conn, tenant_id=ctx.tenant_id, subscriber_id=row["id"])
    )
    return {
        "subscriber_id": row["id"],
        "status": row["status"],
        "events": [event_view(e) for e in events],
    }


async def list_suppressions(ctx: Ctx) -> Any:
    q = ctx.query
    if "email" in q:
        found = await suppression_lists.lookup(
            ctx.conn, hash_key=ctx.settings.hash_key, tenant_id=ctx.tenant_id, email=q["email"]
        )
        return {"items": [found] if found else [], "next_cursor": None}
    limit = q.get("limit", DEFAULT_LIMIT)
    after = b""
    if "cursor" in q:
        try:
            after = bytes.fromhex(q["cursor"])
        except ValueError:
            raise InvalidInput("cursor is not valid.", field="cursor") from None
    items = await suppression_lists.page(ctx.conn, ctx.tenant_id, after=after, limit=limit)
    return page(items, limit, items[-1]["address_hash"] if items else None)


async def add_suppression(ctx: Ctx) -> Any:
    added = await suppression_lists.suppress_address(
        ctx.conn,
        hash_key=ctx.settings.hash_key,
        tenant_id=ctx.tenant_id,
        email=ctx.body["email"],
        reason=ctx.body["reason"],
        source="api",
    )
    found = await suppression_lists.lookup(
        ctx.conn, hash_key=ctx.settings.hash_key, tenant_id=ctx.tenant_id, email=ctx.body["email"]
    )
    return {"added": added, "suppression": found}


async def import_suppressions(ctx: Ctx) -> Any:
    path = await uploads.spool_body(ctx.request, ctx.settings)
    try:
        result = await suppression_lists.import_file(
            ctx.conn,
            hash_key=ctx.settings.hash_key,
            tenant_id=ctx.tenant_id,
            path=path,
            reason=ctx.query["reason"],
            actor=ctx.principal.actor,
            token_id=ctx.principal.token_id,
        )
    finally:
        uploads.discard(path)
    return result.as_dict()


async def list_imports(ctx: Ctx) -> Any:
    limit = ctx.query.get("limit", DEFAULT_LIMIT)
    before = id_cursor(ctx.query.get("cursor"), default=2**63 - 1)
    items = await imports.list_imports(ctx.conn, ctx.tenant_id, before_id=before, limit=limit)
    return page(items, limit, str(items[-1]["id"]) if items else None)


async def create_import(ctx: Ctx) -> Any:
    q = ctx.query
    topic = await tenants.get_topic(ctx.conn, ctx.tenant_id, q["topic"])
    options = imports.ImportOptions(
        lawful_basis=q["lawful_basis"],
        source=q["source"],
        age_attested=q.get("age_attested", False),
        existing_consent=q.get("existing_consent", False),
        evidence=q.get("evidence"),
    ).checked()  # refuse before reading a byte of the upload
    path = await uploads.spool_body(ctx.request, ctx.settings)
    try:
        return await imports.run_import(
            ctx.conn,
            ctx.settings,
            tenant_id=ctx.tenant_id,
            topic_id=topic["id"],
            path=path,
            options=options,
            filename=q.get("filename", "upload.csv"),
            actor=ctx.principal.actor,
            token_id=ctx.principal.token_id,
        )
    finally:
        uploads.discard(path)


async def get_import(ctx: Ctx) -> Any:
    return await imports.get_import(ctx.conn, ctx.tenant_id, ctx.path_id("import_id", NO_IMPORT))


async def import_errors(ctx: Ctx) -> Any:
    found = await imports.get_import(ctx.conn, ctx.tenant_id, ctx.path_id("import_id", NO_IMPORT))
    limit = ctx.query.get("limit", DEFAULT_LIMIT)
    after = id_cursor(ctx.query.get("cursor"))
    items = await imports.list_errors(ctx.conn, found["id"], after_line=after, limit=limit)
    return page(items, limit, str(items[-1]["line"]) if items else None)


async def correct_import(ctx: Ctx) -> Any:
    import_id = ctx.path_id("import_id", NO_IMPORT)
    return await imports.correct_lawful_basis(
        ctx.conn,
        ctx.tenant_id,
        import_id,
        ctx.body["lawful_basis"],
        actor=ctx.principal.actor,
        token_id=ctx.principal.token_id,
        source="api",
    )


async def list_audit(ctx: Ctx) -> Any:
    q = ctx.query
    tenant_id = None
    if "tenant" in q:
        tenant_id = (await _visible_tenant(ctx.conn, ctx.principal, q["tenant"]))["id"]
    limit = q.get("limit", DEFAULT_LIMIT)
    before = id_cursor(q.get("cursor"), default=2**63 - 1)
    found = await audit.entries(
        ctx.conn,
        tenant_id=tenant_id,
        before_id=before,
        limit=limit,
        account_id=q.get("person"),
    )
    items = [dict(r) for r in found]
    return page(items, limit, str(items[-1]["id"]) if items else None)


async def openapi_document(ctx: Ctx) -> Any:
    return ctx.request.app[OPENAPI_DOC]


# --- the table ----------------------------------------------------------------------------------

LIMIT = Param("limit", integer(1, MAX_LIMIT), description=f"page size, default {DEFAULT_LIMIT}")
CURSOR = Param(
    "cursor", string(64, pattern="^[0-9a-f]{1,64}$"), description="next_cursor of the last page"
)
TENANT = Param("tenant", SLUG, location="path", required=True)
TOPIC = Param("topic", SLUG, location="path", required=True)
SUBSCRIBER = Param("subscriber_id", ID, location="path", required=True)
IMPORT = Param("import_id", ID, location="path", required=True)
EMAIL_QUERY = Param("email", string(254), description="find by address (keyed hash lookup)")

TENANT_FIELDS = {
    "name": string(200, min_length=1),
    "sender_name": string(200, min_length=1),
    "sender_address": string(254, min_length=3),
    "sender_domain": string(253, min_length=1, pattern="^[a-z0-9.-]+$"),
    "postal_address": string(500, nullable=True, multiline=True),
    # At least one before a marketing campaign starts (STANDARDS 42).
    "contact_web": string(500, nullable=True),
    "contact_email": string(254, nullable=True),
    "contact_phone": string(40, nullable=True),
    "dkim_selector": string(63, nullable=True, pattern="^[a-z0-9._-]+$"),
    "partner_address": string(254, nullable=True),
    "time_zone": string(64, min_length=1, pattern="^[A-Za-z0-9_+/-]+$"),
    "minimum_age": integer(13, 21),
    "notice_period_days": integer(0, 365),
    "holidays": {
        "type": "array",
        "maxItems": 366,
        "items": string(10, pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    },
    "limits": ANY_OBJECT,
    # Subscriber pages and mail of people with no language of their own (issue 19).
    "default_language": string(enum=LANGUAGES),
}
TOPIC_BODY = obj(
    {
        "slug": SLUG,
        "name": string(200, min_length=1),
        "kind": string(enum=tenants.TOPIC_KINDS),
        "description": string(2000, multiline=True),
    },
    required=("slug", "name"),
)
# Checked by mailer.wording, whose one-line answers name a legally required label or an
# unshipped language; the patterns only keep the path well-formed.
WORDING_KEY = Param("key", string(40, pattern="^[a-z_]+$"), location="path", required=True)
WORDING_LANGUAGE = Param(
    "language", string(2, pattern="^[a-z]{2}$"), location="path", required=True
)
REASONS = tuple(suppression_lists.REASON_SCOPES)
LIST = {"type": "object", "properties": {"items": {"type": "array"}}}

CORE_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET", "/openapi.json", "openapi", "This document", openapi_document, None, public=True
    ),
    Endpoint("GET", "/me", "me", "The calling token: role, tenant, rights", me, None),
    Endpoint(
        "GET",
        "/tenants",
        "list_tenants",
        "Tenants the token sees",
        list_tenants,
        "tenants.read",
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants",
        "create_tenant",
        "Create a tenant",
        create_tenant,
        "tenants.write",
        body=obj({"slug": SLUG, **TENANT_FIELDS}, required=("slug", "name", "sender_address")),
        status=201,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}",
        "get_tenant",
        "One tenant",
        get_tenant,
        "tenants.read",
        params=(TENANT,),
    ),
    Endpoint(
        "PATCH",
        "/tenants/{tenant}",
        "update_tenant",
        "Change a tenant's fields",
        update_tenant,
        "tenants.write",
        params=(TENANT,),
        body=obj(TENANT_FIELDS),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/topics",
        "list_topics",
        "A tenant's topics",
        list_topics,
        "topics.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/topics",
        "create_topic",
        "Create a topic",
        create_topic,
        "topics.write",
        params=(TENANT,),
        body=TOPIC_BODY,
        status=201,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/wording",
        "list_tenant_wording",
        "The tenant's own wording of subscriber-facing strings, per language",
        list_tenant_wording,
        "tenants.read",
        params=(TENANT,),
        response=LIST,
    ),
    Endpoint(
        "PUT",
        "/tenants/{tenant}/wording/{key}/{language}",
        "set_tenant_wording",
        "Set one string (greeting, signup_intro, footer_reason) in one language: plain text",
        set_tenant_wording,
        "campaigns.write",
        params=(TENANT, WORDING_KEY, WORDING_LANGUAGE),
        body=obj({"text": string(wording.MAX_TEXT, min_length=1)}, required=("text",)),
    ),
    Endpoint(
        "DELETE",
        "/tenants/{tenant}/wording/{key}/{language}",
        "clear_tenant_wording",
        "Back to Optout's own words for one string in one language",
        clear_tenant_wording,
        "campaigns.write",
        params=(TENANT, WORDING_KEY, WORDING_LANGUAGE),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/topics/{topic}",
        "get_topic",
        "One topic",
        get_topic,
        "topics.read",
        params=(TENANT, TOPIC),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/subscribers",
        "list_subscribers",
        "Subscribers: by address, or by topic and state, a page at a time",
        list_subscribers,
        "subscribers.read",
        params=(
            TENANT,
            EMAIL_QUERY,
            Param("topic", SLUG, description="only this topic's subscribers"),
            Param("state", string(enum=("pending", "confirmed", "unsubscribed"))),
            CURSOR,
            LIMIT,
        ),
        response=LIST,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/subscribers/{subscriber_id}",
        "get_subscriber",
        "One subscriber and their subscriptions",
        get_subscriber,
        "subscribers.read",
        params=(TENANT, SUBSCRIBER),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/subscribers/{subscriber_id}/consent",
        "consent_history",
        "The consent proof of one subscriber: every ledger row with its evidence",
        consent_history,
        "consent.read",
        params=(TENANT, SUBSCRIBER),
        audit_read=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/suppressions",
        "list_suppressions",
        "Suppressions as keyed hashes and reasons, or the one of an address",
        list_suppressions,
        "suppressions.read",
        params=(TENANT, EMAIL_QUERY, CURSOR, LIMIT),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/suppressions",
        "add_suppression",
        "Suppress one address",
        add_suppression,
        "suppressions.write",
        params=(TENANT,),
        body=obj(
            {"email": string(254, min_length=1), "reason": string(enum=REASONS)},
            required=("email", "reason"),
        ),
        status=201,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/suppressions/import",
        "import_suppressions",
        "Suppress every address of a CSV file (email[,reason])",
        import_suppressions,
        "suppressions.write",
        params=(TENANT, Param("reason", string(enum=REASONS), required=True)),
        csv_body=True,
        own_transaction=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/imports",
        "list_imports",
        "Imports, newest first",
        list_imports,
        "imports.read",
        params=(TENANT, CURSOR, LIMIT),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/imports",
        "create_import",
        "Import subscribers from a CSV body (email[,name]); the same file again resumes",
        create_import,
        "imports.write",
        params=(
            TENANT,
            Param("topic", SLUG, required=True),
            Param("lawful_basis", string(enum=imports.LAWFUL_BASES), required=True),
            Param("source", string(200, min_length=1), required=True),
            Param("age_attested", BOOLEAN, description="everyone is above the minimum age"),
            Param("existing_consent", BOOLEAN, description="no confirmation mail; needs evidence"),
            Param("evidence", string(2000)),
            Param("filename", string(200)),
        ),
        csv_body=True,
        status=201,
        own_transaction=True,
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/imports/{import_id}",
        "get_import",
        "One import",
        get_import,
        "imports.read",
        params=(TENANT, IMPORT),
    ),
    Endpoint(
        "GET",
        "/tenants/{tenant}/imports/{import_id}/errors",
        "import_errors",
        "An import's bad rows: line and reason",
        import_errors,
        "imports.read",
        params=(TENANT, IMPORT, CURSOR, LIMIT),
        response=LIST,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/imports/{import_id}/correct",
        "correct_import",
        "Correct an import's lawful basis: one ledger row per person it subscribed, naming "
        "the old and the new basis (the old rows stay)",
        correct_import,
        "imports.write",
        params=(TENANT, IMPORT),
        body=obj({"lawful_basis": string(enum=imports.LAWFUL_BASES)}, required=("lawful_basis",)),
        domain_audit=True,
    ),
    Endpoint(
        "GET",
        "/audit",
        "list_audit",
        "The audit log, newest first; each entry names the person (the staff account that "
        "acted, or the creator of the API token used; null for tokens from before accounts)",
        list_audit,
        "audit.read",
        params=(
            Param("tenant", SLUG),
            Param("person", ID, description="only what this staff account did"),
            CURSOR,
            LIMIT,
        ),
        response=LIST,
    ),
)


# Campaigns, policy versions and data requests (thin over mailer.campaigns/policy/privacy);
# the tenants' own email templates (mailer.sending.tenant_templates); staff actions on one
# person (mailer.consent.people).
ENDPOINTS = (
    CORE_ENDPOINTS
    + api_campaigns.ENDPOINTS
    + api_requests.ENDPOINTS
    + api_templates.ENDPOINTS
    + api_subscribers.ENDPOINTS
    + api_staff.ENDPOINTS
    + api_events.ENDPOINTS
    + api_subprocessors.ENDPOINTS
)


# --- plumbing -----------------------------------------------------------------------------------


async def _visible_tenant(conn: asyncpg.Connection, principal: Principal, slug: str) -> Any:
    if not re.fullmatch(SLUG_PATTERN, slug):
        raise NO_TENANT
    row = await queries().tenants.get_tenant_by_slug(conn, slug=slug)
    if row is None or not principal.sees(row["id"]):
        raise NO_TENANT
    return row


async def _json_body(request: web.Request, endpoint: Endpoint) -> Any:
    assert endpoint.body is not None
    if endpoint.max_body is not None:
        request = request.clone(client_max_size=endpoint.max_body)
    raw = await request.read()
    if not raw.strip() and not endpoint.body.get("required"):
        return {}  # every field optional: no body means none of them
    try:
        value = json_input.loads(raw.decode("utf-8")) if raw else None
    except ValueError as exc:  # not JSON, not UTF-8, or nested too deeply
        raise InvalidInput(f"The body is not JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise InvalidInput("The body must be a JSON object.")
    return check(value, endpoint.body, "body")


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """The last net under the input checks: a value Postgres refuses is the client's fault."""
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise Conflict("That exists already.") from None
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        name = getattr(exc, "constraint_name", None) or type(exc).__name__
        raise InvalidInput(f"A value is not accepted ({name}).") from None


def _view(endpoint: Endpoint) -> Handler:
    async def view(request: web.Request) -> web.StreamResponse:
        if endpoint.public:
            return web.json_response(request.app[OPENAPI_DOC])
        settings = request.config_dict[SETTINGS]
        async with request.config_dict[POOL].acquire() as conn:
            principal = await api_tokens.authenticate(conn, request.headers.get("Authorization"))
            tenant = None
            if "tenant" in endpoint.path_params:
                tenant = await _visible_tenant(conn, principal, request.match_info["tenant"])
            if endpoint.right is not None and not principal.may(endpoint.right):
                raise Forbidden(f"A {principal.role} token may not do this ({endpoint.right}).")
            query = check_query(endpoint.params, request.query)
            body = await _json_body(request, endpoint) if endpoint.body is not None else None
            ctx = Ctx(request, conn, principal, settings, query, body, tenant)
            with _database_errors():
                if endpoint.own_transaction or (
                    endpoint.method == "GET" and not endpoint.audit_read
                ):
                    result = await endpoint.handler(ctx)
                else:
                    async with conn.transaction():
                        result = await endpoint.handler(ctx)
                        if not endpoint.domain_audit:
                            await _audit(ctx, endpoint)
        return web.json_response(result, status=endpoint.status, dumps=_dumps)

    return view


async def _audit(ctx: Ctx, endpoint: Endpoint) -> None:
    target_type, target_id = ctx.target or (None, None)
    tenant_id = ctx.tenant["id"] if ctx.tenant is not None else None
    if tenant_id is None and target_type == "tenant":
        tenant_id = target_id  # a new tenant's creation is filed under that tenant
    await audit.record(
        ctx.conn,
        actor=ctx.principal.actor,
        token_id=ctx.principal.token_id,
        tenant_id=tenant_id,
        action=endpoint.name,
        target_type=target_type,
        target_id=target_id,
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the API is JSON, aiohttp's own (404 route, 405, 413) included."""
    try:
        return await handler(request)
    except OptoutError as error:
        response = error_response(request, error)
        if isinstance(error, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="optout"'
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {"error": {"code": f"http_{exc.status}", "message": exc.reason, "field": None}}
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        return web.json_response(body, status=exc.status, headers=headers)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("api request failed: %s %s", request.method, request.path)
        body = {"error": {"code": "internal", "message": "Internal error.", "field": None}}
        return web.json_response(body, status=500)


def build_api() -> web.Application:
    api = web.Application(middlewares=[json_errors])
    api[OPENAPI_DOC] = openapi.document(PREFIX, ENDPOINTS)
    for endpoint in ENDPOINTS:
        api.router.add_route(endpoint.method, endpoint.path, _view(endpoint), name=endpoint.name)
    return api


def add_routes(app: web.Application) -> None:
    """Mount the API at /api/v1 (its own middlewares stay off the public pages)."""
    app.add_subapp(PREFIX, build_api())
    app.on_startup.append(_drop_stale_uploads)


# An upload is deleted when its import finishes; one older than this at start was left by a
# process that died mid-import (its client must send it again), and it holds addresses.
STALE_UPLOAD_SECONDS = 3600.0


async def _drop_stale_uploads(app: web.Application) -> None:
    drop_stale_uploads(app[SETTINGS].data_dir)


def drop_stale_uploads(data_dir: Path, *, now: float | None = None) -> int:
    """Delete upload files left by a crash (older than STALE_UPLOAD_SECONDS); how many."""
    folder = data_dir / "uploads"
    if not folder.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - STALE_UPLOAD_SECONDS
    dropped = 0
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                dropped += 1
    if dropped:
        log.warning("dropped %d upload(s) left by an import that never finished", dropped)
    return dropped
