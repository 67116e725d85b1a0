"""The public face's route table: one-click and landing page, preference centre, sign-up and
confirmation, health and metrics, and the stylesheet the pages link to."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from unsubscribe_web import health, oneclick, preferences, subscribe
from unsubscribe_web.static import add_stylesheet

STYLESHEET = Path(__file__).resolve().parent.parent / "templates" / "web" / "static" / "site.css"


def add_routes(app: web.Application) -> None:
    oneclick.add_routes(app)
    preferences.add_routes(app)
    subscribe.add_routes(app)
    health.add_routes(app)
    add_stylesheet(app, "/static/site.css", STYLESHEET, "stylesheet")
