"""Every subscriber page in every shipped language, in Chromium (issue 19, STANDARDS 62): the
page shows that language (known strings and `<html lang>`), axe-core finds no serious or
critical violation, and nothing overflows a 320 px wide screen. Also the keyboard-only flows
(unsubscribe, preference centre, sign-up) with visible focus, and the dev outbox on a phone."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from playwright.async_api import Browser, Page, ViewportSize

from mailer import catcher, tenants
from mailer.db import create_pool
from mailer.i18n import LANGUAGES
from mailer.rights import policy, privacy
from mailer.sending import compose
from mailer.sending.worker import Worker
from mailer.tokens import LinkClaims, Purpose
from tests.browser.conftest import _free_port, serving
from tests.conftest import probes
from tests.support.axe import assert_accessible
from tests.support.mailer_env import mail_settings
from tests.support.web import seed

PHONE: ViewportSize = {"width": 320, "height": 640}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}

# Known strings of each page, per language (the catalogs' words, checked as a reader sees them).
WORDS = {
    "en": {
        "landing": "Unsubscribe from Weekly news?",
        "button": "Unsubscribe",
        "done": "You are unsubscribed",
        "undo": "Undo: subscribe me again",
        "again": "You are subscribed again",
        "preferences": "What Acme sends you",
        "save": "Save my choices",
        "signup": "Subscribe to Weekly news",
        "email": "Email address",
        "age": "I am over 13",
        "subscribe": "Subscribe",
        "sent": "Check your inbox",
        "confirm": "Confirm your subscription",
        "confirm_button": "Confirm my subscription",
        "confirmed": "You are subscribed",
        "data": "Your data",
        "show": "Show my data",
        "delete": "Delete your data?",
        "policy": "Privacy policy of Acme News",
        "changes": "Our privacy policy changes on",
        "broken": "This link does not work",
        "versions": "Privacy policy versions of Acme News",
        "version": "Privacy policy of Acme News, version 2",
        "spooled": "Your unsubscribe is recorded",
        "already": "You are already subscribed",
        "new_address": "New address",
        "address_sent": "Check your new mailbox",
        "address_changed": "Your address is changed",
        "verified": "Thank you: your request is confirmed",
        "deleted": "Your data is deleted",
    },
    "de": {
        "landing": "Weekly news abbestellen?",
        "button": "Abbestellen",
        "done": "Sie sind abgemeldet",
        "undo": "Rückgängig: mich wieder anmelden",
        "again": "Sie sind wieder angemeldet",
        "preferences": "Was Acme Ihnen sendet",
        "save": "Meine Auswahl speichern",
        "signup": "Weekly news abonnieren",
        "email": "E-Mail-Adresse",
        "age": "Ich bin älter als 13 Jahre",
        "subscribe": "Abonnieren",
        "sent": "Sehen Sie in Ihren Posteingang",
        "confirm": "Bestätigen Sie Ihr Abonnement",
        "confirm_button": "Mein Abonnement bestätigen",
        "confirmed": "Sie sind angemeldet",
        "data": "Ihre Daten",
        "show": "Meine Daten anzeigen",
        "delete": "Ihre Daten löschen?",
        "policy": "Datenschutzerklärung von Acme News",
        "changes": "Unsere Datenschutzerklärung ändert sich am",
        "broken": "Dieser Link funktioniert nicht",
        "versions": "Versionen der Datenschutzerklärung von Acme News",
        "version": "Datenschutzerklärung von Acme News, Version 2",
        "spooled": "Ihre Abbestellung ist erfasst",
        "already": "Sie sind bereits angemeldet",
        "new_address": "Neue Adresse",
        "address_sent": "Sehen Sie in Ihr neues Postfach",
        "address_changed": "Ihre Adresse ist geändert",
        "verified": "Danke: Ihre Anfrage ist bestätigt",
        "deleted": "Ihre Daten sind gelöscht",
    },
    "fr": {
        "landing": "Se désabonner de Weekly news ?",
        "button": "Se désabonner",
        "done": "Vous êtes désabonné",
        "undo": "Annuler : me réabonner",
        "again": "Vous êtes de nouveau abonné",
        "preferences": "Ce que Acme vous envoie",
        "save": "Enregistrer mes choix",
        "signup": "S\u2019abonner à Weekly news",
        "email": "Adresse e-mail",
        "age": "J\u2019ai plus de 13 ans",
        "subscribe": "S\u2019abonner",
        "sent": "Consultez votre boîte de réception",
        "confirm": "Confirmez votre abonnement",
        "confirm_button": "Confirmer mon abonnement",
        "confirmed": "Vous êtes abonné",
        "data": "Vos données",
        "show": "Afficher mes données",
        "delete": "Supprimer vos données ?",
        "policy": "Politique de confidentialité de Acme News",
        "changes": "Notre politique de confidentialité change le",
        "broken": "Ce lien ne fonctionne pas",
        "versions": "Versions de la politique de confidentialité de Acme News",
        "version": "Politique de confidentialité de Acme News, version 2",
        "spooled": "Votre désabonnement est enregistré",
        "already": "Vous êtes déjà abonné",
        "new_address": "Nouvelle adresse",
        "address_sent": "Consultez votre nouvelle boîte aux lettres",
        "address_changed": "Votre adresse est modifiée",
        "verified": "Merci : votre demande est confirmée",
        "deleted": "Vos données sont supprimées",
    },
    "es": {
        "landing": "¿Darse de baja de Weekly news?",
        "button": "Darme de baja",
        "done": "Se ha dado de baja",
        "undo": "Deshacer: suscribirme de nuevo",
        "again": "Está suscrito de nuevo",
        "preferences": "Lo que Acme le envía",
        "save": "Guardar mis opciones",
        "signup": "Suscribirse a Weekly news",
        "email": "Correo electrónico",
        "age": "Tengo más de 13 años",
        "subscribe": "Suscribirme",
        "sent": "Revise su bandeja de entrada",
        "confirm": "Confirme su suscripción",
        "confirm_button": "Confirmar mi suscripción",
        "confirmed": "Está suscrito",
        "data": "Sus datos",
        "show": "Mostrar mis datos",
        "delete": "¿Eliminar sus datos?",
        "policy": "Política de privacidad de Acme News",
        "changes": "Nuestra política de privacidad cambia el",
        "broken": "Este enlace no funciona",
        "versions": "Versiones de la política de privacidad de Acme News",
        "version": "Política de privacidad de Acme News, versión 2",
        "spooled": "Su baja está registrada",
        "already": "Ya está suscrito",
        "new_address": "Nueva dirección",
        "address_sent": "Revise su nuevo buzón",
        "address_changed": "Su dirección ha cambiado",
        "verified": "Gracias: su solicitud está confirmada",
        "deleted": "Sus datos se han eliminado",
    },
}


@pytest.fixture
async def reader(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A browser whose languages are the test's (Accept-Language), JavaScript on for axe."""
    callspec = getattr(request.node, "callspec", None)
    language = callspec.params.get("language", "en") if callspec else "en"
    context = await browser.new_context(locale=language, java_script_enabled=True)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        await context.close()


