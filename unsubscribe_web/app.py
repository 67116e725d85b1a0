"""The aiohttp application factory: settings, the pool, middlewares and the route table.

Nothing runs at import time. Each feature module exposes ``add_routes(app)``; this module
is the one route table that calls them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import jinja2
from aiohttp import web

from mailer.config import Settings
from mailer.consent.link_batch import OneClickBatcher
from mailer.db import create_pool
from mailer.errors import ConfigError
from mailer.i18n import SOURCE_LANGUAGE
from mailer.limits import RateLimits
from mailer.passwords import Hasher
from mailer.resources import WEB_TEMPLATES_DIR
from mailer.signin_limits import SigninLimits
from mailer.staff_oidc import Provider
from mailer.totp import SecretBox
from unsubscribe_web import dev_outbox, errors, limits, security
from unsubscribe_web.api import admin as api
from unsubscribe_web.api import hooks
from unsubscribe_web.dashboard import accounts as staff_signin
from unsubscribe_web.dashboard import campaigns as workspace_campaigns
from unsubscribe_web.dashboard import email_templates as workspace_templates
from unsubscribe_web.dashboard import imports as workspace_imports
from unsubscribe_web.dashboard import my_account, single_sign_on
from unsubscribe_web.dashboard import policy_pages as workspace_policy
from unsubscribe_web.dashboard import requests as workspace_requests
from unsubscribe_web.dashboard import staff_pages as workspace_staff
from unsubscribe_web.dashboard import subprocessors as workspace_subprocessors
from unsubscribe_web.dashboard import subscribers as workspace_subscribers
from unsubscribe_web.dashboard import views as dashboard
from unsubscribe_web.dashboard import webhooks as workspace_webhooks
from unsubscribe_web.dashboard import wording as workspace_wording
from unsubscribe_web.forms import CsrfTokens
from unsubscribe_web.keys import (
    CSRF,
    HASHER,
    KEYRING,
    LIMITS,
    LOCALIZED_PAGES,
    METRICS,
    OIDC_PROVIDER,
    ONE_CLICK_BATCHER,
    ONE_CLICK_PAGES,
    PAGES,
    POOL,
    SECRET_BOX,
    SETTINGS,
    SIGNIN_LIMITS,
    SPOOL,
)
from unsubscribe_web.language import localized_environments
from unsubscribe_web.metrics import Metrics
from unsubscribe_web.pages import pool_connection
from unsubscribe_web.public import policy_pages, self_service
from unsubscribe_web.public import routes as public
from unsubscribe_web.spool import Spool, replay_forever

log = logging.getLogger(__name__)

TEMPLATES = WEB_TEMPLATES_DIR
MAX_BODY_BYTES = 64 * 1024


def page_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        # Templates do not change while the process runs: no stat() of them per request.
        auto_reload=False,
        # Subscriber pages are translated (issue 19); this environment speaks the source
        # language, unsubscribe_web.pages makes one per shipped language from it.
        extensions=["jinja2.ext.i18n"],
    )
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = SOURCE_LANGUAGE
    return env


def create_app(settings: Settings, *, outbox_dir: Path | None = None) -> web.Application:
    """The whole web face. ``settings.database_url`` must be resolved (the CLI starts the
    embedded server first and passes its DSN). ``outbox_dir``, the demo's SMTP catcher
    folder, mounts the dev outbox; production never passes it."""
    if settings.database_url is None:
        raise ConfigError("DATABASE_URL: the web app needs a resolved database URL")
    app = web.Application(
        middlewares=[security.guard, limits.body_deadline, errors.domain_errors],
        client_max_size=MAX_BODY_BYTES,
    )
    app[SETTINGS] = settings
    app[KEYRING] = settings.keyring()
    app[PAGES] = page_environment()
    app[LOCALIZED_PAGES] = localized_environments(page_environment)
    app[METRICS] = Metrics()
    app[SPOOL] = Spool(settings.data_dir)
    app[CSRF] = CsrfTokens(settings.secret_keys)
    app[LIMITS] = RateLimits(settings.hash_key)
    app[HASHER] = Hasher(settings.staff.password_hashes)
    app[SIGNIN_LIMITS] = SigninLimits(settings.hash_key)
    app[SECRET_BOX] = SecretBox(settings.hash_key)
    if settings.staff.oidc is not None:
        app[OIDC_PROVIDER] = Provider(settings.staff.oidc)
    app.on_cleanup.append(_close_hasher)
    app[ONE_CLICK_PAGES] = {}
    app.cleanup_ctx.append(_pool)
    app.cleanup_ctx.append(_spool_replay)
    # Feature modules add their routes here, one line each.
    public.add_routes(app)
    policy_pages.add_routes(app)
    self_service.add_routes(app)
    api.add_routes(app)
    hooks.add_routes(app)
    dashboard.add_routes(app)
    staff_signin.add_routes(app)
    single_sign_on.add_routes(app)
    my_account.add_routes(app)
    workspace_staff.add_routes(app)
    workspace_campaigns.add_routes(app)
    workspace_templates.add_routes(app)
    workspace_subscribers.add_routes(app)
    workspace_imports.add_routes(app)
    workspace_requests.add_routes(app)
    workspace_wording.add_routes(app)
    workspace_policy.add_routes(app)
    workspace_subprocessors.add_routes(app)
    workspace_webhooks.add_routes(app)
    if outbox_dir is not None:
        dev_outbox.add_routes(app, outbox_dir)
    return app


async def _close_hasher(app: web.Application) -> None:
    app[HASHER].close()


async def _pool(app: web.Application) -> AsyncIterator[None]:
    dsn = app[SETTINGS].database_url
    assert dsn is not None
    # min_size=0: the app starts even while Postgres is away, so opt-outs can be spooled.
    app[POOL] = await create_pool(dsn, min_size=0, stateless=True)
    pool = app[POOL]
    app[ONE_CLICK_BATCHER] = OneClickBatcher(lambda: pool_connection(pool))
    yield
    await app[ONE_CLICK_BATCHER].close()
    try:
        await asyncio.wait_for(app[POOL].close(), 5)
    except TimeoutError:
        app[POOL].terminate()


async def _spool_replay(app: web.Application) -> AsyncIterator[None]:
    """Replay opt-outs spooled during an outage: at start, then as soon as Postgres answers."""
    spool = app[SPOOL]
    spool.open()
    if spool.depth:
        log.warning("spool holds %d opt-outs from an outage; replaying", spool.depth)
    task = asyncio.create_task(replay_forever(spool, app[POOL]), name="spool-replay")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
