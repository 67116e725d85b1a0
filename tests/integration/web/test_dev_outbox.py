"""The demo's catcher and dev outbox: real SMTP into the catcher, pages from the real app."""

from __future__ import annotations

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