async def check(page: Page, language: str, text: str) -> None:
    """The page speaks ``language``: its lang, a known string; axe finds nothing serious; it
    fits a 320 px screen with no horizontal scrolling (STANDARDS 62: 3.1.1, 1.4.10)."""
    assert await page.locator("html").get_attribute("lang") == language
    body = await page.locator("main").inner_text()
    assert text in body, f"{page.url}: {text!r} not in {body!r}"
    await assert_accessible(page)
    await page.set_viewport_size(PHONE)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide at 320px"
    await page.set_viewport_size(DESKTOP)


async def send_mail(settings, db_dsn, port: int) -> None:
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, mail_settings(settings, port, allow_unsigned=True)).run(until_idle=True)
    finally:
        await pool.close()


async def publish_policies(conn) -> None:
    """v1 in effect, v2 announced: the page shows the notice and the diff (with Markdown)."""
    tenant = await tenants.get_tenant(conn, "acme")
    now = dt.datetime.now(dt.UTC)
    await policy.publish(
        conn,
        tenant=tenant,
        body="# Our policy\n\n## Sharing\n\nWe **never** share your address.\n",
        summary="First version",
        effective_at=now - dt.timedelta(days=20),
        now=now - dt.timedelta(days=60),
    )
    long_line = "https://example.org/" + "a-very-long-unbroken-path-" * 8
    await policy.publish(
        conn,
        tenant=tenant,
        body=f"# Our policy\n\n## Sharing\n\nWe share it with **partners you pick**: {long_line}\n",
        summary="Partners you choose",
        effective_at=now + dt.timedelta(days=40),
        now=now - dt.timedelta(days=1),
    )


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_subscriber_page_in_every_language(
    reader, language, web_server, web_settings, conn, db_dsn, smtp_sink
):
    """STANDARDS 62: landing, answer, undo, one-click answer, preference centre, sign-up and
    confirmation, data pages, policy page and a broken link's page, each in ``language``."""
    words = WORDS[language]
    base = web_settings.base_url
    world = await seed(conn)
    ada = world.subscribers[0]
    await probes().set_subscriber_language(conn, subscriber_id=ada, language=language)
    page = reader

    await page.goto(f"{base}/u/{world.one_click(ada)}")
    await check(page, language, words["landing"])
    await page.get_by_role("button", name=words["button"], exact=True).click()
    await page.wait_for_selector("#done")
    await check(page, language, words["done"])
    await page.get_by_role("button", name=words["undo"]).click()
    await page.wait_for_selector("#done")
    await check(page, language, words["again"])

    # The one-click answer, as a mail provider's POST would fetch it (RFC 8058 body).
    await page.set_content(
        f'<html lang="en"><title>post</title><form method="post" action="{base}/u/'
        f'{world.one_click(ada)}"><input name="List-Unsubscribe" value="One-Click">'
        '<button id="go">go</button></form></html>'
    )
    await page.click("#go")
    await page.wait_for_selector("#done")
    await check(page, language, words["done"])

    await page.goto(f"{base}/p/{world.preferences(ada)}")
    await check(page, language, words["preferences"])

    await page.goto(f"{base}/s/acme/news")
    await check(page, language, words["signup"])
    await page.get_by_label(words["email"]).fill(f"reader-{language}@example.org")
    await page.get_by_label(words["age"]).check()
    await page.get_by_role("button", name=words["subscribe"], exact=True).click()
    await page.wait_for_selector("#done")
    await check(page, language, words["sent"])
    assert await probes().subscriber_language(conn, email=f"reader-{language}@example.org") == (
        language
    )
    await send_mail(web_settings, db_dsn, smtp_sink.port)
    [confirmation] = await smtp_sink.wait_for(1)
    link = re.search(rb"http://127\.0\.0\.1:\d+/c/[A-Za-z0-9_-]+", confirmation.data)
    assert link is not None
    await page.goto(link.group(0).decode())
    await check(page, language, words["confirm"])
    await page.get_by_role("button", name=words["confirm_button"]).click()
    await page.wait_for_selector("#done")
    await check(page, language, words["confirmed"])

    await privacy.send_data_link(conn, web_settings, tenant_id=world.tenant, subscriber_id=ada)
    [data_link] = [
        d["payload"]["access_url"]
        async for d in probes().transactional_deliveries(conn)
        if d["template"] == "data_access"
    ]
    await page.goto(data_link)
    await check(page, language, words["data"])
    await page.get_by_role("button", name=words["show"]).click()
    await page.wait_for_selector("#delete")
    await check(page, language, words["data"])
    await page.click("#delete")
    await page.wait_for_selector("#confirm-delete")
    await check(page, language, words["delete"])

    await publish_policies(conn)
    await page.goto(f"{base}/policy/acme")
    await check(page, language, words["policy"])
    await check(page, language, words["changes"])
    diff = await page.locator("#policy-diff").inner_text()
    assert "**" not in diff and "## " not in diff, "the diff shows raw Markdown"
    assert await page.locator("#policy-text").get_attribute("lang") == "en"

    await page.goto(f"{base}/u/not-a-real-token")
    await check(page, language, words["broken"])


