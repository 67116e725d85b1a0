"""Subscriber pages and Optout's own mail in the reader's language (issue 19): chosen from the
person's stored language, else the tenant's default; on pages without a person from
Accept-Language; `?lang=` shows another language and stores nothing."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import pytest

from mailer import api_tokens, tenants, wording
from mailer.consent import imports
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.errors import InvalidInput
from mailer.rights import policy, privacy
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import TEST_HASH_KEY, probes
from tests.support.mailer_env import mail_settings
from tests.support.web import seed
from unsubscribe_web.app import create_app
from unsubscribe_web.keys import ONE_CLICK_PAGES

SIGNUP = "/s/acme/news"
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, kind: str) -> str:
    found = message.get_body((kind,))
    assert found is not None
    content: str = found.get_content()
    return content


async def send_queued(db_dsn, settings, port) -> None:
    pool = await create_pool(db_dsn, max_size=2)
    try:
        await Worker(pool, mail_settings(settings, port, allow_unsigned=True)).run(until_idle=True)
    finally:
        await pool.close()


async def send_newsletter(conn, tenant_id, settings, db_dsn, port, *, audience: int) -> None:
    """A newsletter to the seeded "news" topic, started and sent to the loopback sink."""
    campaign = await campaigns.create(
        conn,
        tenant_id=tenant_id,
        topic_slug="news",
        name="Weekly",
        template="newsletter",
        subject="Weekly news",
        content={"headline": "News", "intro": "Hello.", "blocks": []},
    )
    sending = mail_settings(settings, port, allow_unsigned=True)
    assert await campaigns.start(conn, sending, tenant_id, campaign["id"]) == audience
    await send_queued(db_dsn, settings, port)


async def test_a_german_sign_up_gets_german_pages_mail_and_evidence(
    client, conn, settings, db_dsn, smtp_sink
):
    """STANDARDS 62 (3.1.1): a sign-up with Accept-Language: de stores `de`; the confirmation,
    the newsletter's footer and the data-link mail are German with Content-Language: de and
    lang="de"; the evidence holds the German consent text exactly as shown, with `de`."""
    world = await seed(conn)
    form = await client.get(SIGNUP, headers=GERMAN)
    page = await form.text()
    assert form.headers["Content-Language"] == "de"
    assert '<html lang="de">' in page
    assert "Weekly news abonnieren" in page
    shown = re.search(r'<p class="muted" id="consent-text">([^<]*)</p>', page)
    assert shown is not None
    assert shown.group(1).startswith("Ich bin einverstanden, dass Acme mir „Weekly news“")

    answer = await client.post(
        SIGNUP, data={"email": "leser@example.de", "name": "Lena", "age": "yes"}, headers=GERMAN
    )
    assert answer.status == 200
    assert "Sehen Sie in Ihren Posteingang" in await answer.text()
    assert await probes().subscriber_language(conn, email="leser@example.de") == "de"
    events = [e async for e in probes().all_events(conn) if e["source"] == "web_form"]
    [event] = events
    proof = await probes().evidence(conn, id=event["evidence_id"])
    assert proof["form_language"] == "de"
    assert proof["form_text"] == shown.group(1).replace("&#34;", '"')

    await send_queued(db_dsn, settings, smtp_sink.port)
    [confirmation] = [parse(m.data) for m in await smtp_sink.wait_for(1)]
    assert confirmation["Content-Language"] == "de"
    assert confirmation["Subject"] == "Bitte bestätigen: Weekly news"
    assert part(confirmation, "plain").startswith("Hallo Lena,")
    assert "Bitte bestätigen Sie, dass Sie „Weekly news“ erhalten möchten:" in part(
        confirmation, "plain"
    )
    assert '<html lang="de">' in part(confirmation, "html")
    link = re.search(r"/c/[A-Za-z0-9_-]+", part(confirmation, "plain"))
    assert link is not None
    confirmed = await client.post(link.group(0))
    assert "Sie sind angemeldet" in await confirmed.text()

    # The data link the preference centre mails: German too.
    subscriber = [s for s in (await probes().web_state(conn))["subscribers"]]
    lena = next(s["id"] for s in subscriber if s["email"] == "leser@example.de")
    await privacy.send_data_link(conn, settings, tenant_id=world.tenant, subscriber_id=lena)
    await send_queued(db_dsn, settings, smtp_sink.port)
    data_mail = parse((await smtp_sink.wait_for(2))[1].data)
    assert data_mail["Content-Language"] == "de"
    assert data_mail["Subject"] == "Ihr Link zu Ihren Daten"
    assert "Sie haben Acme um einen Link zu Ihren Daten gebeten." in part(data_mail, "plain")

    # A newsletter to the topic: Lena's footer is German, the English reader's is English.
    await send_newsletter(conn, world.tenant, settings, db_dsn, smtp_sink.port, audience=2)
    newsletters = {m.rcpt_tos[0]: parse(m.data) for m in (await smtp_sink.wait_for(4))[2:]}
    german = newsletters["leser@example.de"]
    assert german["Content-Language"] == "de"
    assert "Sie erhalten diese Nachricht, weil Sie Acme abonniert haben." in part(german, "plain")
    assert "Abbestellen:" in part(german, "plain")
    assert '<html lang="de">' in part(german, "html")
    english = newsletters["person0@example.org"]
    assert english["Content-Language"] == "en"
    assert "You receive this because you subscribed to Acme." in part(english, "plain")


async def test_a_newsletter_greets_people_without_a_name_without_a_dangling_comma(
    conn, settings, db_dsn, smtp_sink
):
    """The newsletter is prepared once per campaign and language with the name as a slot: a
    person without a name (none, or blank) is greeted "Hello," / "Hallo," in both parts,
    never "Hello ,"; named people keep their name; a tenant's greeting (French here) is used
    for both, as the tenant wrote it."""
    world = await seed(conn, subscribers=6)
    people = [
        # (name, language, the greeting line expected in the text part)
        ("Ada", "en", "Hello Ada,"),
        (None, "en", "Hello,"),
        ("Lena", "de", "Hallo Lena,"),
        ("   ", "de", "Hallo,"),
        ("Luc", "fr", "Bien à vous,"),
        (None, "fr", "Bien à vous,"),
    ]
    for subscriber, (name, language, _) in zip(world.subscribers, people, strict=True):
        await probes().set_subscriber_name(conn, subscriber_id=subscriber, name=name)
        await probes().set_subscriber_language(conn, subscriber_id=subscriber, language=language)
    await wording.set_wording(conn, world.tenant, "greeting", "fr", "Bien à vous,")
    await send_newsletter(conn, world.tenant, settings, db_dsn, smtp_sink.port, audience=6)
    received = {m.rcpt_tos[0]: parse(m.data) for m in await smtp_sink.wait_for(6)}
    for n, (_, language, greeting) in enumerate(people):
        message = received[f"person{n}@example.org"]
        assert message["Content-Language"] == language
        text, html_part = part(message, "plain"), part(message, "html")
        assert f"\n{greeting}\n" in text.replace("\r\n", "\n"), (n, text)
        assert re.search(rf'class="greeting"[^>]*>{re.escape(greeting)}\s*</p>', html_part)
        for part_text in (text, html_part):
            assert not re.search(r"\s,", part_text.split("--")[0]), (n, part_text)
            assert f"person{n}@example.org," not in part_text


async def test_lang_query_shows_another_language_and_stores_nothing(client, conn):
    """A GET with ?lang= changes the page's words only; the page links to the others."""
    world = await seed(conn)
    ada = world.subscribers[0]
    before = await probes().web_state(conn)
    french = await client.get(f"/u/{world.one_click(ada)}?lang=fr")
    text = await french.text()
    assert '<html lang="fr">' in text
    assert "Se désabonner de Weekly news ?" in text
    # The button posts back with the language kept, so the answer is French too.
    assert re.search(r'<form method="post" action="/u/[^"?]+\?lang=fr">', text)
    for code, name in (("en", "English"), ("de", "Deutsch"), ("es", "Español")):
        assert f'hreflang="{code}" lang="{code}">{name}</a>' in text
    spanish = await client.get(f"/p/{world.preferences(ada)}?lang=es")
    assert "Lo que Acme le envía" in await spanish.text()
    assert await probes().web_state(conn) == before


