"""The tenant's contact details on its public pages (STANDARDS 42): the sign-up form, the
policy pages, the unsubscribe landing page and its undo answer, the preference centre and the
data overview name the sender, its postal address and its web page, email or phone."""

from __future__ import annotations

import pytest

from mailer import tenants
from mailer.rights import privacy
from tests.support.web import seed
from unsubscribe_web.app import create_app


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def page(client, path: str) -> str:
    response = await client.get(path)
    text: str = await response.text()
    assert response.status == 200, text
    return text


async def test_the_sign_up_form_and_policy_pages_show_how_to_reach_the_sender(client, conn):
    await seed(conn)
    await tenants.update_tenant(
        conn, "acme", {"contact_email": "help@acme.example", "contact_phone": "+1 555 0100"}
    )
    for path in ("/s/acme/news", "/policy/acme", "/policy/acme/versions"):
        html = await page(client, path)
        footer = html.split('id="tenant-contact"', 1)[1].split("</footer>", 1)[0]
        assert "Acme News" in footer and "1 Road, Town" in footer, path
        assert '<a href="https://acme.example/contact">' in footer, path
        assert '<a href="mailto:help@acme.example">' in footer, path
        assert '<a href="tel:+15550100">+1 555 0100</a>' in footer, path


async def test_the_contact_line_speaks_the_page_language(client, conn):
    await seed(conn)
    html = await page(client, "/policy/acme?lang=de")
    assert "Kontakt:" in html.split('id="tenant-contact"', 1)[1]


async def test_the_pages_behind_a_persons_links_show_how_to_reach_the_sender(
    client, conn, settings
):
    world = await seed(conn)
    await tenants.update_tenant(conn, "acme", {"contact_email": "help@acme.example"})
    [person] = world.subscribers
    data = await privacy.create_data_link(
        conn, settings.keyring(), tenant_id=world.tenant, subscriber_id=person, purpose="access"
    )
    opened = await client.post(f"/d/{data}", allow_redirects=False)
    assert opened.status == 303
    undone = await client.post(f"/undo/{world.undo(person)}")
    assert undone.status == 200
    pages = {
        "landing": await page(client, f"/u/{world.one_click(person)}"),
        "undo": await undone.text(),
        "preferences": await page(client, f"/p/{world.preferences(person)}"),
        "data overview": await page(client, opened.headers["Location"]),
    }
    for name, html in pages.items():
        assert 'id="tenant-contact"' in html, name
        footer = html.split('id="tenant-contact"', 1)[1].split("</footer>", 1)[0]
        assert "Acme News" in footer and "1 Road, Town" in footer, name
        assert '<a href="mailto:help@acme.example">' in footer, name
