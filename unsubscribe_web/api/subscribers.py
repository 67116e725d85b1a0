"""Admin API routes of the staff actions on one person (issue 17): unsubscribe from a topic or
from all marketing, suppress. Thin over mailer.consent.people, which the workspace's person
page calls too; each ledger row names the calling token as its actor, and the API layer
audits the call in the same transaction."""

from __future__ import annotations

from typing import Any, get_args

from mailer.consent import people, writer
from mailer.errors import InvalidInput
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import BOOLEAN, ID, SLUG, Endpoint, Param, obj, string

TENANT = Param("tenant", SLUG, location="path", required=True)
SUBSCRIBER = Param("subscriber_id", ID, location="path", required=True)
SCOPES: tuple[str, ...] = get_args(writer.Scope)


async def unsubscribe_subscriber(ctx: Ctx) -> Any:
    subscriber_id = ctx.path_id("subscriber_id", people.NO_PERSON)
    topic = ctx.body.get("topic")
    everything = ctx.body.get("all_marketing", False)
    if (topic is None) == (not everything):
        raise InvalidInput("Give either a topic or all_marketing: true.", field="topic")
    changed = await people.unsubscribe(
        ctx.conn, ctx.tenant_id, subscriber_id, topic, actor=ctx.principal.actor, source="api"
    )
    ctx.target = ("subscriber", subscriber_id)
    return {"subscriber_id": subscriber_id, "changed": changed}


async def suppress_subscriber(ctx: Ctx) -> Any:
    subscriber_id = ctx.path_id("subscriber_id", people.NO_PERSON)
    changed = await people.suppress(
        ctx.conn,
        ctx.tenant_id,
        subscriber_id,
        ctx.body["scope"],
        actor=ctx.principal.actor,
        source="api",
    )
    ctx.target = ("subscriber", subscriber_id)
    return {"subscriber_id": subscriber_id, "changed": changed}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/tenants/{tenant}/subscribers/{subscriber_id}/unsubscribe",
        "unsubscribe_subscriber",
        "Unsubscribe a person from one topic, or from all marketing (which also suppresses "
        "marketing to the address); one ledger row naming the token, none when already done",
        unsubscribe_subscriber,
        "subscribers.write",
        params=(TENANT, SUBSCRIBER),
        body=obj({"topic": SLUG, "all_marketing": BOOLEAN}),
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/subscribers/{subscriber_id}/suppress",
        "suppress_subscriber",
        "Suppress a person's address: marketing (no marketing mail) or all (no mail at all)",
        suppress_subscriber,
        "subscribers.write",
        params=(TENANT, SUBSCRIBER),
        body=obj({"scope": string(enum=SCOPES)}, required=("scope",)),
    ),
)
