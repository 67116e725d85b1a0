"""The tenant's contact details on its public pages (STANDARDS 42): the sign-up form and the
policy pages name the sender, its postal address and its web page, email or phone."""

from __future__ import annotations

import pytest

from mailer import tenants
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
