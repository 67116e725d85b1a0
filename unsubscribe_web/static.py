"""Stylesheets and the workspace's script, served from memory: CSP allows styles and script
from 'self' only, never inline."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


def add_stylesheet(app: web.Application, route: str, file: Path, name: str) -> None:
    add_static(app, route, file, name, "text/css")


def add_static(app: web.Application, route: str, file: Path, name: str, content_type: str) -> None:
    content = file.read_bytes()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=content,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=3600", "X-Robots-Tag": "noindex"},
        )

    app.router.add_get(route, serve, name=name)
