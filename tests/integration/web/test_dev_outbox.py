"""The demo's catcher and dev outbox: real SMTP into the catcher, pages from the real app."""

from __future__ import annotations

import email.message
from pathlib import Path

import aiosmtplib
import pytest

from mailer import catcher, tenants
from mailer.sending import compose
from mailer.sending.dkim import DkimSigner, generate_rsa_key_pem
from unsubscribe_web.app import create_app

SENDER = compose.Sender(
    from_name="Acme News",
    from_address="news@acme.example.com",
    domain="acme.example.com",
    postal_address="1 Example Street, Paris",
    list_id="Newsletter <news.acme.example.com>",
    feedback_id="1:1:1:optout",
)


@pytest.fixture
async def outbox_client(aiohttp_client, settings, conn, tmp_path: Path):
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(generate_rsa_key_pem())
    await tenants.create_tenant(
        conn,
        "acme",
        name="Acme",
        sender_address="news@acme.example.com",
        dkim_selector="demo",
        dkim_key_path=str(key_path),
    )
    folder = tmp_path / "outbox"
    server = await catcher.start_catcher(folder)
    port = server.sockets[0].getsockname()[1]
    app = create_app(settings, outbox_dir=folder)
    client = await aiohttp_client(app)
    try:
        yield client, port, key_path
    finally:
        await client.close()  # before the test database is dropped
        server.close()
        await server.wait_closed()


def newsletter(key_path: Path, unsubscribe_url: str) -> bytes:
    prepared = compose.prepare(
        "newsletter",
        SENDER,
        "Autumn news",
        {"headline": "Autumn news", "intro": "Hello there.", "blocks": []},
    )
    raw = prepared.render(
        compose.Recipient(
            to_address="ada@example.com",
            to_name="Ada",
            message_id="<c1.s1@acme.example.com>",
            unsubscribe_url=unsubscribe_url,
            mailto_unsubscribe="unsubscribe+abc@acme.example.com",
            preferences_url="https://optout.test/p/TOKEN",
        )
    )
    signer = DkimSigner.from_files("acme.example.com", "demo", key_path)
    return signer.sign(raw)


async def test_caught_mail_is_listed_and_shown_as_the_recipient_sees_it(outbox_client):
    client, port, key_path = outbox_client
    await aiosmtplib.send(
        newsletter(key_path, "https://optout.test/u/TOKEN"),
        sender="bounces+x@acme.example.com",
        recipients=["ada@example.com"],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
    )
    listing = await client.get("/dev/outbox")
    page = await listing.text()
    assert listing.status == 200 and "Autumn news" in page and "ada@example.com" in page
    message_id = page.split('href="/dev/outbox/')[1].split('"')[0]
    shown = await (await client.get(f"/dev/outbox/{message_id}")).text()
    assert "DKIM:\n  pass" in shown
    # The HTML part is shown in a sandboxed frame that may not run scripts; a link the
    # reader clicks opens in the whole tab, since our pages refuse to be framed.
    frame = shown.split('<iframe id="html-part"')[1].split("srcdoc")[0]
    assert 'sandbox="allow-top-navigation-by-user-activation"' in frame
    assert "allow-scripts" not in frame and "allow-same-origin" not in frame
    assert "&lt;base target=&#34;_top&#34;&gt;" in shown
    assert "List-Unsubscribe" in shown and 'id="one-click"' in shown


async def test_a_tampered_message_shows_dkim_fail(outbox_client):
    client, port, key_path = outbox_client
    tampered = newsletter(key_path, "https://optout.test/u/TOKEN").replace(
        b"Subject: Autumn news", b"Subject: Autumn newz"
    )
    await aiosmtplib.send(
        tampered,
        sender="b@acme.example.com",
        recipients=["ada@example.com"],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
    )
    page = await (await client.get("/dev/outbox")).text()
    message_id = page.split('href="/dev/outbox/')[1].split('"')[0]
    assert "DKIM:\n  fail" in await (await client.get(f"/dev/outbox/{message_id}")).text()


async def test_the_one_click_button_only_reaches_this_installation(outbox_client):
    client, port, key_path = outbox_client
    await aiosmtplib.send(
        newsletter(key_path, "https://elsewhere.example/u/TOKEN"),
        sender="b@acme.example.com",
        recipients=["ada@example.com"],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
    )
    page = await (await client.get("/dev/outbox")).text()
    message_id = page.split('href="/dev/outbox/')[1].split('"')[0]
    refused = await client.post(f"/dev/outbox/{message_id}/one-click")
    assert refused.status == 400
    assert "does not point at this installation" in await refused.text()


async def test_unknown_or_malformed_ids_are_404(outbox_client):
    client, _, _ = outbox_client
    for bad in ("../secrets.env", "1", "0000000000000000000-1"):
        assert (await client.get(f"/dev/outbox/{bad}")).status == 404


async def test_the_outbox_counts_pages_and_searches(outbox_client):
    """120 messages through real SMTP: the count, 50 a page (page 2 and 3 reachable), and a
    search by recipient and by subject that finds exactly the one message."""
    client, port, _ = outbox_client
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    try:
        for n in range(120):
            mail = email.message.EmailMessage()
            mail["From"] = "news@acme.example.com"
            mail["To"] = f"person-{n:03d}@example.com"
            mail["Subject"] = "Your invoice is ready" if n == 77 else f"Weekly news {n:03d}"
            mail.set_content("Hello.")
            await smtp.send_message(mail)
    finally:
        await smtp.quit()

    def rows(page: str) -> list[str]:
        return page.split('href="/dev/outbox/')[1:]

    first = await (await client.get("/dev/outbox")).text()
    assert "120 messages; page 1 of 3 (from 1)" in first
    assert len(rows(first)) == 50
    assert "Weekly news 119" in first and "Weekly news 069" not in first  # newest first
    assert 'href="/dev/outbox?page=2" rel="next"' in first
    second = await (await client.get("/dev/outbox?page=2")).text()
    assert "page 2 of 3 (from 51)" in second and len(rows(second)) == 50
    assert "Weekly news 069" in second and "Weekly news 119" not in second
    assert 'href="/dev/outbox" rel="prev"' in second
    assert 'href="/dev/outbox?page=3" rel="next"' in second
    third = await (await client.get("/dev/outbox?page=3")).text()
    assert len(rows(third)) == 20 and 'rel="next"' not in third

    by_recipient = await (await client.get("/dev/outbox", params={"q": "PERSON-077@"})).text()
    assert "1 of 120 messages match" in by_recipient and len(rows(by_recipient)) == 1
    assert "Your invoice is ready" in by_recipient
    by_subject = await (await client.get("/dev/outbox", params={"q": "invoice"})).text()
    assert len(rows(by_subject)) == 1 and "person-077@example.com" in by_subject
    assert rows(by_subject)[0].split('"')[0] == rows(by_recipient)[0].split('"')[0]
    nothing = await (await client.get("/dev/outbox", params={"q": "no such thing"})).text()
    assert "0 of 120 messages match" in nothing and "No message matches." in nothing

    assert (await client.get("/dev/outbox?page=0")).status == 400
    past = await client.get("/dev/outbox", params={"page": "9", "q": "weekly"})
    assert past.status == 200 and str(past.url).endswith("/dev/outbox?q=weekly&page=3")
