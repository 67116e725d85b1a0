"""Languages of what a subscriber reads: the shipped catalogs (locale/, Babel), choosing a
language for a person or a request, and dates formatted for it in the tenant's time zone."""

from __future__ import annotations

import datetime as dt
from functools import cache

import babel.dates
from babel import Locale
from babel.support import NullTranslations, Translations

from mailer.resources import LOCALE_DIR

# English is the source language of the templates; the others have a catalog in locale/.
SOURCE_LANGUAGE = "en"
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es")
DOMAIN = "messages"


def N_(message: str) -> str:
    """Marks ``message`` for the catalogs where it is defined; it is translated where shown."""
    return message


def supported(code: str | None) -> str | None:
    """``code`` as a shipped language ("de", from "de", "DE" or "de-AT"), else None."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def negotiate(accept_language: str | None) -> str | None:
    """The shipped language a browser's Accept-Language header prefers most (RFC 9110 12.5.4
    quality values, q=0 excluded), or None when it names none of them."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = supported(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None


def choose(*candidates: str | None) -> str:
    """The first shipped language among ``candidates`` (most specific first), else English."""
    for candidate in candidates:
        language = supported(candidate)
        if language is not None:
            return language
    return SOURCE_LANGUAGE


@cache
def translations(language: str) -> NullTranslations:
    """The compiled catalog of ``language``, loaded once per process."""
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    catalog = Translations.load(str(LOCALE_DIR), [language], DOMAIN)
    if not isinstance(catalog, Translations):
        # A shipped language without its .mo is a broken install, not a fallback to English.
        raise FileNotFoundError(f"no compiled catalog for {language!r} in {LOCALE_DIR}")
    return catalog


# English dates as the British write them ("15 May 2026"), like the rest of our English.
_FORMAT_LOCALES = {"en": "en_GB"}


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(_FORMAT_LOCALES.get(language, language))


def format_date(moment: dt.datetime, language: str, zone: dt.tzinfo) -> str:
    """A day in the tenant's zone as ``language`` writes it ("15 May 2026", "15. Mai 2026")."""
    return babel.dates.format_date(moment.astimezone(zone), "long", locale=_locale(language))


@cache
def _datetime_pattern(language: str) -> str:
    # The locale's own way of joining a long date and a short time ("{1} 'at' {0}"), with the
    # zone's abbreviation after the time: no seconds, nothing glued together by us.
    locale = _locale(language)
    time = f"{locale.time_formats['short'].pattern} z"
    return str(locale.datetime_formats["long"]).format(time, locale.date_formats["long"].pattern)


def format_datetime(moment: dt.datetime, language: str, zone: dt.tzinfo) -> str:
    """A day and time in the tenant's zone, with the zone's name, as ``language`` writes it."""
    local = moment.astimezone(zone)
    return babel.dates.format_datetime(
        local, _datetime_pattern(language), tzinfo=zone, locale=_locale(language)
    )


def language_name(language: str) -> str:
    """The language's own name ("Deutsch"), for the links that switch to it."""
    name = Locale.parse(language).get_display_name() or language
    return name[:1].upper() + name[1:]
