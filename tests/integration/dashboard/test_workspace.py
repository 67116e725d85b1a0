"""The staff workspace's campaign flow through the real app on real Postgres: the editor, the
inline checks, the preview, every action with post/redirect/get and its audit line, the live
progress endpoint, and the table-driven isolation test over every workspace POST."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mailer import event_endpoints, tenants, wording
from mailer.api_tokens import RIGHTS
from mailer.db import queries
from mailer.sending import campaigns, tenant_templates
from tests.conftest import probes
from tests.integration.dashboard.test_workspace_policy import POLICY_POSTS
from tests.support.api_world import CONTENT
from tests.support.mailer_env import DOMAIN
from tests.support.workspace import BODY, Tenant, csrf_of, draft, sign_in, state
from unsubscribe_web.dashboard import campaigns as workspace_campaigns
from unsubscribe_web.dashboard.workspace import API_RIGHTS, csrf_for
from unsubscribe_web.keys import SETTINGS


async def get(client, cookie, path: str, status: int = 200) -> str:
    response = await client.get(path, headers=cookie, allow_redirects=False)
    text: str = await response.text()
    assert response.status == status, text
    return text


async def post(client, cookie, path: str, data: dict[str, str], csrf: str | None) -> Any:
    form = dict(data) | ({"csrf": csrf} if csrf is not None else {})
    return await client.post(path, data=form, headers=cookie, allow_redirects=False)


def preview_text(html: str) -> str:
    found = re.search(r'<pre id="preview-text">(.*?)</pre>', html, re.S)
    assert found, "no text part on the page"
    return found.group(1)


def problems(html: str) -> list[str]:
    found = re.search(r'<ul id="problems">(.*?)</ul>', html, re.S)
    return re.findall(r"<li[^>]*>(.*?)</li>", found.group(1), re.S) if found else []


async def test_a_marketer_writes_a_markdown_campaign_and_sees_it_as_a_recipient_would(
    client, conn, acme, app_settings
):
    cookie = await sign_in(client, acme.tokens["marketing"])
    editor = await get(client, cookie, "/dashboard/t/acme/campaigns/new")
    response = await post(
        client,
        cookie,
        "/dashboard/t/acme/campaigns",
        {
            "name": "Spring",
            "topic": "newsletter",
            "subject": "Spring news",
            "preheader": "The garden opens",
            "format": "markdown",
            "body": BODY.replace("\n", "\r\n"),
            "text": "",
        },
        csrf_of(editor),
    )
    assert response.status == 303
    location = response.headers["Location"]
    assert re.fullmatch(r"/dashboard/t/acme/campaigns/\d+\?done=created", location)
    html = await get(client, cookie, location)
    assert "Campaign saved as a draft." in html
    assert 'id="ready"' in html and problems(html) == []
    # The preview: headers a receiver checks, signed like the worker signs.
    headers = dict(re.findall(r'<th scope="row">([\w-]+)</th><td><code>(.*?)</code>', html))
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith(f"&lt;{app_settings.base_url}/u/")
    assert f"d={DOMAIN}" in headers["DKIM-Signature"]
    assert "list-unsubscribe" in headers["DKIM-Signature"].lower()
    # The text part is generated from the Markdown, the merge fields filled in.
    text = preview_text(html)
    assert "Spring news for Preview" in text and "Our garden opens on Monday." in text
    assert "Acme Inc." in text  # the layout's postal address
    # The HTML part, from its own route, sandboxed by CSP.
    campaign_id = int(location.split("/")[-1].split("?")[0])
    frame = await client.get(
        f"/dashboard/t/acme/campaigns/{campaign_id}/preview.html", headers=cookie
    )
    assert frame.headers["Content-Security-Policy"].startswith(
        "sandbox; default-src 'none'; img-src data:"
    )
    frame_html = await frame.text()
    assert "<strong>Monday</strong>" in frame_html and "Spring news for Preview" in frame_html
    [line] = [r async for r in probes().audit_lines(conn) if r["action"] != "token.create"]
    assert line["action"] == "create_campaign" and line["detail"] == {"via": "workspace"}


async def test_the_preview_as_a_chosen_recipient_escapes_merge_fields(client, conn, acme):
    """A name is text: `<b>` in a name shows as `&lt;b&gt;` in the HTML part."""
    person = next(iter(acme.people))
    await probes().set_subscriber_name(conn, subscriber_id=person, name="<b>Ada</b>")
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    html = await get(client, cookie, f"{base}?recipient={person}")
    assert f'src="{base}/preview.html?recipient={person}"' in html
    frame = await get(client, cookie, f"{base}/preview.html?recipient={person}")
    assert "Spring news for &lt;b&gt;Ada&lt;/b&gt;" in frame and "<b>Ada</b>" not in frame
    text = preview_text(html)
    # The text part holds the name as given (shown escaped on this page).
    assert "Spring news for &lt;b&gt;Ada&lt;/b&gt;" in text
    headers = dict(re.findall(r'<th scope="row">([\w-]+)</th><td><code>(.*?)</code>', html))
    assert acme.people[person] in headers["To"]


async def test_the_editor_saves_refills_the_text_part_and_duplicates(client, conn, acme):
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    editor = await get(client, cookie, f"{base}/edit")
    assert "Our garden opens on **Monday**." in editor
    values = {
        "name": "Spring v2",
        "topic": "newsletter",
        "subject": "Spring news, again",
        "preheader": "",
        "format": "html",
        "body": '<p>Hi {{ name }}</p><p><a href="{{ unsubscribe_url }}">Leave</a></p>',
        "text": "",
        "fill_text": "1",
    }
    response = await post(client, cookie, base, values, csrf_of(editor))
    assert response.status == 303 and response.headers["Location"] == f"{base}/edit?done=saved"
    row = await campaigns.get(conn, acme.id, campaign["id"])
    assert row["name"] == "Spring v2" and row["content"]["format"] == "html"
    # The generated text keeps the merge fields as written, ready to edit.
    assert row["content"]["text"] == "Hi {{ name }}\n\n[Leave]({{ unsubscribe_url }})\n"
    page = await get(client, cookie, base)
    response = await post(client, cookie, f"{base}/duplicate", {}, csrf_of(page))
    assert response.status == 303
    copy_id = int(response.headers["Location"].split("/")[-1].split("?")[0])
    copy = await campaigns.get(conn, acme.id, copy_id)
    assert copy["name"] == "Copy of Spring v2" and copy["status"] == "draft"
    assert copy["content"] == row["content"] and copy["subject"] == row["subject"]


async def test_bad_editor_input_gets_one_clear_error_and_changes_nothing(client, conn, acme):
    cookie = await sign_in(client, acme.tokens["marketing"])
    editor = await get(client, cookie, "/dashboard/t/acme/campaigns/new")
    before = await state(conn)
    good = {"name": "N", "topic": "newsletter", "subject": "S", "format": "markdown"}
    for change, message in (
        ({"subject": "x" * 256}, "the subject must have 1 to 255 characters"),
        ({"subject": "two\nlines"}, "the name and subject must be one line of text"),
        ({"topic": "nope"}, "No topic"),
        ({"format": "docx"}, "the body format must be one of markdown, html"),
        ({"body": "  "}, "the body is empty"),
    ):
        data = good | {"body": BODY} | change
        response = await post(client, cookie, "/dashboard/t/acme/campaigns", data, csrf_of(editor))
        html = await response.text()
        assert response.status in (400, 404), html
        assert message.lower() in html.lower(), (change, html)
    assert await state(conn) == before


@pytest.mark.parametrize(
    "case",
    ["no_postal_address", "no_unsubscribe_link", "empty_audience", "template_error", "no_dkim"],
)
async def test_every_refusal_of_a_send_shows_inline_and_send_queues_nothing(
    client, conn, acme, tmp_path, app_settings, case
):
    """Each refusal `campaign send` makes is listed on the campaign page before sending, and
    pressing Send anyway queues nothing."""
    expected = {
        "no_postal_address": "the tenant has no postal address",
        "no_unsubscribe_link": "the body has no unsubscribe link",
        "empty_audience": "nobody would receive this campaign",
        "template_error": "body line 3: unexpected",
        "no_dkim": "no DKIM key",
    }[case]
    text = BODY
    if case == "no_postal_address":
        await probes().clear_postal_address(conn, tenant_id=acme.id)
    elif case == "no_unsubscribe_link":
        text = "# Hello\n\nNo way out.\n"
    elif case == "empty_audience":
        await probes().unsubscribe_everyone(conn)
    elif case == "template_error":
        text = "# Hello\n\n{{ name }\n"
    elif case == "no_dkim":
        await probes().clear_every_dkim_key(conn)
    campaign = await draft(conn, acme, text=text)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    html = await get(client, cookie, base)
    assert any(expected in p for p in problems(html)), problems(html)
    assert 'id="ready"' not in html
    before = await state(conn)
    response = await post(client, cookie, f"{base}/start", {}, csrf_of(html))
    answer = await response.text()
    assert response.status in (400, 409) and expected in answer
    assert 'id="action-error"' in answer
    assert await state(conn) == before


async def test_schedule_in_the_tenant_time_zone_and_a_past_time_is_refused(client, conn, acme):
    await tenants.update_tenant(conn, "acme", {"time_zone": "Europe/Paris"})
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    html = await get(client, cookie, base)
    assert "Send at (Europe/Paris)" in html
    zone = ZoneInfo("Europe/Paris")
    before = await state(conn)
    past = (dt.datetime.now(zone) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = await post(client, cookie, f"{base}/schedule", {"at": past}, csrf_of(html))
    assert response.status == 400 and "is in the past" in await response.text()
    assert await state(conn) == before
    later = dt.datetime.now(zone).replace(second=0, microsecond=0) + dt.timedelta(days=2)
    at = later.strftime("%Y-%m-%dT%H:%M")
    response = await post(client, cookie, f"{base}/schedule", {"at": at}, csrf_of(html))
    assert response.status == 303
    row = await campaigns.get(conn, acme.id, campaign["id"])
    assert row["status"] == "scheduled" and row["scheduled_at"] == later
    shown = await get(client, cookie, response.headers["Location"])
    assert f"scheduled for {later:%Y-%m-%d %H:%M} (Europe/Paris)" in shown
    assert [r async for r in probes().workspace_deliveries(conn)] == []


async def test_actions_send_pause_resume_cancel_and_retry_with_audit(client, conn, acme):
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    for verb, status_after, notice in (
        ("start", "sending", "Sending started."),
        ("pause", "paused", "Sending paused."),
        ("resume", "sending", "Sending resumed."),
        ("cancel", "cancelled", "Campaign cancelled."),
    ):
        html = await get(client, cookie, base)
        response = await post(client, cookie, f"{base}/{verb}", {}, csrf_of(html))
        assert response.status == 303, await response.text()
        shown = await get(client, cookie, response.headers["Location"])
        assert notice in shown
        assert (await campaigns.get(conn, acme.id, campaign["id"]))["status"] == status_after
    actions = [r["action"] async for r in probes().audit_lines(conn) if "via" in r["detail"]]
    assert actions == ["start_campaign", "pause_campaign", "resume_campaign", "cancel_campaign"]
    # Retry failed: soft failures go back to the queue.
    other = await draft(conn, acme, name="Retry me")
    await campaigns.start(conn, client.app[SETTINGS], acme.id, other["id"])
    await probes().fail_campaign_deliveries(conn, campaign_id=other["id"])
    html = await get(client, cookie, f"/dashboard/t/acme/campaigns/{other['id']}")
    assert "Retry failed (3)" in html
    response = await post(
        client, cookie, f"/dashboard/t/acme/campaigns/{other['id']}/retry", {}, csrf_of(html)
    )
    assert response.status == 303
    stats = await campaigns.stats(conn, acme.id, other["id"])
    assert stats.failed == 0 and stats.queued == 3


async def test_progress_json_has_the_core_statistics(client, conn, acme):
    campaign = await draft(conn, acme)
    settings = client.app[SETTINGS]
    await campaigns.start(conn, settings, acme.id, campaign["id"])
    cookie = await sign_in(client, acme.tokens["client"])
    response = await client.get(
        f"/dashboard/t/acme/campaigns/{campaign['id']}/progress.json", headers=cookie
    )
    figures = await response.json()
    stats = await campaigns.stats(conn, acme.id, campaign["id"])
    assert figures["total"] == stats.total == 3 and figures["remaining"] == 3
    assert figures["percent"] == 0 and figures["status"] == "sending"
    assert figures["ended"] is False


async def test_a_test_send_queues_one_message_to_the_staff_address(client, conn, acme):
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    html = await get(client, cookie, base)
    before = await state(conn)
    response = await post(client, cookie, f"{base}/test", {"to": "not an address"}, csrf_of(html))
    assert response.status == 400 and "The test address is not valid" in await response.text()
    assert await state(conn) == before
    response = await post(client, cookie, f"{base}/test", {"to": "me@staff.example"}, csrf_of(html))
    assert response.status == 303
    [delivery] = [r async for r in probes().workspace_deliveries(conn)]
    assert delivery["payload"]["campaign_id"] == campaign["id"]


# --- isolation ----------------------------------------------------------------------------------

# Every workspace POST: the data it needs, and the API endpoint whose right it takes.
CAMPAIGN_POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "ws_campaign_create": (
        "create_campaign",
        {"name": "X", "topic": "newsletter", "subject": "S", "format": "markdown", "body": BODY},
    ),
    "ws_campaign_update": (
        "update_campaign",
        {"name": "X", "topic": "newsletter", "subject": "S", "format": "markdown", "body": BODY},
    ),
    "ws_campaign_duplicate": ("duplicate_campaign", {}),
    "ws_campaign_test": ("test_campaign", {"to": "me@staff.example"}),
    "ws_campaign_schedule": ("schedule_campaign", {"at": "2099-01-01T10:00"}),
    "ws_campaign_start": ("start_campaign", {}),
    "ws_campaign_pause": ("pause_campaign", {}),
    "ws_campaign_resume": ("resume_campaign", {}),
    "ws_campaign_cancel": ("cancel_campaign", {}),
    "ws_campaign_retry": ("retry_campaign", {}),
    "ws_template_create": ("create_template", {"name": "New look"}),
    "ws_staff_invite": ("invite_staff", {"email": "new@staff.example", "role": "marketing"}),
    "ws_staff_role": ("set_staff_role", {"account": "1", "role": "client"}),
    "ws_staff_disable": ("disable_staff", {"account": "1"}),
    "ws_template_save": (
        "save_template",
        {
            "html": '{{ body_html }}{% include "_footer.html" %}',
            "text": '{{ body_text }}{% include "_footer.txt" %}',
        },
    ),
    "ws_subscriber_unsubscribe": ("unsubscribe_subscriber", {"topic": "newsletter"}),
    "ws_subscriber_suppress": ("suppress_subscriber", {"scope": "all"}),
    "ws_subscriber_request": ("create_request", {"kind": "erase"}),
    "ws_import_create": (
        "create_import",
        {"topic": "newsletter", "lawful_basis": "consent", "source": "fair", "age_attested": "yes"},
    ),
    "ws_suppressions_import": ("import_suppressions", {"reason": "complaint"}),
    "ws_suppressions_export": ("list_suppressions", {}),
    "ws_wording_set": (
        "set_tenant_wording",
        {"key": "greeting", "language": "de", "text": "Guten Tag,"},
    ),
    "ws_wording_clear": ("clear_tenant_wording", {"key": "greeting", "language": "de"}),
}
# Staff roles bound to one tenant: the first that holds an action's right acts as the
# tenant's own staff in the cases below; the others must be refused with 403.
TENANT_ROLES = ("marketing", "compliance", "client")
# The request queue's forms: a compliance user acts; marketing (and, for the actions, the
# client) lacks the right.
REQUEST_POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "ws_request_create": ("create_request", {"kind": "erase", "email": "acme-r0@example.org"}),
    "ws_request_upload": ("upload_client_removal", {"file": "email\nacme-r0@example.org\n"}),
    "ws_request_act": ("complete_request", {}),
    "ws_request_attach": ("attach_request", {"email": "acme-r0@example.org"}),
    "ws_request_reject": ("reject_request", {"reason": "No data held"}),
    "ws_request_extend": ("extend_request", {"reason": "Many systems"}),
}
# The webhooks pages' forms (issue 22): a client acts for its own tenant (it holds
# webhooks.write); marketing and compliance only read.
WEBHOOK_POSTS: dict[str, tuple[str, dict[str, str]]] = {
    "ws_webhook_create": ("create_event_endpoint", {"url": "https://crm.acme.example/in"}),
    "ws_webhook_update": (
        "update_event_endpoint",
        {"event_types": "subscriber.unsubscribed", "timeout_seconds": "5", "active": "1"},
    ),
    "ws_webhook_rotate": ("rotate_event_endpoint_secret", {}),
    "ws_webhook_test": ("test_event_endpoint", {}),
    "ws_webhook_redeliver": ("redeliver_events", {"since": "2000-01-01T00:00"}),
    "ws_webhook_remove": ("delete_event_endpoint", {}),
}
POSTS = CAMPAIGN_POSTS | REQUEST_POSTS | WEBHOOK_POSTS


def test_the_isolation_table_covers_every_workspace_post(client):
    """A new workspace form must be added to the table below."""
    routes = {
        r.name
        for r in client.app.router.routes()
        if r.method == "POST" and r.name and r.name.startswith("ws_")
    }
    # The policy pages' POSTS live with their tests (compliance holds their right).
    assert routes == set(POSTS) | set(POLICY_POSTS)
    assert {api for api, _ in (POSTS | POLICY_POSTS).values()} <= set(API_RIGHTS)
    assert set(workspace_campaigns.ACTIONS) == {
        n.removeprefix("ws_campaign_") for n in POSTS if "{campaign_id}" in _path(client, n)
    } - {"update"}


def _path(client, name: str) -> str:
    return str(client.app.router[name].canonical)


async def test_every_workspace_post_refuses_other_tenants_missing_rights_and_missing_csrf(
    client, conn, acme, beta
):
    """For each POST: beta's campaign (template, subscriber) under acme's tenant, beta's
    tenant itself, a role without the API right, and no (or a wrong) CSRF token: refused,
    nothing changed."""
    mine = await draft(conn, acme, name="Mine")
    theirs = await draft(conn, beta, name="Theirs")
    mine_ids = {
        "campaign_id": mine["id"],
        "template_id": (await _template(conn, acme))["id"],
        "subscriber_id": min(acme.people),
    }
    theirs_ids = {
        "campaign_id": theirs["id"],
        "template_id": (await _template(conn, beta))["id"],
        "subscriber_id": min(beta.people),
    }
    sessions = {role: await sign_in(client, acme.tokens[role]) for role in acme.tokens}
    # Each session's own valid CSRF value (compliance and client cannot open the pages).
    csrf = {role: csrf_for(client.app, secret) for role, secret in acme.tokens.items()}
    page = await get(client, sessions["marketing"], f"/dashboard/t/acme/campaigns/{mine['id']}")
    assert csrf_of(page) == csrf["marketing"]
    # Words in both tenants, so a clear that got through would show.
    for t in (acme, beta):
        await wording.set_wording(conn, t.id, "greeting", "de", f"Hallo von {t.slug},")
    await _refusals(client, conn, CAMPAIGN_POSTS, "marketing", sessions, csrf, mine_ids, theirs_ids)


async def test_every_request_queue_post_refuses_other_tenants_missing_rights_and_csrf(
    client, conn, acme, beta
):
    """The request queue's forms: beta's request under acme, beta's tenant, a role without
    the right, no or a wrong CSRF token: refused, no request, person or audit line changed."""
    mine = await _withdrawal(conn, acme)
    theirs = await _withdrawal(conn, beta)
    sessions = {role: await sign_in(client, acme.tokens[role]) for role in acme.tokens}
    csrf = {role: csrf_for(client.app, secret) for role, secret in acme.tokens.items()}
    page = await get(client, sessions["compliance"], f"/dashboard/t/acme/requests/{mine}")
    assert csrf_of(page) == csrf["compliance"]
    await _refusals(
        client,
        conn,
        REQUEST_POSTS,
        "compliance",
        sessions,
        csrf,
        {"request_id": mine},
        {"request_id": theirs},
    )


async def test_every_webhooks_post_refuses_other_tenants_missing_rights_and_csrf(
    client, conn, acme, beta
):
    """The webhooks forms: beta's endpoint under acme, beta's tenant, marketing and compliance
    (read only), no or a wrong CSRF token, no session: refused; no endpoint, secret, delivery,
    attempt or audit line changed, and nothing sent."""
    mine = await event_endpoints.create(
        conn, client.app[SETTINGS], tenant_id=acme.id, url="https://crm.acme.example/in"
    )
    theirs = await event_endpoints.create(
        conn, client.app[SETTINGS], tenant_id=beta.id, url="https://crm.beta.example/in"
    )
    sessions = {role: await sign_in(client, acme.tokens[role]) for role in acme.tokens}
    csrf = {role: csrf_for(client.app, secret) for role, secret in acme.tokens.items()}
    page = await get(
        client, sessions["client"], f"/dashboard/t/acme/webhooks/{mine.endpoint['id']}"
    )
    assert csrf_of(page) == csrf["client"]
    for role in ("marketing", "compliance"):
        await get(client, sessions[role], f"/dashboard/t/acme/webhooks/{mine.endpoint['id']}")
        await get(client, sessions[role], "/dashboard/t/acme/webhooks")
    await get(client, sessions["client"], "/dashboard/t/beta/webhooks", 404)
    await get(
        client, sessions["client"], f"/dashboard/t/acme/webhooks/{theirs.endpoint['id']}", 404
    )
    await _refusals(
        client,
        conn,
        WEBHOOK_POSTS,
        "client",
        sessions,
        csrf,
        {"endpoint_id": mine.endpoint["id"]},
        {"endpoint_id": theirs.endpoint["id"]},
    )


async def _withdrawal(conn, t: Tenant) -> int:
    request_id: int = await queries().inbound.insert_partner_request(
        conn,
        tenant_id=t.id,
        requester=f"unknown@{t.slug}.example",
        received_at=dt.datetime.now(dt.UTC),
        detail={"confirmed_by": "mailbox"},
    )
    return request_id


async def _refusals(
    client,
    conn,
    posts: dict[str, tuple[str, dict[str, str]]],
    actor: str,
    sessions: dict[str, dict[str, str]],
    csrf: dict[str, str],
    mine_ids: dict[str, int],
    theirs_ids: dict[str, int],
) -> None:
    before = await state(conn)
    for name, (api, data) in posts.items():
        id_names = [k for k in mine_ids if "{" + k + "}" in _path(client, name)]
        needs_id = bool(id_names)

        def url(slug: str, ids: dict[str, int], name: str = name, used: Any = id_names) -> str:
            parts = {"tenant": slug} | {k: str(ids[k]) for k in used}
            return str(client.app.router[name].url_for(**parts))

        right = API_RIGHTS[api]
        # The test's actor where it holds the right, else the first tenant role that does.
        holder = (
            actor
            if right in _rights(actor)
            # Staff administration is no tenant role's right: the actor stands in (refused).
            else next((r for r in TENANT_ROLES if right in _rights(r)), actor)
        )
        cases: list[tuple[str, str, dict[str, str], str | None, tuple[int, ...]]] = []
        # Staff of acme with the right: beta's tenant, and (where the route names one) beta's
        # campaign, template or subscriber under acme.
        cases.append(
            (
                "other tenant",
                url("beta", theirs_ids),
                sessions[holder],
                csrf[holder],
                (404,),
            )
        )
        if needs_id:
            cases.append(
                (
                    "other tenant's id",
                    url("acme", theirs_ids),
                    sessions[holder],
                    csrf[holder],
                    (404,),
                )
            )
        lacking = [r for r in TENANT_ROLES if right not in _rights(r)]
        assert lacking, (name, "every role may do this: nothing to refuse")
        for role in lacking:
            cases.append(
                (
                    f"{role} lacks {right}",
                    url("acme", mine_ids),
                    sessions[role],
                    csrf[role],
                    (403,),
                )
            )
        cases.append(("no CSRF", url("acme", mine_ids), sessions[holder], None, (403,)))
        cases.append(
            (
                "another session's CSRF",
                url("acme", mine_ids),
                sessions[holder],
                csrf["admin"],
                (403,),
            )
        )
        cases.append(("no session", url("acme", mine_ids), {}, csrf[holder], (401,)))
        for label, path, cookie, token, statuses in cases:
            response = await post(client, cookie, path, data, token)
            assert response.status in statuses, (name, label, await response.text())
            assert await state(conn) == before, (name, label)


async def _template(conn, t: Tenant) -> Any:
    tenant = await queries().tenants.get_tenant(conn, id=t.id)
    return await tenant_templates.create(conn, tenant, f"Look of {t.slug}", created_by="test")


def _rights(role: str) -> frozenset[str]:
    return RIGHTS[role]


async def test_a_form_from_another_site_is_refused(client, conn, acme):
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    token = csrf_of(await get(client, cookie, base))
    before = await state(conn)
    response = await client.post(
        f"{base}/start",
        data={"csrf": token},
        headers=cookie | {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert await state(conn) == before


async def test_workspace_pages_without_a_session_go_to_sign_in(client, acme, conn):
    campaign = await draft(conn, acme)
    for path in (
        "/dashboard/t/acme/campaigns",
        "/dashboard/t/acme/campaigns/new",
        f"/dashboard/t/acme/campaigns/{campaign['id']}",
        f"/dashboard/t/acme/campaigns/{campaign['id']}/progress.json",
    ):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/dashboard", path


async def test_a_newsletter_made_by_the_api_shows_but_is_not_overwritten_by_the_editor(
    client, conn, acme
):
    campaign = await campaigns.create(
        conn,
        tenant_id=acme.id,
        topic_slug="newsletter",
        name="From the CLI",
        template="newsletter",
        subject="Hello",
        content=CONTENT,
    )
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    html = await get(client, cookie, base)
    assert 'id="ready"' in html and 'id="edit"' not in html
    assert "Hello Preview," in preview_text(html)
    editor = await get(client, cookie, f"{base}/edit")
    assert "does not edit" in editor and 'id="editor"' not in editor
    before = await state(conn)
    data = {"name": "X", "topic": "newsletter", "subject": "S", "format": "markdown", "body": BODY}
    response = await post(client, cookie, base, data, csrf_of(html))
    assert response.status == 409 and "does not edit" in await response.text()
    assert await state(conn) == before


async def test_workspace_pages_allow_only_our_own_script_and_no_inline_script(client, conn, acme):
    campaign = await draft(conn, acme)
    settings = client.app[SETTINGS]
    await campaigns.start(conn, settings, acme.id, campaign["id"])
    cookie = await sign_in(client, acme.tokens["marketing"])
    response = await client.get(f"/dashboard/t/acme/campaigns/{campaign['id']}", headers=cookie)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = await response.text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' src="/static/workspace.js" defer', "")]
    script = await client.get("/static/workspace.js")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "progress" in await script.text()


async def test_get_and_head_on_workspace_pages_change_nothing(client, conn, acme):
    """G4: link scanners and prefetchers only read."""
    campaign = await draft(conn, acme)
    cookie = await sign_in(client, acme.tokens["marketing"])
    base = f"/dashboard/t/acme/campaigns/{campaign['id']}"
    before = await state(conn)
    for path in (
        "/dashboard/t/acme/campaigns",
        "/dashboard/t/acme/campaigns/new",
        base,
        f"{base}/edit",
        f"{base}/preview.html",
        f"{base}/progress.json",
        f"{base}/start",  # a POST route: GET is refused
    ):
        for method in ("GET", "HEAD"):
            response = await client.request(method, path, headers=cookie, allow_redirects=False)
            assert response.status in (200, 405), (method, path)
    assert await state(conn) == before
