"""Limits that hold against slow, stalled and vanishing clients: a time for the request
headers (aiohttp closes a connection that has not sent a whole request within its keep-alive
time, so that time is the header timeout), a time for the body, a minimum rate for uploads,
and a client that drops mid-body logged as a client abort (no 500, no traceback)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import ClientConnectionResetError, ClientPayloadError, web
from aiohttp.typedefs import Handler

from mailer.config import Settings
from unsubscribe_web import security
from unsubscribe_web.keys import SETTINGS

__all__ = ["body_deadline", "server_options"]

log = logging.getLogger(__name__)

# How often a body still arriving is looked at (its deadline moves as bytes arrive).
_CHECK_EVERY = 0.25
# What a body read raises when the client went away before sending all of it.
CLIENT_GONE: tuple[type[BaseException], ...] = (
    ClientConnectionResetError,
    ClientPayloadError,
    ConnectionResetError,
)


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` / ``web.run_app``: the header timeout.

    aiohttp's keep-alive timer runs from the connection's start and from each answer, and
    closes the connection if no complete request has arrived by then: exactly a header
    timeout (and an idle keep-alive limit of the same length, as Apache's 5 s is).
    """
    return {"keepalive_timeout": settings.web.header_timeout}


class BodyTimeout(web.HTTPRequestTimeout):
    """The body did not arrive in time."""


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bound the time a body may take to arrive: ``body_timeout`` for any body, and past it
    at least ``upload_min_rate`` bytes/s on average (large uploads). A body that stalls gets
    408 and the connection is closed; one whose client vanished is logged as an abort."""
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    limits = request.config_dict[SETTINGS].web
    loop = asyncio.get_running_loop()
    started = loop.time()
    stalled = False
    timer: asyncio.TimerHandle | None = None
    task = asyncio.current_task()
    assert task is not None

    def check() -> None:
        nonlocal stalled, timer
        if request.content.is_eof():
            return  # all of it is here: the handler's own work has no deadline from us
        elapsed = loop.time() - started
        if elapsed > limits.body_timeout and (
            request.content.total_bytes < limits.upload_min_rate * elapsed
        ):
            stalled = True
            task.cancel()
            return
        timer = loop.call_later(_CHECK_EVERY, check)

    timer = loop.call_later(_CHECK_EVERY, check)
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if not stalled:
            raise
        task.uncancel()
        log.info(
            "request body too slow: %s bytes in %.1f s; closing",
            request.content.total_bytes, loop.time() - started,
        )  # fmt: skip
        # Answered and closed here: aiohttp would otherwise linger reading the rest of a body
        # that is not coming. The close waits for the answer to leave the send buffer.
        response = security.http_error(request, BodyTimeout())
        response.headers.update(security.HEADERS)
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
        return response
    except CLIENT_GONE as exc:
        # Nobody is left to answer: a client abort, not a server error.
        log.info(
            "client aborted %s mid-body after %s bytes (%s)",
            request.method, request.content.total_bytes, type(exc).__name__,
        )  # fmt: skip
        return web.Response(status=400, headers={"Connection": "close"})
    finally:
        if timer is not None:
            timer.cancel()
