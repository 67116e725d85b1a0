"""The staff workspace's shell, shared by every workspace page: the session (a staff account's
server-side session, its random id in a cookie, checked on every request; or, behind
OPTOUT_TOKEN_SIGNIN=1 for one release, an API token), the tenant in the URL, the role the
account holds there and its rights, the CSRF token of every form, the audit line of every
action (naming the account), and post/redirect/get.

Rights are the admin API's: each workspace action names the API endpoint that does the same
thing, and takes that endpoint's right from the one table in ``unsubscribe_web.api``; so a
role can do in the browser exactly what its token can do through the API, no more.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import asyncpg
from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from mailer import api_tokens, audit, staff_accounts, staff_sessions, tenants
from mailer.api_tokens import PREFIX, Principal
from mailer.db import queries, rows
from mailer.errors import Forbidden, InvalidInput, Unauthorized, UnknownTenant
from unsubscribe_web.api.admin import ENDPOINTS
from unsubscribe_web.api.spec import SLUG_PATTERN
from unsubscribe_web.keys import CSRF, SETTINGS
from unsubscribe_web.pages import connection, render

log = logging.getLogger(__name__)

# The session cookie. Over https it carries the __Host- prefix (Secure, Path=/, no Domain: no
# subdomain can set or read it); browsers refuse that prefix without Secure, so plain-http
# development installs use the bare name.
COOKIE = "optout_staff"
SECURE_COOKIE = "__Host-optout_staff"
COOKIE_PATH = "/"
CSRF_FIELD = "csrf"
CSRF_FORM = "workspace"
# One message for every bad token (unknown, revoked, expired, malformed): nothing is revealed.
WRONG_TOKEN = "That token is not valid."
SESSION_ENDED = "Your session has ended. Sign in again."
EXPIRED_FORM = "This form has expired or came from another page. Reload the page and try again."
CROSS_SITE = "Sign in from this site's own form."
# Pages may run our one script file and frame our own sandboxed preview; nothing else.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

# The admin API's right per endpoint name: the one rights table both faces use.
API_RIGHTS: dict[str, str] = {e.name: e.right for e in ENDPOINTS if e.right is not None}


def right_of(action: str) -> str:
    """The right of the admin-API endpoint ``action`` (KeyError: no such endpoint)."""
    return API_RIGHTS[action]


@dataclass(slots=True)
class Workspace:
    """One signed-in request: who, in which tenant, on which connection."""

    request: web.Request
    conn: asyncpg.Connection
    principal: Principal
    tenant: asyncpg.Record
    csrf: str
    # The person signed in (None only for the legacy token sign-in).
    account: staff_sessions.Session | None = None

    @property
    def tenant_id(self) -> int:
        tenant_id: int = self.tenant["id"]
        return tenant_id

    @property
    def slug(self) -> str:
        slug: str = self.tenant["slug"]
        return slug

    @property
    def actor(self) -> str:
        """Who acts, as the ledger and the audit log name them: the one place the workspace
        says it, so staff accounts can replace tokens here alone."""
        return self.principal.actor

    def may(self, action: str) -> bool:
        return self.principal.may(right_of(action))

    def url(self, route: str, query: Mapping[str, str] | None = None, **parts: Any) -> str:
        path = self.request.app.router[route].url_for(
            tenant=self.slug, **{k: str(v) for k, v in parts.items()}
        )
        return f"{path}?{urlencode(query)}" if query else str(path)

    def page(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        """A workspace page: the shell's values, and the workspace's CSP."""
        router = self.request.app.router
        response = render(
            self.request,
            template,
            status=status,
            ws=self,
            css=router["dashboard_stylesheet"].url_for(),
            logout=router["dashboard_logout"].url_for(),
            home=f"{router['dashboard'].url_for()}?{urlencode({'tenant': self.slug})}",
            **context,
        )
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def audit(self, action: str, target: tuple[str, int] | None = None) -> None:
        """The audit line of an action, as the API writes it (same action name), in the
        action's own transaction."""
        target_type, target_id = target or (None, None)
        await audit.record(
            self.conn,
            actor=self.actor,
            token_id=self.principal.token_id,
            tenant_id=self.tenant_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail={"via": "workspace"},
        )


def cookie_name(request: web.Request) -> str:
    return app_cookie_name(request.app)


def app_cookie_name(app: web.Application) -> str:
    """The session cookie's name in this installation (by its base URL's scheme)."""
    return SECURE_COOKIE if app[SETTINGS].base_url.startswith("https://") else COOKIE


