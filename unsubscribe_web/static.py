"""Stylesheets served from memory: CSP allows styles from 'self' only, never inline."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def add_stylesheet(app: web.Application, route: str, file: Path, name: str) -> None:
    css = file.read_bytes()

    async def stylesheet(request: web.Request) -> web.Response:
        return web.Response(
            body=css,
            content_type="text/css",
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=3600", "X-Robots-Tag": "noindex"},
        )

    app.router.add_get(route, stylesheet, name=name)
