"""Typed application keys: the one place that says what lives on the aiohttp app."""

from __future__ import annotations

import asyncpg
import jinja2
from aiohttp import web

from mailer.config import Settings
from mailer.tokens import Keyring

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
KEYRING = web.AppKey("keyring", Keyring)
PAGES = web.AppKey("pages", jinja2.Environment)