async def test_stored_language_wins_over_the_browser_and_tenant_default(client, conn):
    """A known person's pages follow their stored language, whatever the browser asks; a
    person without one gets the tenant's default."""
    world = await seed(conn, subscribers=2)
    ada, bob = world.subscribers
    await probes().set_subscriber_language(conn, subscriber_id=ada, language="es")
    await probes().set_tenant_language(conn, tenant_id=world.tenant, language="fr")
    page = await client.get(f"/p/{world.preferences(ada)}", headers=GERMAN)
    assert "Lo que Acme le envía" in await page.text()
    page = await client.get(f"/p/{world.preferences(bob)}", headers=GERMAN)
    assert "Ce que Acme vous envoie" in await page.text()


async def test_the_one_click_answer_is_cached_per_language(client, conn):
    """The one-click answer page is rendered once per sender, topic and language."""
    world = await seed(conn, subscribers=3)
    for subscriber, language in zip(world.subscribers, ("de", "fr", "de"), strict=True):
        await probes().set_subscriber_language(conn, subscriber_id=subscriber, language=language)
    answers = []
    for subscriber in world.subscribers:
        response = await client.post(
            f"/u/{world.one_click(subscriber)}", data={"List-Unsubscribe": "One-Click"}
        )
        assert response.status == 200
        answers.append((response.headers["Content-Language"], await response.text()))
    assert answers[0][0] == "de" and "Sie sind abgemeldet" in answers[0][1]
    assert answers[1][0] == "fr" and "Vous êtes désabonné" in answers[1][1]
    assert answers[2] == answers[0]
    cache = client.server.app[ONE_CLICK_PAGES]
    assert sorted(key[2] for key in cache) == ["de", "fr"]


