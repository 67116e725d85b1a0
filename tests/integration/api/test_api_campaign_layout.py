"""The admin API's campaign create and update take a ``layout`` (issue 17): one of the
tenant's own templates, at a version or its newest; null for the built-in layout. Another
tenant's template answers like one that does not exist, and a change of anything else keeps
the layout."""

from __future__ import annotations

import pytest

from tests.support.api_world import CONTENT, bearer, build_world, sending_settings
from unsubscribe_web.app import create_app

# The editor's kind of campaign: a body in Markdown, laid out by the template.
EDITOR = {
    "template": "campaign",
    "content": {"format": "markdown", "body": "Hello [Unsubscribe]({{ unsubscribe_url }})"},
}

HTML = '<p class="v{n}">Look {n}</p>{{{{ body_html }}}}{{% include "_footer.html" %}}'
TEXT = 'Look {n}\n{{{{ body_text }}}}\n{{% include "_footer.txt" %}}'


@pytest.fixture
async def world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


async def test_create_and_update_choose_a_layout_and_its_version(world, client):
    a = world.a
    auth = bearer(a.tokens["marketing"])
    base = f"/api/v1/tenants/{a.slug}"
    saved = await client.post(
        f"{base}/templates/{a.template_id}/versions",
        json={"html": HTML.format(n=2), "text": TEXT.format(n=2)},
        headers=auth,
    )
    assert saved.status == 201, await saved.text()
    body = {"topic": "news", "name": "Laid out", "subject": "S"} | EDITOR
    created = await client.post(
        f"{base}/campaigns", json=body | {"layout": {"template_id": a.template_id}}, headers=auth
    )
    assert created.status == 201, await created.text()
    campaign = await created.json()
    assert campaign["layout"] == {"template_id": a.template_id, "version": None}
    path = f"{base}/campaigns/{campaign['id']}"
    # The preview is laid out in the newest version.
    preview = await (await client.get(f"{path}/preview", headers=auth)).json()
    assert "Look 2" in str(preview), preview
    # An older version, chosen explicitly, is kept.
    patched = await client.patch(
        path, json={"layout": {"template_id": a.template_id, "version": 1}}, headers=auth
    )
    assert (await patched.json())["layout"] == {"template_id": a.template_id, "version": 1}
    preview = await (await client.get(f"{path}/preview", headers=auth)).json()
    assert "Look 2" not in preview["message"]
    # A change of anything else keeps the layout.
    renamed = await client.patch(path, json={"name": "Renamed"}, headers=auth)
    assert (await renamed.json())["layout"] == {"template_id": a.template_id, "version": 1}
    # null: back to the built-in layout.
    plain = await client.patch(path, json={"layout": None}, headers=auth)
    assert (await plain.json())["layout"] is None


async def test_another_tenants_template_or_a_missing_version_is_refused_and_changes_nothing(
    world, client
):
    a, b = world.a, world.b
    auth = bearer(a.tokens["marketing"])
    base = f"/api/v1/tenants/{a.slug}"
    body = {"topic": "news", "name": "X", "subject": "S"} | EDITOR
    newsletter = body | {"template": "newsletter", "content": CONTENT}
    refused = await client.post(
        f"{base}/campaigns",
        json=newsletter | {"layout": {"template_id": a.template_id}},
        headers=auth,
    )
    assert refused.status == 400 and "layout" in (await refused.json())["error"]["message"]
    for layout, status in (
        ({"template_id": b.template_id}, 404),
        ({"template_id": a.template_id, "version": 99}, 404),
        ({"template_id": a.template_id, "colour": "red"}, 400),
        ({"version": 1}, 400),
    ):
        before = await (await client.get(f"{base}/campaigns", headers=auth)).json()
        response = await client.post(
            f"{base}/campaigns", json=body | {"layout": layout}, headers=auth
        )
        assert response.status == status, (layout, await response.text())
        after = await (await client.get(f"{base}/campaigns", headers=auth)).json()
        assert after == before, layout
    mine = await (await client.post(f"{base}/campaigns", json=body, headers=auth)).json()
    path = f"{base}/campaigns/{mine['id']}"
    before = await (await client.get(path, headers=auth)).json()
    response = await client.patch(
        path, json={"name": "Y", "layout": {"template_id": b.template_id}}, headers=auth
    )
    assert response.status == 404
    assert await (await client.get(path, headers=auth)).json() == before
