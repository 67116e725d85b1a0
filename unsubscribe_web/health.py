"""``/healthz`` (is Postgres reachable, how deep is the spool) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from mailer.db import UNAVAILABLE_ERRORS, queries
from mailer.inbound.unparsed import count_unparsed
from unsubscribe_web.keys import METRICS, POOL, SPOOL

PING_TIMEOUT = 2.0
_UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, TimeoutError)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/metrics", metrics, name="metrics")


async def healthz(request: web.Request) -> web.Response:
    """200 when Postgres answers, 503 when not; the spool depth either way."""
    try:
        async with asyncio.timeout(PING_TIMEOUT), request.app[POOL].acquire() as conn:
            await queries().web.ping(conn)
        database = "ok"
    except _UNAVAILABLE:
        database = "unavailable"
    body = {"database": database, "spool_depth": request.app[SPOOL].depth}
    return web.json_response(body, status=200 if database == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    registry.spool_depth = request.app[SPOOL].depth
    try:
        async with asyncio.timeout(PING_TIMEOUT), request.app[POOL].acquire() as conn:
            registry.unparsed_bounces = await count_unparsed(conn)
    except _UNAVAILABLE:
        registry.unparsed_bounces = None  # unknown: left out rather than shown as 0
    return web.Response(
        text=registry.render(), content_type="text/plain", headers={"Cache-Control": "no-store"}
    )