@pytest.mark.parametrize(
    ("headers", "title", "advice"),
    [
        ({}, "This link does not work", "preference centre"),
        ({"Accept-Language": "fr"}, "Ce lien ne fonctionne pas", "centre de préférences"),
        ({"Accept-Language": "es"}, "Este enlace no funciona", "centro de preferencias"),
    ],
)
async def test_a_broken_link_says_what_happened_and_what_to_do(
    client, conn, headers, title, advice
):
    """An invalid link's page names the problem and the way out, in the reader's language."""
    response = await client.get("/u/not-a-real-token", headers=headers)
    assert response.status == 400
    text = await response.text()
    assert f"<h1>{title}</h1>" in text
    assert advice in text


async def test_an_expired_data_link_says_to_ask_for_a_new_one(client, conn, settings):
    """A used single-use data link: 'expired', ask for a new link from the preference centre."""
    world = await seed(conn)
    ada = world.subscribers[0]
    await privacy.send_data_link(conn, settings, tenant_id=world.tenant, subscriber_id=ada)
    [delivery] = [d async for d in probes().transactional_deliveries(conn)]
    path = delivery["payload"]["access_url"].removeprefix(settings.base_url)
    assert (await client.post(path)).status in (200, 303)
    again = await client.get(path)
    text = await again.text()
    assert "<h1>This link has expired</h1>" in text
    assert "Email me a link to my data" in text


async def test_a_tenants_default_language_is_set_like_its_other_fields(client, conn):
    """`default_language` (API PATCH /tenants/{slug}, `optout tenant update
    --default-language`) speaks to everyone without a language of their own; an unshipped
    code is refused with one line and changes nothing."""
    world = await seed(conn)
    ada = world.subscribers[0]
    with pytest.raises(InvalidInput, match="default_language must be one of en, de, fr, es"):
        await tenants.update_tenant(conn, "acme", {"default_language": "xx"})
    assert (await tenants.get_tenant(conn, "acme"))["default_language"] == "en"
    await tenants.update_tenant(conn, "acme", {"default_language": "de"})
    page = await client.get(f"/p/{world.preferences(ada)}")
    assert "Was Acme Ihnen sendet" in await page.text()
    form = await client.get(SIGNUP, headers={"Accept-Language": "it"})
    assert "Weekly news abonnieren" in await form.text()


