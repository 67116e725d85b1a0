"""The workspace's wording page (issue 19): a tenant's own greeting, sign-up intro and footer
reason per language, set and cleared with the same checks, rights and audit lines as the admin
API's /tenants/{t}/wording (mailer.wording does the checking; the page only parses and shows).
"""

from __future__ import annotations

from aiohttp import web

from mailer import wording
from mailer.errors import OptoutError
from mailer.i18n import LANGUAGES, language_name
from unsubscribe_web.dashboard.workspace import Workspace, opened, posted, see_other, text_field

BASE = "/dashboard/t/{tenant}/wording"
NOTICES = {
    "set": "Saved: subscribers reading that language now get your words.",
    "cleared": "Cleared: subscribers reading that language get Optout's own words again.",
    "unchanged": "There was nothing to clear: Optout's own words were in use already.",
}
# What each key replaces, for the staff reading the page.
EXPLAINED = {
    "greeting": (
        "Greeting",
        "The first line of newsletters, policy notices and Optout's own mail, in place of "
        '"Hello NAME," (or "Hello," for a person without a name).',
    ),
    "signup_intro": (
        "Sign-up intro",
        "A paragraph above the sign-up form; there is none unless you write one.",
    ),
    "footer_reason": (
        "Footer reason",
        'Why the reader gets the mail, in place of "You receive this because you subscribed '
        'to SENDER." The unsubscribe link and the postal address stay as they are.',
    ),
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE, wording_page, name="ws_wording")
    app.router.add_post(BASE, set_words, name="ws_wording_set")
    app.router.add_post(BASE + "/clear", clear_words, name="ws_wording_clear")


async def wording_page(request: web.Request) -> web.Response:
    """GET: every key in every shipped language, the tenant's words or Optout's own."""
    async with opened(request, "list_tenant_wording") as ws:
        return await _page(ws)


async def set_words(request: web.Request) -> web.Response:
    """POST: one key in one language; refused with the one reason next to its field, the
    submitted text kept, nothing stored."""
    async with posted(request, "set_tenant_wording") as (ws, form):
        key, language = text_field(form, "key"), text_field(form, "language")
        text = text_field(form, "text")
        try:
            async with ws.conn.transaction():
                await wording.set_wording(ws.conn, ws.tenant_id, key, language, text)
                await ws.audit("set_tenant_wording", ("tenant", ws.tenant_id))
        except OptoutError as exc:
            return await _page(ws, error=(key, language, exc), text=text, status=400)
        target = ws.url("ws_wording", {"done": "set"})
    return see_other(f"{target}#{key}-{language}")


async def clear_words(request: web.Request) -> web.Response:
    """POST: back to Optout's own words for one key in one language."""
    async with posted(request, "clear_tenant_wording") as (ws, form):
        key, language = text_field(form, "key"), text_field(form, "language")
        try:
            async with ws.conn.transaction():
                cleared = await wording.clear_wording(ws.conn, ws.tenant_id, key, language)
                if cleared:
                    await ws.audit("clear_tenant_wording", ("tenant", ws.tenant_id))
        except OptoutError as exc:
            return await _page(ws, error=(key, language, exc), status=400)
        target = ws.url("ws_wording", {"done": "cleared" if cleared else "unchanged"})
    return see_other(f"{target}#{key}-{language}")


async def _page(
    ws: Workspace,
    *,
    error: tuple[str, str, OptoutError] | None = None,
    text: str = "",
    status: int = 200,
) -> web.Response:
    words = await wording.by_language(ws.conn, ws.tenant_id)
    sender = ws.tenant["sender_name"] or ws.tenant["name"]
    # An error that names no shown field (a forged key or language) goes above the forms.
    shown = {(k, lang) for k in wording.WORDING_KEYS for lang in LANGUAGES}
    return ws.page(
        "workspace/wording.html",
        status=status,
        keys=[(key, *EXPLAINED[key]) for key in wording.WORDING_KEYS],
        shipped=[(lang, language_name(lang)) for lang in LANGUAGES],
        words=words,
        defaults={lang: wording.defaults(lang, sender) for lang in LANGUAGES},
        error=error,
        stray_error=error[2] if error and error[:2] not in shown else None,
        text=text,
        max_text=wording.MAX_TEXT,
        notice=NOTICES.get(ws.request.query.get("done", "")),
    )
