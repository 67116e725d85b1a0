"""The dev outbox (/dev/outbox): what the demo's SMTP catcher caught, shown as a recipient
would see it, with headers, the DKIM verdict and the one-click button a mail provider shows.

Mounted only while a catcher runs (the demo); never in production.
"""

from __future__ import annotations

import asyncio
import email.message
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import dkim
from aiohttp import web

from mailer import catcher
from mailer.db import queries
from mailer.errors import InvalidInput
from mailer.sending.dkim import public_key_dns_record
from unsubscribe_web.keys import PAGES, POOL, SETTINGS

OUTBOX_DIR = web.AppKey("outbox_dir", Path)
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
# The caught HTML is shown in a sandboxed srcdoc frame, which inherits this page's policy:
# mail uses inline styles and remote images, never scripts (none are allowed anywhere here).
DEV_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src * data:; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_SIZE = 50
MAX_SEARCH = 200
HTTPS_URI = re.compile(r"<(https?://[^>\s]+)>")
HEAD_TAG = re.compile(r"<head(\s[^>]*)?>", re.I)


def add_routes(app: web.Application, folder: Path) -> None:
    app[OUTBOX_DIR] = folder
    app.router.add_get("/dev/outbox", outbox, name="dev_outbox")
    app.router.add_get("/dev/outbox/{id}", message, name="dev_message")
    app.router.add_post("/dev/outbox/{id}/one-click", one_click, name="dev_one_click")


async def outbox(request: web.Request) -> web.Response:
    """Newest first, PAGE_SIZE a page, with the count and a search by recipient or subject."""
    search = request.query.get("q", "")[:MAX_SEARCH]
    raw_page = request.query.get("page", "1")
    if not raw_page.isdigit() or int(raw_page) < 1:
        raise InvalidInput("page must be a number from 1.", field="page")
    number = int(raw_page)
    found = await asyncio.to_thread(
        catcher.list_messages,
        request.app[OUTBOX_DIR],
        search=search,
        offset=(number - 1) * PAGE_SIZE,
        limit=PAGE_SIZE,
    )
    pages = max(1, -(-found.matching // PAGE_SIZE))
    if number > pages:  # past the end (the search narrowed it): the last page instead
        raise web.HTTPFound(_outbox_url(request, search, pages))
    rows = [
        {"id": m.id, "to": ", ".join(m.rcpt_tos), "subject": m.subject, "date": m.date}
        for m in found.messages
    ]
    return _page(
        request,
        "dev_outbox.html",
        messages=rows,
        total=found.total,
        matching=found.matching,
        search=search,
        page=number,
        pages=pages,
        first=(number - 1) * PAGE_SIZE + 1,
        previous_url=_outbox_url(request, search, number - 1) if number > 1 else None,
        next_url=_outbox_url(request, search, number + 1) if number < pages else None,
    )


def _outbox_url(request: web.Request, search: str, page: int) -> str:
    query = {"q": search} if search else {}
    if page > 1:
        query["page"] = str(page)
    return str(request.app.router["dev_outbox"].url_for().with_query(query))


async def message(request: web.Request) -> web.Response:
    caught = await asyncio.to_thread(
        catcher.read_message, request.app[OUTBOX_DIR], request.match_info["id"]
    )
    parsed = caught.headers
    verdict = await _dkim_verdict(request, caught.raw)
    return _page(
        request,
        "dev_message.html",
        message=caught,
        headers=[(name, str(value)) for name, value in parsed.items()],
        html=_links_open_on_top(_part(parsed, "html")),
        text=_part(parsed, "plain"),
        dkim=verdict,
        one_click_url=_one_click_url(parsed),
        one_click_post=parsed.get("List-Unsubscribe-Post", ""),
    )


async def one_click(request: web.Request) -> web.Response:
    """Do exactly what a mail provider does for RFC 8058: POST the one-click body to the
    https URI of List-Unsubscribe, with no cookies and no redirects followed."""
    caught = await asyncio.to_thread(
        catcher.read_message, request.app[OUTBOX_DIR], request.match_info["id"]
    )
    url = _one_click_url(caught.headers)
    if url is None or caught.headers.get("List-Unsubscribe-Post") != ONE_CLICK_BODY:
        raise InvalidInput("This message offers no one-click unsubscribe.")
    _only_our_own_site(request, url)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.post(
            url,
            data=ONE_CLICK_BODY,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=10),
        ) as reply,
    ):
        status = reply.status
    return _page(request, "dev_one_click.html", message=caught, url=url, status=status)


def _one_click_url(parsed: email.message.EmailMessage) -> str | None:
    found = HTTPS_URI.search(str(parsed.get("List-Unsubscribe", "")))
    return found.group(1) if found else None


def _only_our_own_site(request: web.Request, url: str) -> None:
    # The button may only ever reach this installation, never an address named in a mail.
    ours = urlsplit(request.app[SETTINGS].base_url)
    theirs = urlsplit(url)
    if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
        raise InvalidInput("The one-click link does not point at this installation.")


def _links_open_on_top(html: str | None) -> str | None:
    """A link clicked in the shown mail opens in the whole tab, as in a mail client: our
    pages refuse to be framed (frame-ancestors 'none'), and the frame runs no script."""
    if html is None:
        return None
    head = HEAD_TAG.search(html)
    at = head.end() if head else 0
    return html[:at] + '<base target="_top">' + html[at:]


def _part(parsed: email.message.EmailMessage, subtype: str) -> str | None:
    body = parsed.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_subtype() != subtype:
        return None
    content: str = body.get_content()
    return content


async def _dkim_verdict(request: web.Request, raw: bytes) -> dict[str, Any]:
    """Verify with dkimpy; the key comes from the tenant's key file instead of DNS."""
    records: dict[bytes, bytes] = {}
    pool = request.app[POOL]
    signature = re.search(rb"^DKIM-Signature:(.*?)\r\n(?![ \t])", raw, re.S | re.M)
    if signature is None:
        return {"signed": False, "valid": False, "detail": "no DKIM-Signature header"}
    tags = dict(re.findall(rb"\b([a-z]+)=([^;]*)", re.sub(rb"\s+", b"", signature.group(1))))
    domain = tags.get(b"d", b"").decode()
    selector = tags.get(b"s", b"").decode()
    async with pool.acquire() as conn:
        key_path = await queries().dev.dkim_key_path(conn, domain=domain, selector=selector)
    if key_path is None:
        return {
            "signed": True,
            "valid": False,
            "detail": f"no key for {selector}._domainkey.{domain}",
        }
    pem = await asyncio.to_thread(Path(key_path).read_bytes)
    record = public_key_dns_record(pem).encode()
    records[f"{selector}._domainkey.{domain}.".encode()] = record

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name if name.endswith(b".") else name + b".", b"")

    valid = await asyncio.to_thread(dkim.verify, raw, dnsfunc=dnsfunc)
    detail = f"d={domain} s={selector} a={tags.get(b'a', b'').decode()}"
    return {"signed": True, "valid": bool(valid), "detail": detail}


def _page(request: web.Request, template: str, **values: Any) -> web.Response:
    text = request.app[PAGES].get_template(template).render(**values)
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DEV_CSP},
    )
