"""Each tenant's own email templates through the real app on real Postgres: creating one from
the built-in newsletter layout, editing it into new versions, a campaign using it (and keeping
the version it was sent with), the sandbox refusing at save whatever reaches for Python
internals, files or another tenant, and the checks of size, time and footer."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import pytest

from mailer.db import queries
from mailer.sending import campaigns, sandbox, tenant_templates
from mailer.sending.worker import Composer
from tests.conftest import probes
from tests.support.workspace import BODY, Tenant, csrf_of, draft, ready_tenant, sign_in, state
from unsubscribe_web.keys import SETTINGS

GOOD_HTML = '<p class="look">Spring look</p>\n{{ body_html }}\n{% include "_footer.html" %}\n'
GOOD_TEXT = 'SPRING LOOK\n{{ body_text }}\n{% include "_footer.txt" %}\n'


@pytest.fixture
async def acme(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "acme")


@pytest.fixture
async def beta(conn, app_settings, tmp_path) -> Tenant:
    return await ready_tenant(conn, app_settings, tmp_path, "beta")


async def get(client, cookie, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text: str = await response.text()
    assert response.status == status, text
    return text


async def post(client, cookie, path: str, data: dict[str, str], csrf: str | None) -> Any:
    form = dict(data) | ({"csrf": csrf} if csrf is not None else {})
    return await client.post(path, data=form, headers=cookie, allow_redirects=False)


async def tenant_row(conn, t: Tenant) -> Any:
    return await queries().tenants.get_tenant(conn, id=t.id)


async def new_template(conn, t: Tenant, name: str = "Spring look") -> Any:
    return await tenant_templates.create(conn, await tenant_row(conn, t), name, created_by="test")


def sent_parts(raw: bytes) -> tuple[str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert isinstance(html_part, EmailMessage) and isinstance(text_part, EmailMessage)
    return html_part.get_content(), text_part.get_content()


async def worker_message(conn, settings, campaign_id: int) -> tuple[str, str]:
    """The message the worker's own Composer builds for the campaign's first delivery."""
    # The worker's own claim: the row exactly as the worker gets it.
    rows = [
        r async for r in queries().deliveries.claim(conn, owner="test", lease_seconds=60, lim=1)
    ]
    [row] = rows
    assert row["campaign_id"] == campaign_id
    composer = Composer(settings)
    await composer.load(conn, [row])
    return sent_parts(composer.build(row).data)


async def test_a_marketer_makes_a_template_edits_it_and_a_campaign_sends_with_it(
    client, conn, acme
):
    """From the built-in newsletter layout to a sent campaign, all in the workspace; the
    campaign keeps the version it started with when the template changes afterwards."""
    cookie = await sign_in(client, acme.tokens["marketing"])
    listing = await get(client, cookie, "/dashboard/t/acme/templates")
    assert 'id="no-templates"' in listing
    response = await post(
        client, cookie, "/dashboard/t/acme/templates", {"name": "Spring look"}, csrf_of(listing)
    )
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert re.fullmatch(r"/dashboard/t/acme/templates/\d+\?done=created", location)
    template_id = int(location.split("/")[-1].split("?")[0])
    page = await get(client, cookie, location)
    start_html, start_text = tenant_templates.starter()
    assert "{{ body_html }}" in page and "Version 1" in page
    # The preview: the built-in layout, the sample body and the footer with its links.
    assert "Sample body." in page and "Acme Inc." in page
    response = await post(
        client,
        cookie,
        f"/dashboard/t/acme/templates/{template_id}",
        {
            "html": start_html.replace(
                "{{ body_html }}", GOOD_HTML.split("\n")[0] + "\n{{ body_html }}"
            ),
            "text": "SPRING LOOK\n" + start_text,
        },
        csrf_of(page),
    )
    assert response.status == 303, await response.text()
    page = await get(client, cookie, response.headers["Location"])
    assert "Saved as a new version." in page and "Version 2" in page
    frame = await get(client, cookie, f"/dashboard/t/acme/templates/{template_id}/preview.html")
    assert "Spring look" in frame
    # A campaign with this layout: chosen in the editor, sent with version 2.
    editor = await get(client, cookie, "/dashboard/t/acme/campaigns/new")
    assert f'<option value="{template_id}">Spring look (version 2)</option>' in editor
    response = await post(
        client,
        cookie,
        "/dashboard/t/acme/campaigns",
        {
            "name": "Spring",
            "topic": "newsletter",
            "subject": "Spring news",
            "format": "markdown",
            "body": BODY,
            "layout": str(template_id),
        },
        csrf_of(editor),
    )
    assert response.status == 303, await response.text()
    campaign_page = response.headers["Location"].split("?")[0]
    shown = await get(client, cookie, campaign_page)
    assert "“Spring look” version 2" in shown and 'id="ready"' in shown
    response = await post(client, cookie, f"{campaign_page}/start", {}, csrf_of(shown))
    assert response.status == 303, await response.text()
    campaign_id = int(campaign_page.rsplit("/", 1)[1])
    # The template changes after the start: the campaign keeps version 2.
    await tenant_templates.save(
        conn,
        await tenant_row(conn, acme),
        template_id,
        html=GOOD_HTML.replace("Spring look", "Summer look"),
        text=GOOD_TEXT.replace("SPRING", "SUMMER"),
        created_by="test",
    )
    row = await campaigns.get(conn, acme.id, campaign_id)
    assert row["layout_id"] == template_id and row["layout_version"] == 2
    html_part, text_part = await worker_message(conn, client.app[SETTINGS], campaign_id)
    assert "Spring look" in html_part and "Summer look" not in html_part
    assert text_part.startswith("SPRING LOOK") and "Our garden opens on Monday." in text_part
    actions = [r["action"] async for r in probes().audit_lines(conn) if "via" in r["detail"]]
    assert actions == ["create_template", "save_template", "create_campaign", "start_campaign"]


async def test_a_draft_follows_the_newest_version_until_it_starts(conn, acme, app_settings):
    template = await new_template(conn, acme)
    campaign = await campaigns.create_draft(
        conn,
        tenant_id=acme.id,
        topic_slug="newsletter",
        name="Draft",
        subject="S",
        content={"format": "markdown", "body": BODY, "text": "", "preheader": ""},
        layout_id=template["id"],
    )
    await tenant_templates.save(
        conn,
        await tenant_row(conn, acme),
        template["id"],
        html=GOOD_HTML,
        text=GOOD_TEXT,
        created_by="test",
    )
    preview = await campaigns.preview(conn, app_settings, acme.id, campaign["id"])
    assert b"Spring look" in preview
    copy = await campaigns.duplicate(conn, acme.id, campaign["id"])
    assert copy["layout_id"] == template["id"] and copy["layout_version"] is None


SANDBOX_ESCAPES = {
    "python internals": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals of a helper": "{{ cycler.__init__.__globals__ }}",
    "the template's own context": "{{ self._TemplateReference__context }}",
    "a format string": "{{ '{0.__class__}'.format(sender) }}",
    "a file by path": '{% include "/etc/passwd" %}',
    "a file up the tree": '{% include "../../pyproject.toml" %}',
    "a built-in template that is not a partial": '{% include "newsletter.html" %}',
    "another tenant's template": '{% include "Their look.html" %}',
    "another tenant's template by import": '{% import "Their look.txt" as theirs %}',
}


@pytest.mark.parametrize("case", sorted(SANDBOX_ESCAPES))
async def test_the_sandbox_refuses_at_save_what_reaches_beyond_the_template(
    client, conn, acme, beta, case
):
    """G9: a template reaching for Python internals, a file or another tenant's template is
    refused at save with one message; nothing is stored, nothing is sent."""
    await new_template(conn, beta, "Their look")
    mine = await new_template(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    path = f"/dashboard/t/acme/templates/{mine['id']}"
    page = await get(client, cookie, path)
    before = await state(conn)
    reach = SANDBOX_ESCAPES[case]
    response = await post(
        client, cookie, path, {"html": reach + "\n" + GOOD_HTML, "text": GOOD_TEXT}, csrf_of(page)
    )
    html = await response.text()
    assert response.status == 400, html
    [message] = re.findall(r'<p class="error" id="form-error" role="alert">(.*?)</p>', html, re.S)
    assert message.startswith("Not saved: ")
    assert "Spring look.html" in message  # names the template (and the line where there is one)
    assert await state(conn) == before
    assert [r async for r in probes().workspace_deliveries(conn)] == []
    # Nothing of the attempt leaks into the page beyond the editor's own textarea.
    assert "root:" not in html and "[tool." not in html and "<class" not in html


@pytest.mark.parametrize(
    ("html", "text", "expected"),
    [
        (
            "{{ body_html }}",
            GOOD_TEXT,
            "Spring look.html lacks the required footer (postal address, unsubscribe link, "
            "preference-centre link)",
        ),
        (
            GOOD_HTML,
            "{{ body_text }}\n{{ recipient.unsubscribe_url }}\n",
            "Spring look.txt lacks the required footer (postal address, preference-centre link)",
        ),
        (GOOD_HTML + "\n{% if %}\n", GOOD_TEXT, "Spring look.html line 5: Expected an expression"),
        (GOOD_HTML + "{{ no_such_value }}", GOOD_TEXT, "Spring look.html line 4: 'no_such_value'"),
        (
            GOOD_HTML + "<!--" + "x" * (sandbox.MAX_SOURCE + 1) + "-->",
            GOOD_TEXT,
            "Spring look.html is larger than 256 KiB",
        ),
        (
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
            + GOOD_HTML,
            GOOD_TEXT,
            "the template takes longer than 1 s to render",
        ),
        ("{{ 'x' * 10000000000 }}" + GOOD_HTML, GOOD_TEXT, "the template makes too much output"),
    ],
    ids=["no footer", "text lacks links", "syntax", "undefined", "too large", "too slow", "huge"],
)
async def test_a_template_is_refused_at_save_with_one_clear_reason(
    client, conn, acme, html, text, expected
):
    """STANDARDS 26, 32: both parts carry the unsubscribe and preference links and the postal
    address; a template error names the template and line; over 256 KiB or 1 s is refused."""
    mine = await new_template(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    path = f"/dashboard/t/acme/templates/{mine['id']}"
    page = await get(client, cookie, path)
    before = await state(conn)
    response = await post(client, cookie, path, {"html": html, "text": text}, csrf_of(page))
    answer = await response.text()
    assert response.status == 400
    [message] = re.findall(r'id="form-error" role="alert">(.*?)</p>', answer, re.S)
    assert expected in message.replace("&#39;", "'"), message
    assert await state(conn) == before


async def test_the_api_saves_versions_and_refuses_like_the_workspace(client, conn, acme, beta):
    theirs = await new_template(conn, beta, "Their look")
    headers = {"Authorization": f"Bearer {acme.tokens['marketing']}"}
    base = "/api/v1/tenants/acme/templates"
    response = await client.post(base, json={"name": "Spring look"}, headers=headers)
    assert response.status == 201
    created = await response.json()
    assert created["current"]["version"] == 1 and "{{ body_html }}" in created["current"]["html"]
    one = f"{base}/{created['id']}"
    response = await client.post(
        f"{one}/versions", json={"html": GOOD_HTML, "text": GOOD_TEXT}, headers=headers
    )
    assert response.status == 201 and (await response.json())["versions"] == [2, 1]
    before = await state(conn)
    response = await client.post(
        f"{one}/versions",
        json={"html": "{{ ''.__class__ }}" + GOOD_HTML, "text": GOOD_TEXT},
        headers=headers,
    )
    body = await response.json()
    assert response.status == 400 and "is unsafe" in body["error"]["message"]
    assert await state(conn) == before
    preview = await (await client.get(f"{one}/preview", headers=headers)).json()
    assert "Spring look" in preview["html"] and preview["text"].startswith("SPRING LOOK")
    old = await (await client.get(f"{one}?version=1", headers=headers)).json()
    assert old["current"]["version"] == 1
    # Another tenant's template reads like one that does not exist.
    response = await client.get(f"{base}/{theirs['id']}", headers=headers)
    missing = await client.get(f"{base}/999999999", headers=headers)
    assert response.status == missing.status == 404
    assert await response.json() == await missing.json()


async def test_a_campaign_cannot_take_another_tenants_template(client, conn, acme, beta):
    theirs = await new_template(conn, beta, "Their look")
    cookie = await sign_in(client, acme.tokens["marketing"])
    editor = await get(client, cookie, "/dashboard/t/acme/campaigns/new")
    before = await state(conn)
    response = await post(
        client,
        cookie,
        "/dashboard/t/acme/campaigns",
        {
            "name": "X",
            "topic": "newsletter",
            "subject": "S",
            "format": "markdown",
            "body": BODY,
            "layout": str(theirs["id"]),
        },
        csrf_of(editor),
    )
    assert response.status == 400 and "No such template." in await response.text()
    assert await state(conn) == before


async def test_template_pages_read_only_for_roles_without_the_right(client, conn, acme):
    mine = await new_template(conn, acme)
    for role in ("compliance", "client"):
        cookie = await sign_in(client, acme.tokens[role])
        for path in ("/dashboard/t/acme/templates", f"/dashboard/t/acme/templates/{mine['id']}"):
            await get(client, cookie, path, status=403)


async def test_get_and_head_on_template_pages_change_nothing(client, conn, acme):
    """G4."""
    mine = await new_template(conn, acme)
    draft_row = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    before = await state(conn)
    for path in (
        "/dashboard/t/acme/templates",
        f"/dashboard/t/acme/templates/{mine['id']}",
        f"/dashboard/t/acme/templates/{mine['id']}?version=1",
        f"/dashboard/t/acme/templates/{mine['id']}/preview.html",
        f"/dashboard/t/acme/campaigns/{draft_row['id']}",
    ):
        for method in ("GET", "HEAD"):
            response = await client.request(method, path, headers=cookie, allow_redirects=False)
            assert response.status == 200, (method, path)
    assert await state(conn) == before