def session_token(request: web.Request) -> str | None:
    """The session id in the request's cookie (or, with OPTOUT_TOKEN_SIGNIN, a token)."""
    return request.cookies.get(cookie_name(request)) or None


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(
        cookie_name(request),
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=secure(request),
    )


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(
        cookie_name(request),
        path=COOKIE_PATH,
        secure=secure(request),
        httponly=True,
        samesite="Strict",
    )


def csrf_value(request: web.Request, token: str) -> str:
    return csrf_for(request.app, token)


def csrf_for(app: web.Application, token: str) -> str:
    """The CSRF value of a session: bound to its token through a hash, so the form value never
    carries the token, and a form of one session is refused in another."""
    return app[CSRF].issue(hashlib.sha256(token.encode()).hexdigest(), CSRF_FORM)


def csrf_ok(request: web.Request, token: str, given: object) -> bool:
    bound = hashlib.sha256(token.encode()).hexdigest()
    return request.app[CSRF].check(bound, CSRF_FORM, given)


async def staff(conn: asyncpg.Connection, token: str) -> Principal:
    """The token's principal (legacy token sign-in); Unauthorized, one message for every
    cause."""
    try:
        return await api_tokens.authenticate(conn, f"Bearer {token}")
    except Unauthorized:
        raise Unauthorized(WRONG_TOKEN) from None


async def signed_in(
    request: web.Request, conn: asyncpg.Connection, raw: str, slug: str | None
) -> tuple[Principal, staff_sessions.Session | None]:
    """Who a session cookie is, acting in the tenant ``slug`` (None: the first it may open).
    An account's principal carries the role it holds in that tenant (an installation admin:
    admin of every tenant). Unauthorized when the session has ended; UnknownTenant (404, as
    for a tenant that does not exist) when the account has no role in ``slug``."""
    staff_settings = request.app[SETTINGS].staff
    if staff_settings.token_signin and raw.startswith(PREFIX):
        return await staff(conn, raw), None
    session = await staff_sessions.resume(conn, raw, idle_seconds=staff_settings.session_idle)
    if session is None:
        raise Unauthorized(SESSION_ENDED)
    if session.installation_admin:
        _second_factor_first(request, session, "admin")
        return Principal(None, "admin", None, session.account_id), session
    held = await staff_accounts.roles(conn, session.account_id)
    if not held:
        raise Forbidden("Your account has no role in any tenant yet; ask an admin.")
    chosen = held[0] if slug is None else next((r for r in held if r["slug"] == slug), None)
    if chosen is None:
        raise UnknownTenant("No such tenant.", field="tenant")
    _second_factor_first(request, session, chosen["role"])
    return Principal(None, chosen["role"], chosen["tenant_id"], session.account_id), session


# The roles OPTOUT_STAFF_TOTP_REQUIRED holds to two-factor sign-in.
TOTP_ROLES = frozenset({"admin", "compliance"})


def _second_factor_first(request: web.Request, session: staff_sessions.Session, role: str) -> None:
    """With OPTOUT_STAFF_TOTP_REQUIRED, an admin or compliance account without two-factor goes
    to its own page to enrol before anything else opens."""
    if request.app[SETTINGS].staff.totp_required and role in TOTP_ROLES and not session.has_totp:
        raise web.HTTPSeeOther(
            str(request.app.router["staff_account"].url_for()) + "?enrol=required"
        )


async def tenant_choices(conn: asyncpg.Connection, principal: Principal) -> list[asyncpg.Record]:
    """The tenants a principal may open: all for an admin, an account's every tenant with a
    role, else the token's own."""
    if principal.tenant_id is None:
        return await tenants.list_tenants(conn)
    if principal.account_id is not None:
        return await rows(queries().staff.tenants_of_account(conn, account_id=principal.account_id))
    own = await queries().tenants.get_tenant(conn, id=principal.tenant_id)
    return [own] if own is not None else []


async def visible_tenant(
    conn: asyncpg.Connection, principal: Principal, slug: str
) -> asyncpg.Record:
    """The tenant named in the URL; another tenant's slug answers 404, word for word like a
    tenant that does not exist (as the API does)."""
    if not re.fullmatch(SLUG_PATTERN, slug):
        raise UnknownTenant("No such tenant.", field="tenant")
    chosen = next((t for t in await tenant_choices(conn, principal) if t["slug"] == slug), None)
    if chosen is None:
        raise UnknownTenant("No such tenant.", field="tenant")
    return chosen


