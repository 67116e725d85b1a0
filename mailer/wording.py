"""A tenant's own wording of a listed set of strings its subscribers read (the greeting, the
sign-up form's introduction, the footer's reason), per shipped language. Plain text: stored only
after a check (no HTML, no template syntax, one line), and escaped wherever it is shown. The
legally required labels (the unsubscribe link, the postal-address line) are not in the list."""

from __future__ import annotations

import re

import asyncpg

from mailer.db import queries, rows
from mailer.errors import InvalidInput
from mailer.i18n import LANGUAGES, translations

# What each key replaces: the newsletter's and the confirmation's "Hello NAME,", the sign-up
# form's introduction (none by default), the footer's "You receive this because ...".
WORDING_KEYS = ("greeting", "signup_intro", "footer_reason")
# Never overridable: CAN-SPAM and RFC 8058 make them the reader's way out and the sender's name.
REQUIRED_LABELS = ("unsubscribe_label", "postal_address")
MAX_TEXT = 300
_MARKUP = re.compile(r"<\s*[A-Za-z/!?]|&[A-Za-z#][A-Za-z0-9]*;")
_TEMPLATE = re.compile(r"\{\{|\{%|\{#|%\}|\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check(key: str, language: str, text: str) -> str:
    """The text to store, or InvalidInput naming what is wrong in one line."""
    if key in REQUIRED_LABELS:
        raise InvalidInput(
            f"{key} is a legally required label and cannot be reworded.", field="key"
        )
    if key not in WORDING_KEYS:
        raise InvalidInput(f"key must be one of {', '.join(WORDING_KEYS)}.", field="key")
    if language not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}.", field="language")
    text = text.strip()
    if not text:
        raise InvalidInput("The text is empty; clear the wording instead.", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"The text is longer than {MAX_TEXT} characters.", field="text")
    if _CONTROL.search(text):
        raise InvalidInput("The text must be one line of plain text.", field="text")
    if _TEMPLATE.search(text):
        raise InvalidInput("Plain text only: no template syntax ({{ }}, {% %}).", field="text")
    if _MARKUP.search(text):
        raise InvalidInput("Plain text only: no HTML tags or entities.", field="text")
    return text


async def set_wording(
    conn: asyncpg.Connection, tenant_id: int, key: str, language: str, text: str
) -> asyncpg.Record:
    checked = check(key, language, text)
    row: asyncpg.Record = await queries().wording.set_wording(
        conn, tenant_id=tenant_id, key=key, language=language, text=checked
    )
    return row


async def clear_wording(conn: asyncpg.Connection, tenant_id: int, key: str, language: str) -> bool:
    """Back to Optout's own words; False when there was nothing to clear."""
    check(key, language, "x")
    cleared: bool = await queries().wording.clear_wording(
        conn, tenant_id=tenant_id, key=key, language=language
    )
    return cleared


async def list_wording(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().wording.list_wording(conn, tenant_id=tenant_id))


async def by_language(conn: asyncpg.Connection, tenant_id: int) -> dict[str, dict[str, str]]:
    """{language: {key: text}} of a tenant, for the worker and the pages."""
    out: dict[str, dict[str, str]] = {}
    for row in await list_wording(conn, tenant_id):
        out.setdefault(row["language"], {})[row["key"]] = row["text"]
    return out


def defaults(language: str, sender_name: str) -> dict[str, str]:
    """Optout's own words for each key in ``language`` (what a tenant's wording replaces), as
    the templates write them; "" where there are none (the sign-up intro)."""
    catalog = translations(language)
    return {
        "greeting": catalog.gettext("Hello %(name)s,") % {"name": "NAME"},
        "signup_intro": "",
        "footer_reason": catalog.gettext("You receive this because you subscribed to %(name)s.")
        % {"name": sender_name},
    }
