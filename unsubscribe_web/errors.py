"""Map domain errors to HTTP replies in one place: an HTML page, or JSON for machine routes."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from mailer.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InvalidAddress,
    InvalidInput,
    NotFound,
    OptoutError,
    Suppressed,
    TooBusy,
    Unauthorized,
)
from mailer.i18n import N_, SOURCE_LANGUAGE, translations
from mailer.rights.privacy import LinkUsed
from mailer.tokens import ExpiredToken, InvalidToken
from unsubscribe_web.language import environment, page_language

log = logging.getLogger(__name__)

# Routes whose clients are programs: they get {"error": {"code", "message", "field"}}.
JSON_PREFIXES = ("/api/", "/hooks/")


# The messages of the link errors, shown on the error page in the reader's language (their
# default messages are their docstrings: mailer/tokens.py, mailer/rights/privacy.py).
LINK_MESSAGES = (
    N_("The link is not valid."),
    N_("The link has expired."),
    N_("This link was already used or has expired; ask for a new one from the preference page."),
)


# The error kinds a subscriber can meet, whose default messages (their docstrings, repeated
# here for the catalogs; a unit test holds them equal) stand in for a message not translated.
ERROR_DEFAULTS = {
    OptoutError: N_("Something went wrong."),
    InvalidInput: N_("The input is not valid."),
    InvalidAddress: N_("The email address is not valid."),
    NotFound: N_("Not found."),
    Conflict: N_("That conflicts with the current state."),
    Suppressed: N_("The address is suppressed and cannot be subscribed by this action."),
    DatabaseUnavailable: N_("The database cannot be reached."),
}


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
    if isinstance(error, TooBusy):
        return 429
    return 500


def error_response(request: web.Request, error: OptoutError) -> web.Response:
    status = status_for(error)
    headers = {"Retry-After": "30" if status == 503 else "1"} if status in (429, 503) else {}
    if request.path.startswith(JSON_PREFIXES):
        body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
        return web.json_response(body, status=status, headers=headers)
    link = None
    if isinstance(error, ExpiredToken | LinkUsed):
        link = "expired"  # a used single-use link reads the same: ask for a new one
    elif isinstance(error, InvalidToken):
        link = "invalid"
    response = localized_error_page(request, status, error, link=link)
    response.headers.update(headers)
    return response


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OptoutError as error:
        if status_for(error) >= 500:
            log.warning("request failed: %s %s", error.code, error.message)
        return error_response(request, error)


def localized_message(message: str | OptoutError, language: str) -> str:
    """``message`` in ``language``: our own messages are in the catalogs (their numbers put in
    after translation); a message the catalogs lack (a library's words) gives way to its error
    kind's translated default, so a reader never gets a sentence in English."""
    if isinstance(message, str):
        return translations(language).gettext(message)
    if language == SOURCE_LANGUAGE:
        return message.message
    catalog = translations(language)
    defaults = [
        (kind.__doc__ or "").strip() for kind in type(message).__mro__ if kind in ERROR_DEFAULTS
    ]
    for msgid in (message.msgid, *defaults):
        translated = catalog.gettext(msgid)
        if translated != msgid:
            if msgid == message.msgid and message.params:
                return translated % message.params
            return translated
    return message.message


def localized_error_page(
    request: web.Request, status: int, message: str | OptoutError, *, link: str | None = None
) -> web.Response:
    """The error page in the reader's language (``localized_message``); ``link`` ("invalid"
    or "expired") says what to do next about a link that does not work."""
    language = page_language(request)
    env = environment(request, language)
    text = localized_message(message, language)
    page = env.get_template("error.html").render(
        status=status, message=text, link=link, languages=[]
    )
    return web.Response(
        text=page,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Language": language},
    )
