"""Typed application keys: the one place that says what lives on the aiohttp app."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import jinja2
from aiohttp import web

from mailer.config import Settings
from mailer.consent.link_batch import OneClickBatcher
from mailer.limits import RateLimits
from mailer.passwords import Hasher
from mailer.signin_limits import SigninLimits
from mailer.staff_oidc import Provider
from mailer.tokens import Keyring
from mailer.totp import SecretBox
from unsubscribe_web.forms import CsrfTokens
from unsubscribe_web.metrics import Metrics
from unsubscribe_web.spool import Spool

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
KEYRING = web.AppKey("keyring", Keyring)
PAGES = web.AppKey("pages", jinja2.Environment)

# The public pages (issue 4): metrics, the opt-out spool, CSRF tokens, sign-up rate limits.
METRICS = web.AppKey("metrics", Metrics)
SPOOL = web.AppKey("spool", Spool)
CSRF = web.AppKey("csrf", CsrfTokens)
# Rate limits shared by every web process, counted in Postgres (mailer.limits).
LIMITS = web.AppKey("limits", RateLimits)
# Concurrent one-click POSTs, written in micro-batches (mailer.consent.link_batch).
ONE_CLICK_BATCHER = web.AppKey("one_click_batcher", OneClickBatcher)
# Rendered one-click answers, keyed by sender, topic and language.
ONE_CLICK_PAGES = web.AppKey("one_click_pages", dict[tuple[str, str, str], str])
# The subscriber pages' environments, one per shipped language (issue 19).
LOCALIZED_PAGES = web.AppKey("localized_pages", dict[str, jinja2.Environment])
# Imports started from the workspace run on after the upload's request (issue 17): held here
# so none is garbage-collected mid-run, and cancelled (resumable) at shutdown.
IMPORT_TASKS = web.AppKey("import_tasks", set[asyncio.Task[Any]])
# Staff passwords' Argon2 hashing, in a small thread pool (mailer.passwords).
HASHER = web.AppKey("hasher", Hasher)
# Growing delays after failed staff sign-ins, per account and IP (mailer.signin_limits).
SIGNIN_LIMITS = web.AppKey("signin_limits", SigninLimits)
# TOTP secrets' encryption (mailer.totp).
SECRET_BOX = web.AppKey("secret_box", SecretBox)
# The single sign-on provider's discovery and keys (cached); absent without OPTOUT_OIDC_ISSUER.
OIDC_PROVIDER = web.AppKey("oidc_provider", Provider)