async def test_tenant_wording_is_plain_text_per_language_and_never_the_legal_labels(
    client, conn, settings, db_dsn, smtp_sink
):
    """A tenant rewords its greeting, sign-up intro and footer reason per language, by API
    (and `optout tenant wording`); HTML, template syntax, an unshipped language or a legally
    required label get a one-line 400 and change nothing; the text is escaped where shown,
    and the unsubscribe label and postal address stay in the footer."""
    world = await seed(conn)
    token = await api_tokens.create_token(conn, role="marketing", tenant_id=world.tenant)
    auth = {"Authorization": f"Bearer {token.secret}"}
    base = "/api/v1/tenants/acme/wording"

    async def put(key: str, language: str, text: str) -> tuple[int, dict[str, Any]]:
        response = await client.put(f"{base}/{key}/{language}", json={"text": text}, headers=auth)
        return response.status, await response.json()

    for key, language, text, error in (
        ("unsubscribe_label", "de", "Weg hier", "legally required label"),
        ("postal_address", "de", "Nirgendwo", "legally required label"),
        ("greeting", "it", "Ciao,", "language must be one of en, de, fr, es"),
        ("greeting", "de", "{{ 7 * 7 }}", "no template syntax"),
        ("greeting", "de", "<b>Hallo</b>", "no HTML"),
        ("signup_intro", "de", "Zeile eins\nZeile zwei", "control character"),
    ):
        status, body = await put(key, language, text)
        assert status == 400, (key, text)
        assert error in body["error"]["message"]
    listed = await client.get(base, headers=auth)
    assert (await listed.json())["items"] == []

    assert (await put("signup_intro", "de", "Einmal pro Woche & kostenlos."))[0] == 200
    assert (await put("footer_reason", "de", "Sie haben sich bei Acme angemeldet."))[0] == 200
    assert (await put("greeting", "de", "Guten Tag,"))[0] == 200
    listed = await client.get(base, headers=auth)
    assert [(w["key"], w["language"]) for w in (await listed.json())["items"]] == [
        ("footer_reason", "de"),
        ("greeting", "de"),
        ("signup_intro", "de"),
    ]

    german = await (await client.get(SIGNUP, headers=GERMAN)).text()
    assert '<p id="intro">Einmal pro Woche &amp; kostenlos.</p>' in german
    english = await (await client.get(SIGNUP)).text()
    assert 'id="intro"' not in english

    ada = world.subscribers[0]
    await probes().set_subscriber_language(conn, subscriber_id=ada, language="de")
    await send_newsletter(conn, world.tenant, settings, db_dsn, smtp_sink.port, audience=1)
    [message] = [parse(m.data) for m in await smtp_sink.wait_for(1)]
    text = part(message, "plain")
    assert "Guten Tag," in text and "Hallo " not in text.split("Guten Tag,")[0]
    assert "Sie haben sich bei Acme angemeldet." in text
    assert "Sie erhalten diese Nachricht" not in text
    assert "Abbestellen: http" in text and "1 Road, Town" in text

    cleared = await client.delete(f"{base}/greeting/de", headers=auth)
    assert (await cleared.json()) == {"cleared": True}
    # Every change is audited; the refused ones are not (they changed nothing).
    audit = [a["action"] async for a in probes().audit_entries(conn)]
    assert audit.count("set_tenant_wording") == 3
    assert audit.count("clear_tenant_wording") == 1


async def test_a_tenant_created_with_a_language_keeps_it(conn):
    """`optout tenant create --default-language fr` / POST /tenants with default_language."""
    row = await tenants.create_tenant(
        conn, "lyon", name="Lyon", sender_address="news@lyon.example", default_language="fr"
    )
    assert row["default_language"] == "fr"
    plain = await tenants.create_tenant(conn, "york", name="York", sender_address="n@york.example")
    assert plain["default_language"] == "en"


async def test_an_import_language_column_sets_each_persons_language(conn, settings, tmp_path):
    """The import's `language` column stores each person's language; an unshipped one is
    that line's error, and the others are imported."""
    world = await seed(conn)
    csv_path = tmp_path / "people.csv"
    csv_path.write_text(
        "email,name,language\n"
        "ute@example.de,Ute,de\n"
        "ana@example.es,Ana,es-MX\n"
        "sam@example.org,Sam,\n"
        "ida@example.it,Ida,it\n"
    )
    result = await imports.run_import(
        conn,
        settings,
        tenant_id=world.tenant,
        topic_id=world.topics["news"],
        path=csv_path,
        options=imports.ImportOptions("consent", "trade fair", age_attested=True),
    )
    errors = [
        (r["line"], r["reason"])
        async for r in probes().import_error_rows(conn, import_id=result["id"])
    ]
    assert errors == [(5, "the language must be one of en, de, fr, es")]
    for address, language in (
        ("ute@example.de", "de"),
        ("ana@example.es", "es"),
        ("sam@example.org", None),
    ):
        assert await probes().subscriber_language(conn, email=address) == language
    assert await probes().subscriber_language(conn, email="ida@example.it") is None