def from_another_site(request: web.Request) -> bool:
    """Browsers say where a form was sent from: Sec-Fetch-Site, and Origin, which is "null"
    under our no-referrer policy, so only another host named there counts. Clients that send
    neither (scripts, old browsers) are not refused for that alone."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin not in (None, "null") and urlsplit(origin).netloc != request.host


def sign_in_again(request: web.Request) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(str(request.app.router["dashboard"].url_for()))


@contextlib.asynccontextmanager
async def opened(request: web.Request, action: str) -> AsyncIterator[Workspace]:
    """A workspace GET: signed in, the tenant visible to the account, the action's right held
    by its role there. Without a live session, back to the sign-in form."""
    token = session_token(request)
    if token is None:
        raise sign_in_again(request)
    slug = request.match_info["tenant"]
    async with connection(request) as conn:
        try:
            principal, account = await signed_in(request, conn, token, slug)
        except Unauthorized:
            raise sign_in_again(request) from None
        tenant = await visible_tenant(conn, principal, slug)
        if not principal.may(right_of(action)):
            raise Forbidden(f"A {principal.role} may not do this ({right_of(action)}).")
        yield Workspace(request, conn, principal, tenant, csrf_value(request, token), account)


@contextlib.asynccontextmanager
async def posted(
    request: web.Request, action: str, *, max_size: int | None = None
) -> AsyncIterator[tuple[Workspace, MultiDictProxy[Any]]]:
    """A workspace POST: from our own page, with the session's CSRF token, signed in, in a
    tenant the token sees, with the right of the API endpoint ``action``. Anything else is
    refused before any change. ``max_size``: a form larger than the app's 64 KiB limit."""
    token = _form_session(request)
    reader = request if max_size is None else request.clone(client_max_size=max_size)
    form = await reader.post()
    async with _acting(request, token, form.get(CSRF_FIELD), action) as ws:
        yield ws, form


def _form_session(request: web.Request) -> str:
    """The session token of a form posted from our own site; refused otherwise."""
    if from_another_site(request):
        raise Forbidden(EXPIRED_FORM)
    token = session_token(request)
    if token is None:
        raise Unauthorized(WRONG_TOKEN)
    return token


@contextlib.asynccontextmanager
async def _acting(
    request: web.Request, token: str, given_csrf: object, action: str
) -> AsyncIterator[Workspace]:
    """The checks of every workspace POST after its fields are read: the CSRF token, the
    session, the tenant in the URL, the right of the API endpoint ``action``."""
    if not csrf_ok(request, token, given_csrf):
        raise Forbidden(EXPIRED_FORM)
    slug = request.match_info["tenant"]
    async with connection(request) as conn:
        principal, account = await signed_in(request, conn, token, slug)
        tenant = await visible_tenant(conn, principal, slug)
        if not principal.may(right_of(action)):
            raise Forbidden(f"A {principal.role} may not do this ({right_of(action)}).")
        yield Workspace(request, conn, principal, tenant, csrf_value(request, token), account)


# A file form's text fields: a few short values before the file (the CSRF token among them).
MAX_FIELDS = 20
MAX_FIELD_BYTES = 8 * 1024


@contextlib.asynccontextmanager
async def uploaded(
    request: web.Request, action: str
) -> AsyncIterator[tuple[Workspace, dict[str, str], BodyPartReader | None]]:
    """A workspace POST with a file (multipart/form-data): its text fields come first and the
    file last, so every check of ``posted`` (site, session, CSRF, tenant, right) is made
    before a byte of the file is read; the caller streams the file part (None: no file)."""
    token = _form_session(request)
    fields: dict[str, str] = {}
    file_part: BodyPartReader | None = None
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        while len(fields) <= MAX_FIELDS:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or part.name is None:
                raise InvalidInput("The form is not one of ours.")
            if part.filename is not None:
                file_part = part
                break
            fields[part.name] = await _short_field(part)
    else:
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    async with _acting(request, token, fields.get(CSRF_FIELD), action) as ws:
        yield ws, {k: v.strip() for k, v in fields.items()}, file_part


async def _short_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(1024):
        data.extend(chunk)
        if len(data) > MAX_FIELD_BYTES:
            raise InvalidInput(f"The field {part.name} is too long.", field=part.name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"The field {part.name} is not UTF-8.", field=part.name) from None


def see_other(location: str) -> web.Response:
    """Post/redirect/get: a reload shows the result and never repeats the action."""
    return web.Response(status=303, headers={"Location": location})


def secure(request: web.Request) -> bool:
    return request.app[SETTINGS].base_url.startswith("https://")


def text_field(form: MultiDictProxy[Any], name: str, *, multiline: bool = False) -> str:
    """A form field as text ("" when absent); line breaks are normalised to LF."""
    value = form.get(name, "")
    if not isinstance(value, str):
        return ""
    if multiline:
        return value.replace("\r\n", "\n").replace("\r", "\n")
    return value.strip()
