"""Security of the web face: headers on every answer, the access log, metrics per request,
and error pages for HTTP errors (CSRF tokens and rate limits are in unsubscribe_web.forms)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from mailer.i18n import N_
from unsubscribe_web.errors import JSON_PREFIXES, localized_error_page
from unsubscribe_web.keys import METRICS
from unsubscribe_web.metrics import route_name

log = logging.getLogger(__name__)
access_log = logging.getLogger("optout.access")

# No script at all, styles only from our own stylesheet, forms only to ourselves, never framed.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Token URLs must not leak to other sites through the Referer header.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Set unless the handler chose otherwise (the stylesheet is cacheable, policy pages indexable,
# a developer page may need its own CSP, the workspace's preview is framed by its own page).
DEFAULT_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
}

# A reverse proxy on the same host (the usual TLS front) says who the client is.
LOOPBACK = frozenset({"127.0.0.1", "::1"})

# A path segment that looks like a token or code: long and of the base64url alphabet.
_TOKENISH = re.compile(r"[A-Za-z0-9_-]{16,}")


def client_ip(request: web.Request) -> str | None:
    """The client's address: the peer, or the last X-Forwarded-For hop when the peer is a
    proxy on this host (a remote peer cannot claim another address that way)."""
    peer = request.remote
    forwarded = request.headers.get("X-Forwarded-For")
    if peer in LOOPBACK and forwarded:
        hop = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # not an address: keep what we know
    return peer


def redact_path(path: str) -> str:
    """The path with the query dropped and anything token-like replaced."""
    return _TOKENISH.sub("[redacted]", path.partition("?")[0])


def _logged_path(request: web.Request) -> str:
    # A matched route logs its pattern ("/u/{token}"): no token, whatever the token looks like.
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is not None and request.match_info.get("token") is not None:
        return resource.canonical
    return redact_path(request.path)


def _referrer(request: web.Request) -> str:
    referrer = request.headers.get("Referer", "")
    if not referrer:
        return ""
    scheme, sep, rest = referrer.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host}{slash}{redact_path(path)}"[:300]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: turns HTTP errors into pages, adds the security headers, writes
    one access-log line and the request metrics."""
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            # A redirect (303 after a preference form): returning the exception itself is
            # deprecated in aiohttp, so answer with a plain response carrying its headers.
            response = web.Response(status=exc.status, headers=exc.headers)
        else:
            response = http_error(request, exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, _logged_path(request))
        response = error_page(request, 500, "Something went wrong on our side.")
    headers = response.headers
    headers.update(HEADERS)
    for name, value in DEFAULT_HEADERS.items():
        if name not in headers:
            headers[name] = value
    elapsed = time.perf_counter() - started
    status = response.status
    request.app[METRICS].observe(route_name(request), request.method, status, elapsed)
    if access_log.isEnabledFor(logging.INFO):
        _log_access(request, status, elapsed)
    return response


def access_line(request: web.Request, status: int, elapsed: float, now: float | None = None) -> str:
    """The access-log line of a request: one JSON object (DESIGN 1: date and time, IP,
    browser, referrer, object requested, completion status), no token, no query."""
    # Written out rather than json.dumps of a dict: this runs for every request, and only the
    # strings from the client need escaping (the C escaper json.dumps itself uses).
    ip = client_ip(request)
    return (
        f'{{"time":"{_utc_stamp(time.time() if now is None else now)}",'
        f'"ip":{"null" if ip is None else _json_string(ip)},'
        f'"method":{_json_string(request.method)},'
        f'"path":{_json_string(_logged_path(request))},'
        f'"status":{status:d},'
        f'"ms":{round(elapsed * 1000, 2)!r},'
        f'"ua":{_json_string(request.headers.get("User-Agent", "")[:300])},'
        f'"referrer":{_json_string(_referrer(request))}}}'
    )


def _log_access(request: web.Request, status: int, elapsed: float) -> None:
    # The record is made directly: Logger.info would walk the stack for the caller's file and
    # line (findCaller) on every request, and the line needs neither.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        access_line(request, status, elapsed),
        (),
        None,
    )
    access_log.handle(record)


_json_string = json.encoder.encode_basestring_ascii
_stamp_second = -1
_stamp = ""


def _utc_stamp(now: float) -> str:
    """ISO 8601 UTC to the second, formatted once a second rather than once a request."""
    global _stamp_second, _stamp
    second = int(now)
    if second != _stamp_second:
        _stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        _stamp_second = second
    return _stamp


def http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    messages = {
        404: N_("There is nothing at this address."),
        405: N_("This page does not accept that kind of request."),
        408: N_("The request took too long to arrive."),
        413: N_("The request is too large."),
        429: N_("Too many requests; please wait a little and try again."),
    }
    message = messages.get(exc.status, exc.reason)
    response = error_page(request, exc.status, message)
    for name in ("Allow", "Retry-After"):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith(JSON_PREFIXES):
        body = {"error": {"code": f"http_{status}", "message": message, "field": None}}
        return web.json_response(body, status=status)
    return localized_error_page(request, status, message)