async def latest_link(conn, template: str, key: str) -> str:
    """The link in the newest queued transactional mail of ``template``."""
    links = [
        str(d["payload"][key])
        async for d in probes().transactional_deliveries(conn)
        if d["template"] == template
    ]
    return links[-1]


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_rarer_answers_in_every_language(
    reader, language, web_settings, conn, pg_proxy, smtp_sink
):
    """STANDARDS 62: the pages a reader meets less often, each in ``language`` with axe and
    the 320 px check: the policy's versions and one version, confirm's "already subscribed",
    the spooled unsubscribe (Postgres away), and the data pages' answers: address change sent
    and done, request verified, data deleted."""
    words = WORDS[language]
    # The app reaches Postgres through a proxy, so the test can take the database away.
    port = _free_port()
    settings = dataclasses.replace(
        web_settings, database_url=pg_proxy.dsn, base_url=f"http://127.0.0.1:{port}"
    )
    base = settings.base_url
    async with serving(settings):
        world = await seed(conn, subscribers=2)
        ada, bob = world.subscribers
        for person in world.subscribers:
            await probes().set_subscriber_language(conn, subscriber_id=person, language=language)
        page = reader

        await publish_policies(conn)
        await page.goto(f"{base}/policy/acme/versions")
        await check(page, language, words["versions"])
        await page.locator("#policy-versions a").first.click()
        await page.wait_for_selector("#policy-text")
        await check(page, language, words["version"])

        confirm = world.keyring.sign(
            LinkClaims.issue(Purpose.CONFIRM, world.tenant, ada, world.topics["news"])
        )
        await page.goto(f"{base}/c/{confirm}")
        await check(page, language, words["already"])

        # The data pages: an address change (sent, then used), a verified request, erasure.
        await privacy.send_data_link(conn, settings, tenant_id=world.tenant, subscriber_id=ada)
        await page.goto(await latest_link(conn, "data_access", "access_url"))
        await page.click("#use-link")
        await page.wait_for_selector("#delete")
        await page.get_by_label(words["new_address"]).fill(f"new-{language}@example.org")
        await page.click("#change-address")
        await page.wait_for_selector("#done")
        await check(page, language, words["address_sent"])
        await page.goto(await latest_link(conn, "confirm_address", "confirm_url"))
        await page.click("#use-link")
        await page.wait_for_selector("#done")
        await check(page, language, words["address_changed"])

        tenant = await tenants.get_tenant(conn, "acme")
        await privacy.request_address_change(
            conn,
            settings,
            tenant=tenant,
            subscriber_id=ada,
            new_email=f"other-{language}@example.org",
            now=dt.datetime.now(dt.UTC),
        )
        verify = await privacy.create_data_link(
            conn, settings.keyring(), tenant_id=world.tenant, subscriber_id=ada, purpose="verify"
        )
        await page.goto(privacy.data_url(settings, verify))
        await page.click("#use-link")
        await page.wait_for_selector("#done")
        await check(page, language, words["verified"])

        await privacy.send_data_link(conn, settings, tenant_id=world.tenant, subscriber_id=ada)
        await page.goto(await latest_link(conn, "data_access", "access_url"))
        await page.click("#use-link")
        await page.click("#delete")
        await page.click("#confirm-delete")
        await page.wait_for_selector("#done")
        await check(page, language, words["deleted"])

        # Postgres away: the landing page still offers the button, and pressing it is
        # answered from the local spool (DESIGN G2), in the reader's browser language.
        await page.goto(f"{base}/u/{world.one_click(bob)}")
        await pg_proxy.cut()
        await page.get_by_role("button", name=words["button"], exact=True).click()
        await page.wait_for_selector("#done")
        await check(page, language, words["spooled"])
        await pg_proxy.restore()


