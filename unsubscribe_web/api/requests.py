"""Admin API routes of the request queue beyond create/extend/complete: a client's removal
list as CSV, attaching a partner withdrawal to a subscriber, and rejecting a request with a
reason mailed to the requester (thin over mailer.rights.queue)."""

from __future__ import annotations

from typing import Any

from mailer.rights import queue
from unsubscribe_web import uploads
from unsubscribe_web.api.campaigns import REQUEST, TENANT, _now, _request, _request_id
from unsubscribe_web.api.context import Ctx
from unsubscribe_web.api.spec import ID, Endpoint, obj, string


async def upload_client_removal(ctx: Ctx) -> Any:
    """A client's removal request carrying its CSV list (header ``email``), streamed to disk
    and kept as keyed hashes only; due in 30 business days."""
    assert ctx.tenant is not None
    path = await uploads.spool_body(ctx.request, ctx.settings)
    try:
        received = await queue.receive_client_list(
            ctx.conn,
            ctx.settings,
            tenant=ctx.tenant,
            path=path,
            by=ctx.principal.actor,
            source="api",
            now=_now(),
            token_id=ctx.principal.token_id,
        )
    finally:
        uploads.discard(path)
    return _request(received.request)


async def attach_request(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    row = await queue.attach(
        ctx.conn,
        ctx.settings,
        tenant=ctx.tenant,
        request_id=await _request_id(ctx),
        email=ctx.body.get("email"),
        subscriber_id=ctx.body.get("subscriber_id"),
        by=ctx.principal.actor,
        token_id=ctx.principal.token_id,
    )
    return _request(row)


async def reject_request(ctx: Ctx) -> Any:
    assert ctx.tenant is not None
    row, mailed = await queue.reject(
        ctx.conn,
        tenant=ctx.tenant,
        request_id=await _request_id(ctx),
        reason=ctx.body["reason"],
        by=ctx.principal.actor,
        now=_now(),
        token_id=ctx.principal.token_id,
    )
    return _request(row) | {"mailed": mailed}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/tenants/{tenant}/client-removals",
        "upload_client_removal",
        "A client's removal request: a CSV body with an 'email' column, each address kept "
        "as a keyed hash; due in 30 business days",
        upload_client_removal,
        "requests.create",
        params=(TENANT,),
        csv_body=True,
        status=201,
        own_transaction=True,  # one transaction in mailer.rights.queue, audited there
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/requests/{request_id}/attach",
        "attach_request",
        "Attach a partner withdrawal mail could not match to a subscriber: exact address or id",
        attach_request,
        "requests.write",
        params=(TENANT, REQUEST),
        body=obj({"email": string(254, min_length=1), "subscriber_id": ID}),
        domain_audit=True,
    ),
    Endpoint(
        "POST",
        "/tenants/{tenant}/requests/{request_id}/reject",
        "reject_request",
        "Close a request without acting on it: the reason is mailed to the requester with "
        "their right to complain to a supervisory authority",
        reject_request,
        "requests.write",
        params=(TENANT, REQUEST),
        body=obj({"reason": string(queue.MAX_REASON, min_length=1)}, required=("reason",)),
        domain_audit=True,
    ),
)
