"""Staff sign-in by account (issue 24): the sign-in form (email and password; an API token only
behind OPTOUT_TOKEN_SIGNIN=1, for one release), sign-out, setting a password from an invitation
or a reset link, asking for a reset ("forgot your password", mailed when the installation
sends staff mail), and the person's own sessions. Every sign-in and sign-out is audited,
naming the account and how it signed in.

A wrong password, an unknown address and an account not yet active get the same answer after
the same work (an Argon2 check against a dummy hash), so the form tells no one which addresses
have accounts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math

from aiohttp import web

from mailer import audit, staff_accounts, staff_sessions, totp
from mailer.api_tokens import PREFIX
from mailer.errors import InvalidInput, NotFound, TooBusy, Unauthorized
from mailer.limits import Limit
from mailer.signin_limits import SLOW_SECONDS
from unsubscribe_web.dashboard.workspace import (
    CROSS_SITE,
    WRONG_TOKEN,
    clear_session_cookie,
    from_another_site,
    session_token,
    set_session_cookie,
    staff,
    text_field,
)
from unsubscribe_web.keys import HASHER, LIMITS, SECRET_BOX, SETTINGS, SIGNIN_LIMITS
from unsubscribe_web.pages import connection, render
from unsubscribe_web.security import client_ip

log = logging.getLogger(__name__)

# Sign-in attempts per client IP, counted across every web process (mailer.limits): a ceiling
# against floods; the per-account delays are mailer.signin_limits'.
BUSY_SECONDS = 1.0  # a refusal for want of a hash slot leaves after its Retry-After
SIGN_INS_PER_IP = Limit("dashboard_login", count=100, window=600)
TOO_MANY = "Too many sign-in attempts from your address. Wait ten minutes and try again."
WRONG_PASSWORD = "Wrong email address or password."
WRONG_CODE = "That code is not right (or was used already). Try the next one."
CODE_EXPIRED = "Your sign-in took too long or has ended. Sign in again."
CODE_SECONDS = 300.0  # the time to type the second factor after the password
WAIT = "Too many failed sign-ins for this account from your address. Try again in {} seconds."
# A reset asked for by the person: per client IP (against floods of reset mail) and per address
# (so nobody can fill a colleague's inbox with reset links).
FORGOT_PER_IP = Limit("dashboard_forgot_ip", count=10, window=3600)
FORGOT_PER_ADDRESS = Limit("dashboard_forgot_address", count=3, window=3600)
RESET_SENT = (
    "If an active account has that address, a link to choose a new password is on its way. "
    "It works once, for an hour."
)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/dashboard/login", login, name="dashboard_login")
    app.router.add_post("/dashboard/logout", logout, name="dashboard_logout")
    app.router.add_get("/dashboard/login/code", code_form, name="staff_code")
    app.router.add_post("/dashboard/login/code", check_code)
    app.router.add_get("/dashboard/invitation/{secret}", invitation_form, name="staff_invitation")
    app.router.add_post("/dashboard/invitation/{secret}", accept_invitation)
    app.router.add_get("/dashboard/reset/{secret}", reset_form, name="staff_reset")
    app.router.add_post("/dashboard/reset/{secret}", reset_password)
    app.router.add_get("/dashboard/forgot", forgot_form, name="staff_forgot")
    app.router.add_post("/dashboard/forgot", forgot)
    app.router.add_get("/dashboard/signin/{secret}", signin_link_form, name="staff_signin_link")
    app.router.add_post("/dashboard/signin/{secret}", signin_by_link)


def login_page(
    request: web.Request, *, status: int = 200, message: str | None = None
) -> web.Response:
    return render(
        request,
        "dashboard_login.html",
        status=status,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        action=request.app.router["dashboard_login"].url_for(),
        token_signin=request.app[SETTINGS].staff.token_signin,
        single_sign_on=(
            request.app.router["staff_oidc_start"].url_for()
            if request.app[SETTINGS].staff.oidc is not None
            else None
        ),
        forgot=request.app.router["staff_forgot"].url_for(),
        message=message,
    )


def _home(request: web.Request, *, hop: bool = False) -> web.Response:
    return _go(request, str(request.app.router["dashboard"].url_for()), hop=hop)


def _go(request: web.Request, location: str, *, hop: bool = False) -> web.Response:
    """A response, not a raised HTTPSeeOther, so the cookie header travels with it. ``hop``:
    after a sign-in that came back from another site (single sign-on), a 303 would still count
    as that site's navigation and the browser would hold back the SameSite=Strict session
    cookie; a page of our own that moves on makes the next request same-site."""
    if not hop:
        return web.Response(status=303, headers={"Location": location})
    return continue_page(
        request, location, "Signed in at your provider", "Continue to the staff dashboard"
    )


def continue_page(request: web.Request, location: str, heading: str, link: str) -> web.Response:
    """A page that moves on to ``location`` by itself (a meta refresh, no script) and offers
    the link too. Its own navigation is what the browser judges (same-site for the session
    cookie; never a form's redirect, which the form-action policy would stop)."""
    return render(
        request,
        "staff_continue.html",
        css=request.app.router["dashboard_stylesheet"].url_for(),
        location=location,
        heading=heading,
        link=link,
    )


async def login(request: web.Request) -> web.Response:
    """POST /dashboard/login: check the email and password, start a new session (a new id:
    nothing a visitor held before signing in survives it), back to the dashboard."""
    try:
        return await _login(request)
    except TooBusy:
        # No hash slot: the 429 leaves after its Retry-After second, not at once, so a client
        # that ignores Retry-After cannot spin on refusals and take the event loop from the
        # opt-outs (a sleep costs no CPU; the refused sign-in never queues for a hash).
        await asyncio.sleep(BUSY_SECONDS)
        raise


async def _login(request: web.Request) -> web.Response:
    if from_another_site(request):
        # Another site's form could sign a browser in as someone else.
        return login_page(request, status=403, message=CROSS_SITE)
    # Every hash slot taken (a flood): 429 before the limits and the account are looked up,
    # so such a refusal costs Postgres nothing and reveals nothing about any account.
    request.app[HASHER].refuse_if_busy()
    ip = client_ip(request) or ""
    async with connection(request) as conn:
        allowed = await request.app[LIMITS].allow(conn, SIGN_INS_PER_IP, ip)
    if not allowed:
        return login_page(request, status=429, message=TOO_MANY)
    form = await request.post()
    token = text_field(form, "token")
    if token:
        return await _token_login(request, token)
    email = text_field(form, "email")[:320]
    password = form.get("password")
    if not email or not isinstance(password, str) or not password:
        return login_page(request, status=401, message=WRONG_PASSWORD)
    limits = request.app[SIGNIN_LIMITS]
    async with connection(request) as conn:
        verdict = await limits.check(conn, email, ip)
    if verdict.wait > 0:
        response = login_page(request, status=429, message=WAIT.format(math.ceil(verdict.wait)))
        response.headers["Retry-After"] = str(math.ceil(verdict.wait))
        return response
    if verdict.slow:
        # Over the account's hourly ceiling: slower, never locked (the right password works).
        await asyncio.sleep(SLOW_SECONDS)
    async with connection(request) as conn:
        account = await staff_accounts.by_email(conn, email)
        stored = account["password_hash"] if account is not None else None
        right = await request.app[HASHER].verify(stored, password)
        if account is None or not right or account["status"] != "active":
            await limits.failed(conn, email, ip)
            return login_page(request, status=401, message=WRONG_PASSWORD)
        await limits.succeeded(conn, email, ip)
    if account["totp_secret"] is not None:
        return await await_code(request, account["id"], ip)
    return await signed_in(request, account["id"], ip, method="password")


async def await_code(
    request: web.Request, account_id: int, ip: str, *, hop: bool = False
) -> web.Response:
    """Password right, second factor to come: a short-lived session that opens nothing but
    the code form."""
    async with connection(request) as conn:
        raw = await staff_sessions.start(
            conn,
            account_id,
            max_seconds=CODE_SECONDS,
            ip=ip,
            user_agent=request.headers.get("User-Agent", ""),
            awaiting_code=True,
        )
    response = _go(request, str(request.app.router["staff_code"].url_for()), hop=hop)
    set_session_cookie(request, response, raw)
    return response


def code_page(
    request: web.Request, *, status: int = 200, message: str | None = None
) -> web.Response:
    return render(
        request,
        "staff_code.html",
        status=status,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        action=request.app.router["staff_code"].url_for(),
        message=message,
    )


async def code_form(request: web.Request) -> web.Response:
    """GET /dashboard/login/code: the second step of a sign-in with two-factor."""
    raw = session_token(request)
    async with connection(request) as conn:
        found = await staff_sessions.awaiting(conn, raw) if raw else None
    if found is None:
        return login_page(request, status=401, message=CODE_EXPIRED)
    return code_page(request)


async def check_code(request: web.Request) -> web.Response:
    """POST /dashboard/login/code: a TOTP code (or a recovery code, once). Wrong codes count
    against the same limits as wrong passwords."""
    if from_another_site(request):
        return login_page(request, status=403, message=CROSS_SITE)
    raw = session_token(request)
    form = await request.post()
    code = text_field(form, "code")[:40]
    ip = client_ip(request) or ""
    limits = request.app[SIGNIN_LIMITS]
    async with connection(request) as conn:
        found = await staff_sessions.awaiting(conn, raw) if raw else None
        if found is None or raw is None:
            return login_page(request, status=401, message=CODE_EXPIRED)
        verdict = await limits.check(conn, found["email"], ip)
        if verdict.wait > 0:
            response = code_page(request, status=429, message=WAIT.format(math.ceil(verdict.wait)))
            response.headers["Retry-After"] = str(math.ceil(verdict.wait))
            return response
        account_id: int = found["account_id"]
        recovery = totp.is_recovery_code(code)
        if recovery:
            right = await totp.use_recovery_code(conn, account_id, code)
        else:
            right = await totp.check_code(
                conn, request.app[SECRET_BOX], account_id, found["totp_secret"], code
            )
        if not right:
            await limits.failed(conn, found["email"], ip)
            return code_page(request, status=401, message=WRONG_CODE)
        await limits.succeeded(conn, found["email"], ip)
    # signed_in ends the waiting session (its id is the cookie's) and starts the real one.
    return await signed_in(
        request, account_id, ip, method="recovery_code" if recovery else "authenticator_code"
    )


async def signed_in(
    request: web.Request, account_id: int, ip: str, *, method: str, hop: bool = False
) -> web.Response:
    """A new session (a new id: nothing a visitor held before signing in survives it), the
    one it replaces ended, the cookie set, the sign-in audited (``method``: the last step,
    password, sign_in_link, single_sign_on, authenticator_code or recovery_code), and home."""
    settings = request.app[SETTINGS]
    user_agent = request.headers.get("User-Agent", "")
    async with connection(request) as conn:
        if settings.staff.mail_from is not None:
            # Before the session row exists, so this sign-in is compared with earlier ones.
            await staff_accounts.notice_new_signin(
                conn,
                account_id,
                ip=ip,
                user_agent=user_agent,
                base_url=settings.base_url,
                now=dt.datetime.now(dt.UTC),
            )
        raw = await staff_sessions.start(
            conn,
            account_id,
            max_seconds=settings.staff.session_max,
            ip=ip,
            user_agent=user_agent,
        )
        old = session_token(request)
        if old is not None:
            await staff_sessions.end(conn, old)
        # Ids and the method only: the audit holds no address, IP or browser.
        await audit.record(
            conn,
            actor=f"account:{account_id}:self",
            action="staff.sign_in",
            target_type="staff_account",
            target_id=account_id,
            detail={"method": method},
        )
    response = _home(request, hop=hop)
    set_session_cookie(request, response, raw)
    return response


async def signin_link_form(request: web.Request) -> web.Response:
    """GET of a one-time sign-in link (the demo prints them): a button, so a link scanner's
    GET spends nothing."""
    async with connection(request) as conn:
        found = await staff_accounts.peek_link(
            conn, request.match_info["secret"], staff_accounts.SIGNIN
        )
    return render(
        request,
        "staff_signin_link.html",
        status=200 if found is not None else 404,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        who=(found["name"] or found["email"]) if found is not None else None,
        sign_in=request.app.router["dashboard"].url_for(),
    )


async def signin_by_link(request: web.Request) -> web.Response:
    if from_another_site(request):
        return login_page(request, status=403, message=CROSS_SITE)
    async with connection(request) as conn:
        try:
            account_id = await staff_accounts.use_signin_link(conn, request.match_info["secret"])
        except NotFound as error:
            return login_page(request, status=404, message=str(error))
        account = await staff_accounts.by_id(conn, account_id)
    if account["totp_secret"] is not None:
        # A link is one factor, like a password: an account with TOTP still needs its code.
        return await await_code(request, account_id, client_ip(request) or "")
    return await signed_in(request, account_id, client_ip(request) or "", method="sign_in_link")


async def _token_login(request: web.Request, token: str) -> web.Response:
    """The workspace's sign-in by API token, kept for one release behind OPTOUT_TOKEN_SIGNIN."""
    if not request.app[SETTINGS].staff.token_signin or not token.startswith(PREFIX):
        return login_page(request, status=401, message=WRONG_TOKEN)
    async with connection(request) as conn:
        try:
            principal = await staff(conn, token)
        except Unauthorized:
            return login_page(request, status=401, message=WRONG_TOKEN)
    log.warning(
        "workspace sign-in by API token %s (OPTOUT_TOKEN_SIGNIN=1): invite staff accounts "
        "instead; token sign-in goes away in the next release",
        principal.token_id,
    )
    response = _home(request)
    set_session_cookie(request, response, token)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /dashboard/logout: end the session on the server, forget the cookie."""
    raw = session_token(request)
    if raw is not None and not from_another_site(request):
        async with connection(request) as conn, conn.transaction():
            account_id = await staff_sessions.end(conn, raw)
            if account_id is not None:
                await audit.record(
                    conn,
                    actor=f"account:{account_id}:self",
                    action="staff.sign_out",
                    target_type="staff_account",
                    target_id=account_id,
                )
    response = _home(request)
    clear_session_cookie(request, response)
    return response


def _password_page(
    request: web.Request,
    purpose: str,
    *,
    email: str | None,
    status: int = 200,
    message: str | None = None,
) -> web.Response:
    return render(
        request,
        "staff_password.html",
        status=status,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        invitation=purpose == staff_accounts.INVITE,
        email=email,
        message=message,
        sign_in=request.app.router["dashboard"].url_for(),
    )


async def _show_link(request: web.Request, purpose: str) -> web.Response:
    async with connection(request) as conn:
        found = await staff_accounts.peek_link(conn, request.match_info["secret"], purpose)
    if found is None:
        return _password_page(
            request,
            purpose,
            email=None,
            status=404,
            message="This link was already used or "
            "has expired. Ask an admin for a new invitation, or for a new reset link.",
        )
    return _password_page(request, purpose, email=found["email"])


async def _use_link(request: web.Request, purpose: str) -> web.Response:
    if from_another_site(request):
        return _password_page(request, purpose, email=None, status=403, message=CROSS_SITE)
    form = await request.post()
    password = form.get("password")
    repeated = form.get("password_again")
    secret = request.match_info["secret"]
    async with connection(request) as conn:
        found = await staff_accounts.peek_link(conn, secret, purpose)
        email = found["email"] if found is not None else None
        if not isinstance(password, str) or password != repeated:
            return _password_page(
                request, purpose, email=email, status=400, message="The two passwords differ."
            )
        try:
            await staff_accounts.set_password_by_link(
                conn, request.app[HASHER], secret, purpose, password
            )
        except (InvalidInput, NotFound) as error:
            status = 404 if isinstance(error, NotFound) else 400
            return _password_page(request, purpose, email=email, status=status, message=str(error))
    return render(
        request,
        "staff_password_set.html",
        css=request.app.router["dashboard_stylesheet"].url_for(),
        sign_in=request.app.router["dashboard"].url_for(),
    )


async def invitation_form(request: web.Request) -> web.Response:
    """GET: the form to choose a password; the link is not used until the form is sent."""
    return await _show_link(request, staff_accounts.INVITE)


async def accept_invitation(request: web.Request) -> web.Response:
    return await _use_link(request, staff_accounts.INVITE)


async def reset_form(request: web.Request) -> web.Response:
    return await _show_link(request, staff_accounts.RESET)


async def reset_password(request: web.Request) -> web.Response:
    return await _use_link(request, staff_accounts.RESET)


def _forgot_page(
    request: web.Request, *, status: int = 200, message: str | None = None, error: bool = False
) -> web.Response:
    return render(
        request,
        "staff_forgot.html",
        status=status,
        css=request.app.router["dashboard_stylesheet"].url_for(),
        action=request.app.router["staff_forgot"].url_for(),
        mailing=request.app[SETTINGS].staff.mail_from is not None,
        sign_in=request.app.router["dashboard"].url_for(),
        message=message,
        error=error,
    )


async def forgot_form(request: web.Request) -> web.Response:
    """GET /dashboard/forgot: ask for a reset link by email."""
    return _forgot_page(request)


async def forgot(request: web.Request) -> web.Response:
    """POST /dashboard/forgot: mail a reset link to an active account. The answer is the same
    whether or not the address has an account (and whether or not its own limit was reached),
    so the form tells no one which addresses have accounts."""
    if from_another_site(request):
        return _forgot_page(request, status=403, message=CROSS_SITE, error=True)
    settings = request.app[SETTINGS]
    if settings.staff.mail_from is None:
        return _forgot_page(request, status=503)
    ip = client_ip(request) or ""
    async with connection(request) as conn:
        allowed = await request.app[LIMITS].allow(conn, FORGOT_PER_IP, ip)
    if not allowed:
        response = _forgot_page(request, status=429, message=TOO_MANY, error=True)
        response.headers["Retry-After"] = str(FORGOT_PER_IP.retry_after)
        return response
    form = await request.post()
    email = text_field(form, "email")[:320]
    if not email:
        return _forgot_page(
            request, status=400, message="Give the email address of your account.", error=True
        )
    async with connection(request) as conn:
        if await request.app[LIMITS].allow(conn, FORGOT_PER_ADDRESS, email.strip().lower()):
            await staff_accounts.request_reset(conn, email, mail_base_url=settings.base_url)
    return _forgot_page(request, message=RESET_SENT)