async def focus_by_tab(page: Page, name: str, limit: int = 30) -> None:
    """Press Tab until the control named ``name`` has focus; its focus must be visible."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const e = document.activeElement;"
            " const label = e.labels && e.labels[0] ? e.labels[0].innerText : '';"
            " return (e.innerText || '') + '|' + label; }"
        )
        if name in focused:
            outline = await page.evaluate(
                "() => getComputedStyle(document.activeElement).outlineStyle"
            )
            assert outline not in ("", "none"), f"focus on {name!r} is not visible"
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_the_three_flows_work_with_the_keyboard_alone(reader, web_server, web_settings, conn):
    """STANDARDS 62 (2.1.1, 2.4.7): unsubscribe, the preference centre and sign-up with Tab,
    Space and Enter only; the focused control always shows a focus ring."""
    base = web_settings.base_url
    world = await seed(conn)
    ada = world.subscribers[0]
    page = reader

    await page.goto(f"{base}/u/{world.one_click(ada)}")
    await focus_by_tab(page, "Unsubscribe")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#done")
    assert await probes().subscription_state(
        conn, subscriber_id=ada, topic_id=world.topics["news"]
    ) == ("unsubscribed")

    await page.goto(f"{base}/p/{world.preferences(ada)}")
    await focus_by_tab(page, "Special offers")
    await page.keyboard.press("Space")
    await focus_by_tab(page, "Save my choices")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#notice")
    assert await probes().subscription_state(
        conn, subscriber_id=ada, topic_id=world.topics["offers"]
    ) == ("unsubscribed")

    await page.goto(f"{base}/s/acme/news")
    await focus_by_tab(page, "Email address")
    await page.keyboard.type("keys@example.org")
    await focus_by_tab(page, "I am over 13")
    await page.keyboard.press("Space")
    await focus_by_tab(page, "Subscribe")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#done")
    assert await probes().subscriber_language(conn, email="keys@example.org") == "en"


async def test_a_sign_up_error_is_announced_next_to_its_field(
    reader, web_server, web_settings, conn
):
    """STANDARDS 62 (3.3.1, 3.3.2): the server's answer to a bad address names the field: the
    message sits under the input, which points at it (aria-describedby) and is aria-invalid."""
    await seed(conn)
    page = reader
    await page.goto(f"{web_settings.base_url}/s/acme/news")
    # The browser's own check would stop "not-an-address"; a server-side refusal is what a
    # non-validating client (or an address the browser accepts and we do not) gets.
    await page.evaluate("document.querySelector('form').noValidate = true")
    await page.get_by_label("Email address").fill("someone@-bad-.example")
    await page.get_by_label("I am over 13").check()
    await page.get_by_role("button", name="Subscribe", exact=True).click()
    await page.wait_for_selector("#email-error")
    field = page.get_by_label("Email address")
    assert await field.get_attribute("aria-invalid") == "true"
    assert await field.get_attribute("aria-describedby") == "email-error"
    assert await page.locator("#error").get_attribute("role") == "alert"
    assert "valid email address" in await page.locator("#email-error").inner_text()
    await check(page, "en", "Please enter a valid email address.")


@pytest.fixture
async def outbox_server(web_settings, conn, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    await tenants.create_tenant(conn, "acme", name="Acme", sender_address="news@acme.example")
    folder = tmp_path / "outbox"
    smtp = await catcher.start_catcher(folder)
    port = _free_port()
    settings = dataclasses.replace(web_settings, base_url=f"http://127.0.0.1:{port}")
    try:
        async with serving(settings, outbox_dir=folder):
            yield settings.base_url, smtp.sockets[0].getsockname()[1]
    finally:
        smtp.close()
        await smtp.wait_closed()


async def test_the_dev_outbox_fits_a_phone(reader, outbox_server):
    """STANDARDS 62 (1.4.10): the outbox list and a message, with a long envelope, at 320 px."""
    base, port = outbox_server
    sender = compose.Sender(
        from_name="Acme Newsletter Company With A Long Name",
        from_address="news@acme.example",
        domain="acme.example",
        postal_address="1 Road, Town",
        list_id="Newsletter <news.acme.example>",
        feedback_id="1:1:1:optout",
    )
    prepared = compose.prepare(
        "newsletter", sender, "Autumn news", {"headline": "News", "intro": "Hi.", "blocks": []}
    )
    long_address = "a.very.long.local.part.for.testing.wrapping@subdomain.example.org"
    raw = prepared.render(
        compose.Recipient(
            to_address=long_address,
            to_name="Ada",
            message_id="<c1.s1@acme.example>",
            unsubscribe_url=f"{base}/u/{'T' * 120}",
            mailto_unsubscribe="unsubscribe+abc@acme.example",
            preferences_url=f"{base}/p/{'P' * 120}",
        )
    )
    await aiosmtplib.send(
        raw,
        sender="bounces+" + "b" * 60 + "@acme.example",
        recipients=[long_address],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
    )
    page = reader
    await page.set_viewport_size(PHONE)
    await page.goto(f"{base}/dev/outbox")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await page.get_by_role("link", name="Autumn news").click()
    await page.wait_for_selector("#dkim")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the message page is {width}px wide at 320px"
