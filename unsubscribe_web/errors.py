"""Map domain errors to HTTP replies in one place: an HTML page, or JSON for machine routes."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from mailer.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    OptoutError,
    Unauthorized,
)
from unsubscribe_web.keys import PAGES

log = logging.getLogger(__name__)

# Routes whose clients are programs: they get {"error": {"code", "message", "field"}}.
JSON_PREFIXES = ("/api/", "/hooks/")


def status_for(error: OptoutError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, InvalidInput):
        return 400
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, Unauthorized):
        return 401
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, DatabaseUnavailable):
        return 503
    return 500


def error_response(request: web.Request, error: OptoutError) -> web.Response:
    status = status_for(error)
    headers = {"Retry-After": "30"} if status == 503 else {}
    if request.path.startswith(JSON_PREFIXES):
        body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
        return web.json_response(body, status=status, headers=headers)
    page = (
        request.app[PAGES].get_template("error.html").render(status=status, message=error.message)
    )
    return web.Response(
        text=page, status=status, content_type="text/html", charset="utf-8", headers=headers
    )


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OptoutError as error:
        if status_for(error) >= 500:
            log.warning("request failed: %s %s", error.code, error.message)
        return error_response(request, error)
