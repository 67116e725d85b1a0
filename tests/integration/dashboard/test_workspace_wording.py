"""The workspace's wording page (issue 19): a marketer sets and clears a tenant's greeting,
sign-up intro and footer reason per language with the API's checks, rights and audit lines;
a refusal shows next to its field and stores nothing; readers see the words where they apply."""

from __future__ import annotations

import re

import pytest

from mailer import wording
from tests.conftest import probes
from tests.support.workspace import Tenant, csrf_of, ready_tenant, sign_in, state

PAGE = "/dashboard/t/acme/wording"
GERMAN = {"Accept-Language": "de"}


@pytest.fixture
async def acme(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "acme", people=1)


async def page_of(client, cookie) -> str:
    response = await client.get(PAGE, headers=cookie)
    assert response.status == 200
    text: str = await response.text()
    return text


async def test_a_marketer_sets_refuses_and_clears_wording_with_audit(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["marketing"])
    html = await page_of(client, cookie)
    # Optout's own words are shown per language, so staff know what they replace.
    assert '<span lang="de">Hallo NAME,</span>' in html
    assert 'id="signup_intro-fr-text"' in html and "Clear:" not in html
    csrf = csrf_of(html)

    async def send(path: str, **form: str):
        data = form | {"csrf": csrf}
        return await client.post(path, data=data, headers=cookie, allow_redirects=False)

    saved = await send(PAGE, key="signup_intro", language="de", text="Einmal pro Woche & gratis.")
    assert saved.status == 303
    assert saved.headers["Location"] == f"{PAGE}?done=set#signup_intro-de"
    assert await wording.by_language(conn, acme.id) == {
        "de": {"signup_intro": "Einmal pro Woche & gratis."}
    }
    shown = await page_of(client, cookie)
    assert 'value="Einmal pro Woche &amp; gratis."' in shown
    assert "Clear: back to Optout's words in Deutsch" in shown
    # The sign-up form in German has the intro, escaped; in English it has none.
    signup = await (await client.get("/s/acme/newsletter", headers=GERMAN)).text()
    assert '<p id="intro">Einmal pro Woche &amp; gratis.</p>' in signup

    before = await state(conn)
    for form, message in (
        ({"key": "greeting", "language": "fr", "text": "<b>Bonjour</b>"}, "no HTML"),
        ({"key": "footer_reason", "language": "es", "text": "{{ 7 * 7 }}"}, "template syntax"),
        ({"key": "greeting", "language": "it", "text": "Ciao,"}, "language must be one of"),
        ({"key": "unsubscribe_label", "language": "de", "text": "Weg"}, "legally required"),
    ):
        refused = await send(PAGE, **form)
        assert refused.status == 400, form
        text = await refused.text()
        assert message in text
        field = f"{form['key']}-{form['language']}"
        if f'id="{field}-text"' in text:  # a shown field: the error sits under it
            assert re.search(rf'id="{field}-error" role="alert">Not saved: [^<]*{message}', text)
            assert f'aria-describedby="{field}-default {field}-error" aria-invalid="true"' in text
            assert f'value="{form["text"]}"' in text.replace("&lt;", "<").replace("&gt;", ">")
        else:
            assert 'id="form-error" role="alert"' in text
        assert await state(conn) == before, form

    cleared = await send(f"{PAGE}/clear", key="signup_intro", language="de")
    assert cleared.headers["Location"] == f"{PAGE}?done=cleared#signup_intro-de"
    assert await wording.by_language(conn, acme.id) == {}
    again = await send(f"{PAGE}/clear", key="signup_intro", language="de")
    assert again.headers["Location"] == f"{PAGE}?done=unchanged#signup_intro-de"
    actions = [a["action"] async for a in probes().audit_entries(conn)]
    assert actions.count("set_tenant_wording") == 1
    assert actions.count("clear_tenant_wording") == 1


async def test_roles_without_the_right_read_the_words_but_get_no_forms(client, conn, acme):
    await wording.set_wording(conn, acme.id, "greeting", "es", "Buenos días,")
    for role in ("compliance", "client"):
        html = await page_of(client, await sign_in(client, acme.tokens[role]))
        assert '<span lang="es">Buenos días,</span> (yours)' in html
        assert '<form method="post" action="/dashboard/t/acme/wording' not in html


async def test_get_and_head_on_the_wording_page_change_nothing(client, conn, acme):
    """G4: link scanners and prefetchers only read."""
    cookie = await sign_in(client, acme.tokens["marketing"])
    before = await state(conn)
    for path in (PAGE, f"{PAGE}/clear"):
        for method in ("GET", "HEAD"):
            response = await client.request(method, path, headers=cookie, allow_redirects=False)
            assert response.status in (200, 405), (method, path)
    assert await state(conn) == before
