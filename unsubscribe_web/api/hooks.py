"""POST /hooks/{relay}: bounce and complaint reports from relays that report by HTTP
(Amazon SES through SNS, SendGrid event webhook, Postmark bounce webhook).

Each relay has its own shared secret (OPTOUT_HOOK_SECRET_<RELAY>), sent as the password of
HTTP Basic authentication (all three relays let the webhook URL carry it). A wrong or missing
secret gets 401 and changes nothing. The reports are recorded and applied in one transaction
before the 200, so a relay that gets no 2xx (503 while Postgres is away) sends them again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from mailer import json_input
from mailer.db import UNAVAILABLE_ERRORS
from mailer.errors import DatabaseUnavailable, InvalidInput, NotFound
from mailer.inbound.relay_reports import UnreadableReport, apply_reports, parse_reports
from mailer.inbound.sns import cert_url_allowed, verify
from mailer.inbound_settings import RELAYS
from unsubscribe_web.keys import POOL, SETTINGS

log = logging.getLogger(__name__)

MAX_HOOK_BYTES = 1024 * 1024  # SendGrid batches events; far above one batch, far below harm
REALM = 'Basic realm="optout-hooks", charset="UTF-8"'


class SnsCertificates:
    """SNS signing certificates by URL, fetched once (the URL names the key version)."""

    MAX_CACHED = 16
    MAX_CERT_BYTES = 64 * 1024

    def __init__(self, fetch: Callable[[str], Awaitable[bytes]] | None = None) -> None:
        self._fetch = fetch or self._fetch_https
        self._cache: dict[str, bytes] = {}

    async def get(self, url: str) -> bytes:
        cert = self._cache.get(url)
        if cert is None:
            cert = await self._fetch(url)
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[url] = cert
        return cert

    async def _fetch_https(self, url: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                response.raise_for_status()
                return await response.content.read(self.MAX_CERT_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("webhook SNS certificate fetch failed: %s", type(exc).__name__)
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "60"}) from exc


SNS_CERTS = web.AppKey("sns_certificates", SnsCertificates)


class UnknownRelay(NotFound):
    """No webhook for that relay here."""

    code = "unknown_relay"


class BadReport(InvalidInput):
    """The body is not a report this relay sends."""

    code = "bad_report"


def add_routes(app: web.Application) -> None:
    if SNS_CERTS not in app:  # tests put a fake fetcher here: the network is outside
        app[SNS_CERTS] = SnsCertificates()
    app.router.add_post("/hooks/{relay}", relay_hook, name="relay_hook")


async def relay_hook(request: web.Request) -> web.Response:
    relay = request.match_info["relay"]
    secret = request.app[SETTINGS].inbound.hook_secret(relay) if relay in RELAYS else None
    if secret is None:
        raise UnknownRelay(field="relay")
    if not _authorised(request.headers.get("Authorization", ""), secret):
        log.warning("webhook refused relay=%s reason=bad_secret", relay)
        return _unauthorised("Wrong or missing secret.")
    raw = await _bounded_body(request)
    verify_sns = relay == "ses" and request.app[SETTINGS].inbound.verify_sns_signatures
    if verify_sns and not await _sns_signed(request, raw):
        log.warning("webhook refused relay=%s reason=bad_sns_signature", relay)
        return _unauthorised("The SNS signature does not verify.")
    try:
        reports = parse_reports(relay, raw)
    except UnreadableReport as exc:
        raise BadReport(str(exc)) from None
    if any(r.event == "sns:SubscriptionConfirmation" for r in reports):
        # Confirming means fetching a URL from the body: left to the operator, never automatic.
        log.warning("webhook SNS subscription awaits confirmation relay=%s", relay)
    try:
        async with request.app[POOL].acquire() as conn:
            done = await apply_reports(conn, request.app[SETTINGS], relay, reports)
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable() from exc
    return web.json_response(
        {"received": len(reports), "recorded": done.recorded, "applied": done.applied}
    )


def _unauthorised(message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": "unauthorized", "message": message, "field": None}},
        status=401,
        headers={"WWW-Authenticate": REALM},
    )


async def _sns_signed(request: web.Request, raw: bytes) -> bool:
    """The SNS message is signed by a certificate served from an AWS SNS endpoint."""
    try:
        message = json_input.loads(raw)
    except ValueError:  # not JSON, not UTF-8, or nested too deeply
        raise BadReport("the body is not JSON") from None
    if not isinstance(message, dict):
        raise BadReport("not an SNS message")
    url = message.get("SigningCertURL") or message.get("SigningCertUrl")
    if not cert_url_allowed(url):
        return False
    assert isinstance(url, str)
    return verify(message, await request.app[SNS_CERTS].get(url))


def _authorised(header: str, secret: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _user, _, password = decoded.partition(":")
    return hmac.compare_digest(password.encode(), secret.encode())


async def _bounded_body(request: web.Request) -> bytes:
    # The app-wide body limit suits forms; relays batch, so this route reads up to its own.
    if request.content_length is not None and request.content_length > MAX_HOOK_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_HOOK_BYTES, request.content_length)
    body = await request.content.read(MAX_HOOK_BYTES + 1)
    if len(body) > MAX_HOOK_BYTES:
        raise web.HTTPRequestEntityTooLarge(MAX_HOOK_BYTES, len(body))
    return body
