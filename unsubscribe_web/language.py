"""The language of a page: what a handler chose for the person, else ``?lang=``, the browser's
Accept-Language or a tenant's default; and the per-language Jinja environments (gettext
catalogs and date filters) that render it. Imports no handler module, so the middlewares'
error pages use it too."""

from __future__ import annotations

from collections.abc import Callable

import jinja2
from aiohttp import web

from mailer.i18n import (
    LANGUAGES,
    choose,
    format_date,
    format_datetime,
    language_name,
    negotiate,
    translations,
)
from unsubscribe_web.keys import LOCALIZED_PAGES

# Where a handler leaves the language it chose for this request (the person's stored one).
LANGUAGE = web.RequestKey("language", str)
# `?lang=xx` shows a page in another language; a GET with it stores nothing.
LANGUAGE_PARAMETER = "lang"


def localized_environments(
    make: Callable[[], jinja2.Environment],
) -> dict[str, jinja2.Environment]:
    """One environment per shipped language from ``make``, each with its catalog and its date
    filters. Separate environments, not overlays: an overlay shares its parent's i18n
    extension, whose install_gettext_translations writes into the parent's globals."""
    environments = {}
    for language in LANGUAGES:
        env = make()
        env.install_gettext_translations(  # type: ignore[attr-defined]
            translations(language), newstyle=True
        )
        env.filters["day"] = lambda moment, zone, lang=language: format_date(moment, lang, zone)
        env.filters["moment"] = lambda moment, zone, lang=language: format_datetime(
            moment, lang, zone
        )
        env.globals["lang"] = language
        environments[language] = env
    return environments


def use_language(request: web.Request, *stored: str | None) -> str:
    """Pages of a known person: ``?lang=`` if given, else their stored language or their
    tenant's default (the query already folds the two)."""
    language = choose(request.query.get(LANGUAGE_PARAMETER), *stored)
    request[LANGUAGE] = language
    return language


def page_language(request: web.Request, *fallback: str | None) -> str:
    """The language of this request's page: what a handler chose, else ``?lang=``, else the
    browser's Accept-Language, else ``fallback`` (a tenant's default), else English."""
    chosen: str | None = request.get(LANGUAGE)
    if chosen is not None:
        return chosen
    return choose(
        request.query.get(LANGUAGE_PARAMETER),
        negotiate(request.headers.get("Accept-Language")),
        *fallback,
    )


def environment(request: web.Request, language: str | None = None) -> jinja2.Environment:
    return request.app[LOCALIZED_PAGES][language or page_language(request)]


def language_links(request: web.Request, language: str) -> list[dict[str, str]]:
    """Links to this same page in the other languages; only on GET pages (a link is a GET)."""
    if request.method not in ("GET", "HEAD"):
        return []
    links = []
    for other in LANGUAGES:
        if other == language:
            continue
        url = request.rel_url.update_query({LANGUAGE_PARAMETER: other})
        links.append({"code": other, "name": language_name(other), "url": str(url)})
    return links
