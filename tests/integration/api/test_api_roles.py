"""The admin API's access rules over every route: each role can do exactly what its rights
allow (403 otherwise, inside its own tenant), another tenant's objects answer 404 word for
word like objects that do not exist, and missing, bad, expired or revoked tokens get 401."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mailer import api_tokens
from mailer.api_tokens import RIGHTS
from tests.support.api_world import (
    CONTENT,
    TenantWorld,
    bearer,
    build_world,
    role_objects,
    sending_settings,
)
from unsubscribe_web.api.admin import ENDPOINTS
from unsubscribe_web.app import create_app

ROLES = ("admin", "marketing", "compliance", "client")
CSV = {"Content-Type": "text/csv"}
MISSING_ID = 999_999_999
TEMPLATE_HTML = '<p>{{ body_html }}</p>{% include "_footer.html" %}'
TEMPLATE_TEXT = '{{ body_text }}\n{% include "_footer.txt" %}'


def example(
    name: str,
    t: TenantWorld,
    tag: str,
    *,
    slug: str | None = None,
    subscriber: int | None = None,
    import_id: int | None = None,
    objs: dict[str, int] | None = None,
    version: int = 1,
) -> tuple[str, str, dict[str, Any]]:
    """A valid request for route ``name`` in tenant ``t`` (or the slug/ids given instead).
    ``objs`` holds campaigns and a request in the states the write routes need."""
    s = f"/api/v1/tenants/{slug or t.slug}"
    sub = subscriber or t.subscriber_id
    imp = import_id or t.import_id
    o = objs or {
        "draft": t.campaign_id,
        "sending": t.campaign_id,
        "paused": t.campaign_id,
        "request": t.request_id,
    }
    c = f"{s}/campaigns"
    tpl = o.get("template", t.template_id)
    ep = f"{s}/event-endpoints/{o.get('endpoint', t.endpoint_id)}"
    # Each publish must take effect after the one before: roles go in order.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(
        days=100 + (ROLES.index(tag) if tag in ROLES else 9)
    )
    table: dict[str, tuple[str, str, dict[str, Any]]] = {
        "me": ("GET", "/api/v1/me", {}),
        "list_tenants": ("GET", "/api/v1/tenants", {}),
        "create_tenant": (
            "POST",
            "/api/v1/tenants",
            {"json": {"slug": f"new-{tag}", "name": "New", "sender_address": f"n@{tag}.example"}},
        ),
        "get_tenant": ("GET", s, {}),
        "update_tenant": ("PATCH", s, {"json": {"notice_period_days": 40}}),
        "list_topics": ("GET", f"{s}/topics", {}),
        "create_topic": ("POST", f"{s}/topics", {"json": {"slug": f"t-{tag}", "name": "T"}}),
        "get_topic": ("GET", f"{s}/topics/news", {}),
        "list_tenant_wording": ("GET", f"{s}/wording", {}),
        "set_tenant_wording": (
            "PUT",
            f"{s}/wording/greeting/de",
            {"json": {"text": f"Guten Tag ({tag}),"}},
        ),
        "clear_tenant_wording": ("DELETE", f"{s}/wording/footer_reason/fr", {}),
        "list_subscribers": (
            "GET",
            f"{s}/subscribers",
            {"params": {"topic": "news", "state": "confirmed"}},
        ),
        "get_subscriber": ("GET", f"{s}/subscribers/{sub}", {}),
        "consent_history": ("GET", f"{s}/subscribers/{sub}/consent", {}),
        "unsubscribe_subscriber": (
            "POST",
            f"{s}/subscribers/{o.get('person', sub)}/unsubscribe",
            {"json": {"topic": "news"}},
        ),
        "suppress_subscriber": (
            "POST",
            f"{s}/subscribers/{o.get('person', sub)}/suppress",
            {"json": {"scope": "marketing"}},
        ),
        "list_suppressions": ("GET", f"{s}/suppressions", {}),
        "add_suppression": (
            "POST",
            f"{s}/suppressions",
            {"json": {"email": f"gone-{tag}@x.example", "reason": "complaint"}},
        ),
        "import_suppressions": (
            "POST",
            f"{s}/suppressions/import",
            {
                "params": {"reason": "hard_bounce"},
                "data": f"email\nold-{tag}@x.example\n",
                "headers": CSV,
            },
        ),
        "list_imports": ("GET", f"{s}/imports", {}),
        "create_import": (
            "POST",
            f"{s}/imports",
            {
                "params": {
                    "topic": "news",
                    "lawful_basis": "consent",
                    "source": "trade fair",
                    "age_attested": "true",
                },
                "data": f"email,name\nnew-{tag}@x.example,New\n",
                "headers": CSV,
            },
        ),
        "get_import": ("GET", f"{s}/imports/{imp}", {}),
        "import_errors": ("GET", f"{s}/imports/{imp}/errors", {}),
        "correct_import": (
            "POST",
            f"{s}/imports/{imp}/correct",
            {"json": {"lawful_basis": "legitimate_interests"}},
        ),
        "list_audit": ("GET", "/api/v1/audit", {}),
        "list_campaigns": ("GET", c, {}),
        "create_campaign": (
            "POST",
            c,
            {"json": {"topic": "news", "name": f"c-{tag}", "subject": "S", "content": CONTENT}},
        ),
        "get_campaign": ("GET", f"{c}/{o['draft']}", {}),
        "preview_campaign": ("GET", f"{c}/{o['draft']}/preview", {}),
        "campaign_stats": ("GET", f"{c}/{o['sending']}/stats", {}),
        "schedule_campaign": (
            "POST",
            f"{c}/{o['draft']}/schedule",
            {"json": {"at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()}},
        ),
        "test_campaign": (
            "POST",
            f"{c}/{o['draft']}/test",
            {"json": {"to": f"proof-{tag}@x.example"}},
        ),
        "update_campaign": ("PATCH", f"{c}/{o['draft']}", {"json": {"name": f"renamed-{tag}"}}),
        "check_campaign": ("GET", f"{c}/{o['draft']}/checks", {}),
        "duplicate_campaign": ("POST", f"{c}/{o['draft']}/duplicate", {}),
        "start_campaign": ("POST", f"{c}/{o['draft']}/start", {}),
        "retry_campaign": ("POST", f"{c}/{o['sending']}/retry", {}),
        "pause_campaign": ("POST", f"{c}/{o['sending']}/pause", {}),
        "resume_campaign": ("POST", f"{c}/{o['paused']}/resume", {}),
        "cancel_campaign": ("POST", f"{c}/{o['draft']}/cancel", {}),
        "list_policy_versions": ("GET", f"{s}/policy/versions", {}),
        "publish_policy_version": (
            "POST",
            f"{s}/policy/versions",
            {
                "json": {
                    "body": f"# Privacy\n\nVersion of {tag}.",
                    "summary": "- clearer words",
                    "effective_at": later.isoformat(),
                }
            },
        ),
        "get_policy_version": ("GET", f"{s}/policy/versions/{version}", {}),
        "policy_version_proof": ("GET", f"{s}/policy/versions/{version}/proof", {}),
        "export_partners": ("POST", f"{s}/partner-exports", {"json": {"partner": "Acme ads"}}),
        "list_requests": ("GET", f"{s}/requests", {}),
        "list_partner_claims": ("GET", f"{s}/partner-claims", {}),
        "create_request": (
            "POST",
            f"{s}/requests",
            {"json": {"kind": "client_removal", "email": t.subscriber_email}},
        ),
        "get_request": ("GET", f"{s}/requests/{o['request']}", {}),
        "extend_request": (
            "POST",
            f"{s}/requests/{o['request']}/extend",
            {"json": {"reason": "Many systems to search"}},
        ),
        "complete_request": ("POST", f"{s}/requests/{o['request']}/complete", {}),
        "upload_client_removal": (
            "POST",
            f"{s}/client-removals",
            {"data": f"email\n{t.subscriber_email}\ngone-{tag}@x.example\n", "headers": CSV},
        ),
        "attach_request": (
            "POST",
            f"{s}/requests/{o.get('withdrawal', o['request'])}/attach",
            {"json": {"email": t.subscriber_email}},
        ),
        "reject_request": (
            "POST",
            f"{s}/requests/{o.get('to_reject', o['request'])}/reject",
            {"json": {"reason": "We hold no data beyond what your preference page shows."}},
        ),
        "list_templates": ("GET", f"{s}/templates", {}),
        "create_template": ("POST", f"{s}/templates", {"json": {"name": f"Look {tag}"}}),
        "get_template": ("GET", f"{s}/templates/{tpl}", {}),
        "save_template": (
            "POST",
            f"{s}/templates/{tpl}/versions",
            {"json": {"html": TEMPLATE_HTML, "text": TEMPLATE_TEXT}},
        ),
        "preview_template": ("GET", f"{s}/templates/{tpl}/preview", {}),
        "list_staff": ("GET", "/api/v1/staff", {}),
        "invite_staff": (
            "POST",
            "/api/v1/staff",
            {"json": {"email": f"new-{tag}@staff.example", "role": "marketing", "tenant": t.slug}},
        ),
        "set_staff_role": (
            "POST",
            f"/api/v1/staff/{o.get('staff', MISSING_ID)}/role",
            {"json": {"tenant": t.slug, "role": "client"}},
        ),
        "disable_staff": ("POST", f"/api/v1/staff/{o.get('staff', MISSING_ID)}/disable", {}),
        "reset_staff_2fa": ("POST", f"/api/v1/staff/{o.get('staff', MISSING_ID)}/reset-2fa", {}),
        "list_events": ("GET", f"{s}/events", {"params": {"limit": "10"}}),
        "list_event_endpoints": ("GET", f"{s}/event-endpoints", {}),
        "create_event_endpoint": (
            "POST",
            f"{s}/event-endpoints",
            {"json": {"url": f"https://crm-{tag}.unknown.test/in", "include_address": True}},
        ),
        "get_event_endpoint": ("GET", ep, {}),
        "update_event_endpoint": ("PATCH", ep, {"json": {"event_types": ["subscriber.erased"]}}),
        "delete_event_endpoint": ("DELETE", ep, {}),
        "rotate_event_endpoint_secret": ("POST", f"{ep}/rotate", {}),
        "test_event_endpoint": ("POST", f"{ep}/test", {}),
        "redeliver_events": ("POST", f"{ep}/redeliver", {"json": {"since": later.isoformat()}}),
        "event_endpoint_deliveries": ("GET", f"{ep}/deliveries", {}),
        "set_external_id": (
            "PUT",
            f"{s}/subscribers/{sub}/external-id",
            {"json": {"external_id": f"crm-{tag}"}},
        ),
        "list_subprocessors": ("GET", f"{s}/subprocessors", {}),
        "save_subprocessors": (
            "POST",
            f"{s}/subprocessors",
            {
                "json": {
                    "entries": [{"name": f"Host {tag}", "purpose": "Hosting", "location": "EU"}]
                }
            },
        ),
        "list_installation_subprocessors": ("GET", "/api/v1/subprocessors", {}),
        "save_installation_subprocessors": (
            "POST",
            "/api/v1/subprocessors",
            {"json": {"entries": [{"name": f"Relay {tag}", "purpose": "Mail", "location": "EU"}]}},
        ),
    }
    return table[name]


PROTECTED = [e for e in ENDPOINTS if not e.public]
TENANT_ROUTES = [e for e in PROTECTED if "tenant" in e.path_params]


@pytest.fixture
async def world(conn, settings, tmp_path):
    return await build_world(conn, settings, tmp_path)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(sending_settings(settings)))


async def call(client, token, method, path, kwargs):
    headers = {**bearer(token), **kwargs.pop("headers", {})}
    response = await client.request(method, path, headers=headers, **kwargs)
    return response.status, await response.json()


def test_every_route_has_an_example():
    """A new route must be added to the matrix and isolation tests below."""
    from tests.support.api_world import TenantWorld

    t = TenantWorld("alpha", 1, 1, 1, "a@x.example", 1, 1, 1)
    for endpoint in PROTECTED:
        method, _path, _ = example(endpoint.name, t, "x")
        assert method == endpoint.method, endpoint.name


async def test_each_role_can_do_exactly_what_its_rights_allow(world, client, conn, settings):
    for role in ROLES:
        objs = await role_objects(conn, sending_settings(settings), world.a)
        for endpoint in PROTECTED:
            method, path, kwargs = example(endpoint.name, world.a, role, objs=objs)
            status, body = await call(client, world.a.tokens[role], method, path, kwargs)
            allowed = endpoint.right is None or endpoint.right in RIGHTS[role]
            context = f"{role} {endpoint.method} {endpoint.path}: {body}"
            if allowed:
                assert status == endpoint.status, context
            else:
                assert status == 403, context
                assert body["error"]["code"] == "forbidden", context


async def test_rights_table_matches_the_roles_of_the_issue():
    """admin everything; marketing topics, subscribers read, imports, campaigns; compliance
    policy, requests, consent proof, suppressions; client read and request only."""
    rights = {e.right for e in PROTECTED if e.right}
    assert rights <= RIGHTS["admin"]
    # The client is the controller: it names where its events go (issue 22).
    assert not any(
        r.endswith((".write", ".create"))
        for r in RIGHTS["client"] - {"requests.create", "webhooks.write"}
    )
    assert "webhooks.write" not in RIGHTS["marketing"] | RIGHTS["compliance"]
    assert "webhooks.read" in RIGHTS["marketing"] & RIGHTS["compliance"] & RIGHTS["client"]
    assert "consent.read" not in RIGHTS["marketing"]
    assert "suppressions.write" not in RIGHTS["marketing"]
    assert "imports.write" not in RIGHTS["compliance"]
    assert "audit.read" not in RIGHTS["marketing"] | RIGHTS["compliance"] | RIGHTS["client"]


async def test_other_tenants_objects_answer_exactly_like_missing_ones(world, client):
    a, b = world.a, world.b
    for role in ("client", "marketing", "compliance"):
        token = a.tokens[role]
        for endpoint in TENANT_ROUTES:
            # B's tenant, with B's own ids, against a tenant that does not exist.
            theirs = example(endpoint.name, b, f"iso-{role}")
            missing = example(
                endpoint.name,
                b,
                f"iso-{role}",
                slug="no-such-tenant",
                subscriber=MISSING_ID,
                import_id=MISSING_ID,
                objs=dict.fromkeys(
                    ("draft", "sending", "paused", "request", "template", "endpoint"), MISSING_ID
                ),
                version=999_999,
            )
            status_b, body_b = await call(client, token, *theirs)
            status_m, body_m = await call(client, token, *missing)
            context = f"{role} {endpoint.method} {endpoint.path}"
            assert status_b == 404, f"{context}: {body_b}"
            assert (status_b, body_b) == (status_m, body_m), context
            ids = {
                "subscriber_id",
                "import_id",
                "campaign_id",
                "request_id",
                "template_id",
                "endpoint_id",
            }
            if ids & set(endpoint.path_params):
                # B's ids under A's own tenant: the same as ids that do not exist.
                b_objs = dict.fromkeys(("draft", "sending", "paused"), b.campaign_id)
                theirs = example(
                    endpoint.name,
                    a,
                    role,
                    subscriber=b.subscriber_id,
                    import_id=b.import_id,
                    objs=b_objs
                    | {
                        "request": b.request_id,
                        "template": b.template_id,
                        "endpoint": b.endpoint_id,
                    },
                )
                missing = example(
                    endpoint.name,
                    a,
                    role,
                    subscriber=MISSING_ID,
                    import_id=MISSING_ID,
                    objs=dict.fromkeys(
                        ("draft", "sending", "paused", "request", "template", "endpoint"),
                        MISSING_ID,
                    ),
                )
                got = await call(client, token, *theirs)
                expected = await call(client, token, *missing)
                assert got == expected, context
                assert got[0] in (403, 404), context
        # The routes without a tenant in the path show A's world only.
        status, body = await call(client, token, "GET", "/api/v1/tenants", {})
        assert status == 200 and [t["slug"] for t in body["items"]] == ["alpha"]
        status, body = await call(client, token, "GET", "/api/v1/me", {})
        assert body["tenant"] == "alpha" and body["role"] == role
        status, body = await call(
            client,
            token,
            "GET",
            "/api/v1/tenants/alpha/subscribers",
            {"params": {"email": b.subscriber_email}},
        )
        assert status == 200 and body["items"] == []
    # Nothing of B changed while A's tokens tried.
    status, body = await call(client, world.admin, "GET", "/api/v1/tenants/beta/topics", {})
    assert [t["slug"] for t in body["items"]] == ["news", "notices"]


async def test_missing_bad_expired_and_revoked_tokens_get_401(world, client, conn):
    path = "/api/v1/tenants/alpha/topics"
    response = await client.get(path)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["error"]["code"] == "unauthorized"
    for header in ("Bearer optout_nope", "Basic abc", "Bearer ", "Bearer " + "x" * 500):
        response = await client.get(path, headers={"Authorization": header})
        assert response.status == 401, header

    expiring = await api_tokens.create_token(conn, role="client", tenant_id=world.a.id)
    revoking = await api_tokens.create_token(conn, role="admin", tenant_id=None)
    for token in (expiring, revoking):
        response = await client.get(path, headers=bearer(token.secret))
        assert response.status == 200
    await api_tokens.expire_token(conn, expiring.id)
    await api_tokens.revoke_token(conn, revoking.id)
    response = await client.get(path, headers=bearer(expiring.secret))
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "The API token has expired."
    response = await client.get(path, headers=bearer(revoking.secret))
    assert response.status == 401
    assert (await response.json())["error"]["message"] == "The API token was revoked."
    # Unknown paths and methods under the API answer JSON too.
    response = await client.get("/api/v1/nothing-here", headers=bearer(world.admin))
    assert response.status == 404 and "error" in await response.json()
    response = await client.delete(path, headers=bearer(world.admin))
    assert response.status == 405 and "error" in await response.json()
