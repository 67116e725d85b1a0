"""Helpers the public page handlers share: render a template, reach Postgres (an outage becomes
DatabaseUnavailable, answered 503), read the person's evidence, build absolute links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from mailer.consent.writer import Evidence
from mailer.db import UNAVAILABLE_ERRORS
from mailer.errors import DatabaseUnavailable
from unsubscribe_web.keys import PAGES, POOL, SETTINGS
from unsubscribe_web.security import client_ip

# How long a request waits for a pooled connection before the outage path takes over.
ACQUIRE_TIMEOUT = 3.0
_UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, TimeoutError)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    page = request.app[PAGES].get_template(template).render(**context)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


@contextlib.asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; any sign that Postgres is away raises DatabaseUnavailable."""
    try:
        async with asyncio.timeout(ACQUIRE_TIMEOUT):
            conn = await request.app[POOL].acquire()
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable() from exc
    try:
        yield conn
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable() from exc
    finally:
        await request.app[POOL].release(conn)


def evidence(request: web.Request, **fields: Any) -> Evidence:
    """IP and user agent of the request, with whatever the handler adds."""
    return Evidence(
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:1000] or None,
        **fields,
    )


def absolute(request: web.Request, route: str, **parts: str) -> str:
    """BASE_URL + the named route: links that go into mail."""
    path = request.app.router[route].url_for(**parts)
    return request.app[SETTINGS].base_url + str(path)
