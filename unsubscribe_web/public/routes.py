"""The public face's route table: one-click and landing page, preference centre, sign-up and
confirmation, health and metrics, and the stylesheet the pages link to."""

from __future__ import annotations

from aiohttp import web

from mailer.resources import STATIC_DIR
from unsubscribe_web import health
from unsubscribe_web.public import claims, oneclick, preferences, subscribe
from unsubscribe_web.static import add_stylesheet

STYLESHEET = STATIC_DIR / "site.css"


def add_routes(app: web.Application) -> None:
    oneclick.add_routes(app)
    preferences.add_routes(app)
    subscribe.add_routes(app)
    claims.add_routes(app)
    health.add_routes(app)
    add_stylesheet(app, "/static/site.css", STYLESHEET, "stylesheet")
