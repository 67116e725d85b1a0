"""The aiohttp application factory: settings, the pool, middlewares and the route table.

Nothing runs at import time. Each feature module exposes ``add_routes(app)``; this module
is the one route table that calls them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from mailer.config import Settings
from mailer.db import create_pool
from mailer.errors import ConfigError
from unsubscribe_web import errors
from unsubscribe_web.keys import KEYRING, PAGES, POOL, SETTINGS

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"
MAX_BODY_BYTES = 64 * 1024


def page_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def create_app(settings: Settings) -> web.Application:
    """The whole web face. ``settings.database_url`` must be resolved (the CLI starts the
    embedded server first and passes its DSN)."""
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: the web app needs a resolved database URL")
    app = web.Application(middlewares=[errors.domain_errors], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[KEYRING] = settings.keyring()
    app[PAGES] = page_environment()
    app.cleanup_ctx.append(_pool)
    # Feature modules add their routes here, one line each (e.g. public.add_routes(app)).
    return app


async def _pool(app: web.Application) -> AsyncIterator[None]:
    dsn = app[SETTINGS].database_url
    assert dsn is not None
    app[POOL] = await create_pool(dsn)
    yield
    await app[POOL].close()
