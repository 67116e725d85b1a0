"""Helpers the public page handlers share: render a template in the reader's language, reach
Postgres (an outage becomes DatabaseUnavailable, answered 503), read the person's evidence,
build absolute links."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web
from yarl import URL

from mailer.consent.writer import Evidence
from mailer.db import UNAVAILABLE_ERRORS
from mailer.errors import DatabaseUnavailable
from mailer.i18n import supported
from unsubscribe_web.keys import POOL, SETTINGS
from unsubscribe_web.language import (
    LANGUAGE,
    LANGUAGE_PARAMETER,
    environment,
    language_links,
    page_language,
    use_language,
)
from unsubscribe_web.security import client_ip

# How long a request waits for a pooled connection before the outage path takes over.
ACQUIRE_TIMEOUT = 3.0
__all__ = [
    "LANGUAGE",
    "LANGUAGE_PARAMETER",
    "absolute",
    "connection",
    "environment",
    "evidence",
    "form_action",
    "keep_language",
    "page_language",
    "pool_connection",
    "render",
    "use_language",
]
_UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, TimeoutError)


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    language = page_language(request)
    page = (
        environment(request, language)
        .get_template(template)
        .render(languages=language_links(request, language), **context)
    )
    return web.Response(
        text=page,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Language": language},
    )


def keep_language(request: web.Request, url: URL) -> str:
    """``url`` with this request's ``?lang=`` (when it names a shipped language), so the next
    page or a form's answer comes in the language the reader picked."""
    language = supported(request.query.get(LANGUAGE_PARAMETER))
    return str(url.update_query({LANGUAGE_PARAMETER: language}) if language else url)


def form_action(request: web.Request) -> str:
    """The URL a page's form posts to: this page's own, ``?lang=`` kept."""
    return keep_language(request, URL(request.path))


@contextlib.asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; any sign that Postgres is away raises DatabaseUnavailable."""
    async with pool_connection(request.app[POOL]) as conn:
        yield conn


@contextlib.asynccontextmanager
async def pool_connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """``connection`` for work that is not one request's (the one-click batches)."""
    try:
        async with asyncio.timeout(ACQUIRE_TIMEOUT):
            conn = await pool.acquire()
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable() from exc
    try:
        yield conn
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable() from exc
    finally:
        await pool.release(conn)


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
