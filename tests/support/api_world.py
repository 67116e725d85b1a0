"""Two tenants with topics, subscribers, a suppression, an import and a token per role: the
world the admin API tests (roles matrix, tenant isolation, schemathesis) run against."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer import api_tokens, event_endpoints, tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.config import Settings, SmtpRelay
from mailer.consent import imports
from mailer.consent import writer as consent
from mailer.db import queries
from mailer.rights import policy, privacy
from mailer.sending import campaigns, tenant_templates
from tests.support.mailer_env import add_subscribers
from tests.support.staff import account_for


@dataclass
class TenantWorld:
    slug: str
    id: int
    topic_id: int
    subscriber_id: int
    subscriber_email: str
    import_id: int
    campaign_id: int = 0
    request_id: int = 0
    template_id: int = 0
    endpoint_id: int = 0  # an event endpoint (issue 22)
    tokens: dict[str, str] = field(default_factory=dict)  # role -> secret


@dataclass
class World:
    a: TenantWorld
    b: TenantWorld
    admin: str


async def _tenant(conn: Any, settings: Settings, slug: str, tmp_path: Path) -> TenantWorld:
    tenant = await tenants.create_tenant(
        conn,
        slug,
        name=f"Tenant {slug}",
        sender_address=f"news@{slug}.example",
        postal_address="1 Main Street, Springfield",
        contact_web=f"https://{slug}.example/contact",
    )
    news = await tenants.create_topic(
        conn, tenant["id"], slug="news", name="News", kind="marketing"
    )
    await tenants.create_topic(conn, tenant["id"], slug="notices", name="Notices", kind="notice")
    email = f"alice@{slug}.example"
    signed = await consent.subscribe(
        conn,
        hash_key=settings.hash_key,
        tenant_id=tenant["id"],
        topic_id=news["id"],
        email=email,
        age_attested=True,
        source="web_form",
        evidence=consent.Evidence(ip="192.0.2.1", user_agent="test", form_text="Yes please"),
    )
    await consent.confirm(
        conn,
        hash_key=settings.hash_key,
        tenant_id=tenant["id"],
        subscriber_id=signed.subscriber_id,
        topic_id=news["id"],
    )
    key = suppression_key(
        tenant_hash_key(settings.hash_key, tenant["id"]), f"bounced@{slug}.example"
    )
    await consent.suppress(
        conn,
        tenant_id=tenant["id"],
        address_key=key,
        scope="all",
        reason="hard_bounce",
        source="test",
    )
    csv_path = tmp_path / f"{slug}-import.csv"
    csv_path.write_text(f"email,name\nbob@{slug}.example,Bob\nnot-an-address,Nobody\n")
    result = await imports.run_import(
        conn,
        settings,
        tenant_id=tenant["id"],
        topic_id=news["id"],
        path=csv_path,
        options=imports.ImportOptions("consent", "test fixture", age_attested=True),
    )
    world = TenantWorld(slug, tenant["id"], news["id"], signed.subscriber_id, email, result["id"])
    now = dt.datetime.now(dt.UTC)
    await policy.publish(
        conn,
        tenant=tenant,
        body="# Privacy\n\nWe keep little.",
        summary="First version",
        effective_at=now + dt.timedelta(days=31),
        now=now,
    )
    world.campaign_id = (await new_campaign(conn, tenant["id"]))["id"]
    world.request_id = (await new_request(conn, settings, tenant, email))["id"]
    template = await tenant_templates.create(conn, tenant, f"Look of {slug}", created_by="test")
    world.template_id = template["id"]
    world.endpoint_id = (await new_endpoint(conn, settings, tenant["id"]))["id"]
    for role in ("marketing", "compliance", "client"):
        token = await api_tokens.create_token(conn, role=role, tenant_id=tenant["id"])
        world.tokens[role] = token.secret
    return world


async def build_world(conn: Any, settings: Settings, tmp_path: Path) -> World:
    a = await _tenant(conn, settings, "alpha", tmp_path)
    b = await _tenant(conn, settings, "beta", tmp_path)
    admin = await api_tokens.create_token(conn, role="admin", tenant_id=None)
    a.tokens["admin"] = admin.secret
    b.tokens["admin"] = admin.secret
    return World(a, b, admin.secret)


CONTENT = {"headline": "News", "intro": "Hello.", "blocks": []}


async def new_campaign(conn: Any, tenant_id: int) -> Any:
    return await campaigns.create(
        conn,
        tenant_id=tenant_id,
        topic_slug="news",
        name="Spring",
        template="newsletter",
        subject="Spring news",
        content=CONTENT,
    )


async def new_request(conn: Any, settings: Settings, tenant: Any, email: str) -> Any:
    return await privacy.create_request(
        conn,
        hash_key=settings.hash_key,
        tenant=tenant,
        kind="access",
        email=email,
        now=dt.datetime.now(dt.UTC),
        verified=True,
    )


def sending_settings(settings: Settings) -> Settings:
    """Settings that let a campaign start: a relay (never reached here) and unsigned mail."""
    return dataclasses.replace(
        settings,
        smtp=SmtpRelay("127.0.0.1", 9, use_tls=False, starttls="off"),
        mailer=dataclasses.replace(settings.mailer, allow_unsigned=True),
    )


async def role_objects(conn: Any, settings: Settings, t: TenantWorld) -> dict[str, int]:
    """Fresh objects in the states the write routes need: one set per role that uses them."""
    tenant = await queries().tenants.get_tenant(conn, id=t.id)
    sending = await new_campaign(conn, t.id)
    await campaigns.start(conn, settings, t.id, sending["id"])
    paused = await new_campaign(conn, t.id)
    await campaigns.start(conn, settings, t.id, paused["id"])
    await campaigns.pause(conn, t.id, paused["id"])
    # Someone the subscriber actions may unsubscribe and suppress, so the campaigns above
    # keep their audience.
    person = await add_subscribers(conn, settings, t.id, t.topic_id, 1, prefix=f"p{paused['id']}-")
    return {
        "person": min(person),
        "draft": (await new_campaign(conn, t.id))["id"],
        "sending": sending["id"],
        "paused": paused["id"],
        "request": (await new_request(conn, settings, tenant, t.subscriber_email))["id"],
        "to_reject": (await new_request(conn, settings, tenant, t.subscriber_email))["id"],
        # A partner withdrawal mailed from an address that matched nobody (confirmed claim).
        "withdrawal": await queries().inbound.insert_partner_request(
            conn,
            tenant_id=t.id,
            requester="someone-else@x.example",
            received_at=dt.datetime.now(dt.UTC),
            detail={"confirmed_by": "mailbox"},
        ),
        "staff": await account_for(conn, "compliance", t.id),
        "endpoint": (await new_endpoint(conn, settings, t.id))["id"],
    }


async def new_endpoint(conn: Any, settings: Settings, tenant_id: int) -> Any:
    """An event endpoint at a name the loopback DNS does not know (so nothing is reached)."""
    created = await event_endpoints.create(
        conn, settings, tenant_id=tenant_id, url="https://crm.unknown.test/optout-events"
    )
    return created.endpoint


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