async def test_the_policy_notice_gives_its_date_and_subject_in_the_readers_language(
    conn, settings, db_dsn, smtp_sink
):
    """The notice is Optout's own words: its subject and its effective date are in each
    reader's language, the day counted in the tenant's time zone (03:00 UTC on the 10th is
    still the 9th in New York)."""
    world = await seed(conn, subscribers=3)
    tenant = await tenants.update_tenant(conn, "acme", {"time_zone": "America/New_York"})
    for n, language in enumerate(("en", "de", "fr")):
        await probes().set_subscriber_language(
            conn, subscriber_id=world.subscribers[n], language=language
        )
        await consent.subscribe(
            conn,
            hash_key=TEST_HASH_KEY,
            tenant_id=world.tenant,
            topic_id=world.topics["notices"],
            email=f"person{n}@example.org",
            age_attested=True,
            source="import",
            confirmed=True,
            lawful_basis="consent",
        )
    today = dt.datetime.now(dt.UTC)
    effective = dt.datetime(today.year + 1, 6, 10, 3, 0, tzinfo=dt.UTC)
    version = await policy.publish(
        conn,
        tenant=tenant,
        body="# Policy\n",
        summary="Partners you pick",
        effective_at=effective,
        now=today,
    )
    notice = await policy.create_notice_campaign(
        conn,
        tenant=tenant,
        version=version,
        topic=await policy.notice_topic(conn, world.tenant),
        policy_url="https://optout.test/policy/acme",
    )
    sending = mail_settings(settings, smtp_sink.port, allow_unsigned=True)
    assert await campaigns.start(conn, sending, world.tenant, notice["id"]) == 3
    await send_queued(db_dsn, settings, smtp_sink.port)
    received = {m.rcpt_tos[0]: parse(m.data) for m in await smtp_sink.wait_for(3)}
    year = effective.year
    for n, (subject, sentence) in enumerate(
        (
            (
                f"Changes to our privacy policy from 9 June {year}",
                f"takes effect on 9 June {year}.",
            ),
            (
                f"Änderungen unserer Datenschutzerklärung ab dem 9. Juni {year}",
                f"Die neue Erklärung gilt ab 9. Juni {year}.",
            ),
            (
                f"Modifications de notre politique de confidentialité à partir du 9 juin {year}",
                f"9 juin {year}.",
            ),
        )
    ):
        message = received[f"person{n}@example.org"]
        assert message["Subject"] == subject
        assert sentence in part(message, "plain") and sentence in part(message, "html")
        assert "June" not in part(message, "plain") or n == 0


async def test_errors_a_subscriber_meets_are_in_their_language(client, conn, settings):
    """The domain's own messages on a subscriber's error page are translated, numbers put in
    after translation; a message the catalogs lack (the address library's) gives way to its
    kind's translated default; an English reader keeps the precise English."""
    world = await seed(conn, subscribers=2)
    ada = world.subscribers[0]
    await probes().set_subscriber_language(conn, subscriber_id=ada, language="de")
    token = await privacy.create_data_link(
        conn, settings.keyring(), tenant_id=world.tenant, subscriber_id=ada, purpose="access"
    )
    opened = await client.post(f"/d/{token}", allow_redirects=False)
    session = opened.headers["Location"]

    async def change_address(new: str, headers: dict[str, str] | None = None) -> str:
        answer = await client.post(f"{session}/address", data={"email": new}, headers=headers)
        assert answer.status in (400, 409)
        assert answer.headers["Content-Language"] == ("en" if headers is None else "de")
        text: str = await answer.text()
        return text

    for address, german in (
        ("no-at-sign.example", "Die E-Mail-Adresse enthält kein @-Zeichen."),
        ("a" * 65 + "@example.org", "Der Teil vor dem @-Zeichen ist zu lang (mehr als 64 Byte)."),
        ("person1@example.org", "Diese Adresse wird hier bereits verwendet."),
        ("ada@-bad-.example", "Die E-Mail-Adresse ist ungültig."),
    ):
        assert german in await change_address(address, GERMAN), address
    assert "The email address has no @ sign." in await change_address("no-at-sign.example")
    assert "(more than 64 bytes)" in await change_address("a" * 65 + "@example.org")
    assert await probes().subscriber_language(conn, email="person0@example.org") == "de"

    missing = await client.get("/s/acme/no-such-list", headers=GERMAN)
    assert missing.status == 404
    assert "Diese Liste gibt es nicht." in await missing.text()
