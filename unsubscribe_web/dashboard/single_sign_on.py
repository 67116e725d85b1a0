"""Staff sign-in through the installation's OpenID Connect provider (issue 24 item 5).

POST /dashboard/login/sso starts it (a page that moves on to the provider): the sign-in under
way is kept on the server (mailer.staff_oidc) behind a short-lived SameSite=Lax cookie, which
the browser still sends when the provider, another site, sends it back to GET
/dashboard/login/sso/callback. There a new session starts (Optout's TOTP still asked unless
the provider's amr/acr count as a second factor), and a page of our own moves on, so the
Strict session cookie is sent from then on.
"""

from __future__ import annotations

import logging

from aiohttp import web

from mailer import staff_oidc
from mailer.errors import SignOnRefused
from unsubscribe_web.dashboard.accounts import (
    SIGN_INS_PER_IP,
    TOO_MANY,
    await_code,
    continue_page,
    login_page,
    signed_in,
)
from unsubscribe_web.dashboard.workspace import CROSS_SITE, from_another_site, secure
from unsubscribe_web.keys import LIMITS, OIDC_PROVIDER, SETTINGS
from unsubscribe_web.pages import connection
from unsubscribe_web.security import client_ip

log = logging.getLogger(__name__)

COOKIE = "optout_sso"
SECURE_COOKIE = "__Host-optout_sso"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/dashboard/login/sso", start, name="staff_oidc_start")
    app.router.add_get("/dashboard/login/sso/callback", callback, name="staff_oidc_callback")


def _cookie_name(request: web.Request) -> str:
    return SECURE_COOKIE if secure(request) else COOKIE


def _redirect_uri(request: web.Request) -> str:
    # The configured base URL, never the request's Host header, which a client chooses.
    path = request.app.router["staff_oidc_callback"].url_for()
    return f"{request.app[SETTINGS].base_url}{path}"


def _provider(request: web.Request) -> staff_oidc.Provider:
    provider = request.app.get(OIDC_PROVIDER)
    if provider is None:
        raise web.HTTPNotFound(text="Single sign-on is not set up here.")
    return provider


async def start(request: web.Request) -> web.Response:
    """POST from the sign-in page: off to the provider, with state, nonce and PKCE."""
    provider = _provider(request)
    if from_another_site(request):
        return login_page(request, status=403, message=CROSS_SITE)
    async with connection(request) as conn:
        # The same per-IP ceiling as password sign-ins: each start stores a row.
        allowed = await request.app[LIMITS].allow(conn, SIGN_INS_PER_IP, client_ip(request) or "")
    if not allowed:
        return login_page(request, status=429, message=TOO_MANY)
    try:
        async with connection(request) as conn:
            raw, url = await staff_oidc.begin(conn, provider, _redirect_uri(request))
    except SignOnRefused as error:
        log.warning("single sign-on cannot start: %s", error)
        return login_page(request, status=502, message=str(error))
    # Not a 303: a form's redirect to another site is stopped by our form-action policy.
    response = continue_page(
        request, url, "Signing in at your provider", "Continue to your sign-in provider"
    )
    response.set_cookie(
        _cookie_name(request),
        raw,
        path="/",
        max_age=int(staff_oidc.TRANSACTION_SECONDS),
        httponly=True,
        # Lax: sent on the provider's top-level redirect back to us, never on a cross-site POST.
        samesite="Lax",
        secure=secure(request),
    )
    return response


async def callback(request: web.Request) -> web.Response:
    """GET from the provider (OIDC answers by a redirect, so this GET signs in; the one-use
    state and the cookie-bound transaction make it safe to repeat: a replay finds nothing)."""
    provider = _provider(request)
    raw = request.cookies.get(_cookie_name(request))
    params = {key: value for key, value in request.query.items() if len(value) <= 4096}
    ip = client_ip(request) or ""
    try:
        async with connection(request) as conn:
            identity = await staff_oidc.finish(conn, provider, raw, params, _redirect_uri(request))
            account = await staff_oidc.account_for(conn, identity)
    except SignOnRefused as error:
        log.info("single sign-on refused: %s", error.message)
        response = login_page(request, status=401, message=error.message)
    else:
        if account["totp_secret"] is not None and not identity.second_factor:
            response = await await_code(request, account["id"], ip, hop=True)
        else:
            response = await signed_in(
                request, account["id"], ip, method="single_sign_on", hop=True
            )
    response.del_cookie(_cookie_name(request), path="/", secure=secure(request), samesite="Lax")
    return response
