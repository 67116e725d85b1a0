"""The public face's route table: one-click and landing page, preference centre, sign-up and
confirmation, health and metrics, and the stylesheet the pages link to."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from unsubscribe_web import health, oneclick, preferences, subscribe

STYLESHEET = Path(__file__).resolve().parent.parent / "templates" / "web" / "static" / "site.css"


def add_routes(app: web.Application) -> None:
    oneclick.add_routes(app)
    preferences.add_routes(app)
    subscribe.add_routes(app)
    health.add_routes(app)
    css = STYLESHEET.read_bytes()

    async def stylesheet(request: web.Request) -> web.Response:
        # Served from memory: CSP allows styles from 'self' only, never inline.
        return web.Response(
            body=css,
            content_type="text/css",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=3600", "X-Robots-Tag": "noindex"},
        )

    app.router.add_get("/static/site.css", stylesheet, name="stylesheet")
