"""Each tenant's own email templates (issue 17): stored in Postgres as numbered versions that
never change once written, checked at save by a sample render in the sandbox, and used as a
campaign's layout (the campaign pins the version it starts with).

A template starts from the built-in newsletter layout (``templates/email/tenant_start.*``).
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import asyncpg

from mailer.config import Settings
from mailer.db import queries, rows
from mailer.errors import Conflict, InvalidInput, NotFound
from mailer.resources import EMAIL_TEMPLATES_DIR
from mailer.sending import compose
from mailer.sending.sandbox import Layout

MAX_NAME = 100
STARTER = "tenant_start"
# Placeholder where the tenant has no postal address yet: the check is that the template shows
# the tenant's address, whatever it will be.
SAMPLE_POSTAL = "Sample Company\n1 Sample Street\nSample Town"
NO_TEMPLATE = NotFound("No such template.", field="template_id")


def starter() -> tuple[str, str]:
    """The HTML and text parts a new template starts with."""
    return (
        (EMAIL_TEMPLATES_DIR / f"{STARTER}.html").read_text(encoding="utf-8"),
        (EMAIL_TEMPLATES_DIR / f"{STARTER}.txt").read_text(encoding="utf-8"),
    )


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidInput(f"the template name must have 1 to {MAX_NAME} characters", field="name")
    if any(not (c.isalnum() or c in " -_") for c in name):
        raise InvalidInput(
            "the template name may hold letters, digits, spaces, - and _ only", field="name"
        )
    return name


def sample_sender(tenant: asyncpg.Record | dict[str, Any]) -> compose.Sender:
    """The tenant's sender values, as a sample campaign's messages would carry them."""
    domain = tenant["sender_domain"]
    return compose.Sender(
        from_name=tenant["sender_name"],
        from_address=tenant["sender_address"],
        domain=domain,
        postal_address=(tenant["postal_address"] or "").strip() or SAMPLE_POSTAL,
        list_id=f"Sample <sample.{tenant['slug']}.{domain}>",
        feedback_id=f"0:{tenant['id']}:0:optout",
        contact_web=tenant["contact_web"] or "",
        contact_email=tenant["contact_email"] or "",
        contact_phone=tenant["contact_phone"] or "",
    )


async def _others(
    conn: asyncpg.Connection, tenant_id: int, *, but: int | None
) -> dict[str, tuple[str, str]]:
    found = await rows(queries().email_templates.tenant_sources(conn, tenant_id=tenant_id))
    return {r["name"]: (r["html"], r["body_text"]) for r in found if r["id"] != but}


async def _checked(
    conn: asyncpg.Connection,
    tenant: asyncpg.Record,
    name: str,
    html: str,
    text: str,
    *,
    template_id: int | None,
) -> compose.PreparedMessage:
    others = await _others(conn, tenant["id"], but=template_id)
    layout = Layout(name, html.replace("\r\n", "\n"), text.replace("\r\n", "\n"), others=others)
    return compose.check_layout(layout, sample_sender(tenant))


async def create(
    conn: asyncpg.Connection,
    tenant: asyncpg.Record,
    name: str,
    *,
    created_by: str,
    html: str | None = None,
    text: str | None = None,
) -> asyncpg.Record:
    """A new template with its version 1 (the built-in layout unless parts are given); refused
    (nothing stored) when the parts fail the checks or the name is taken."""
    name = check_name(name)
    start_html, start_text = starter()
    html = start_html if html is None else html
    text = start_text if text is None else text
    q = queries().email_templates
    existing = await rows(q.list_templates(conn, tenant_id=tenant["id"]))
    if any(r["name"] == name for r in existing):
        raise Conflict(f"a template named {name!r} exists already", field="name")
    await _checked(conn, tenant, name, html, text, template_id=None)
    async with conn.transaction():
        row = await q.create_template(
            conn, tenant_id=tenant["id"], name=name, created_by=created_by
        )
        await q.add_version(
            conn, template_id=row["id"], html=html, body_text=text, created_by=created_by
        )
    return row


async def save(
    conn: asyncpg.Connection,
    tenant: asyncpg.Record,
    template_id: int,
    *,
    html: str,
    text: str,
    created_by: str,
) -> asyncpg.Record:
    """A new version of the template; refused (nothing stored) when it fails the checks."""
    template = await get(conn, tenant["id"], template_id)
    html, text = html.replace("\r\n", "\n"), text.replace("\r\n", "\n")
    await _checked(conn, tenant, template["name"], html, text, template_id=template_id)
    row: asyncpg.Record = await queries().email_templates.add_version(
        conn, template_id=template_id, html=html, body_text=text, created_by=created_by
    )
    return row


async def get(conn: asyncpg.Connection, tenant_id: int, template_id: int) -> asyncpg.Record:
    row = await queries().email_templates.get_template(conn, tenant_id=tenant_id, id=template_id)
    if row is None:
        raise NO_TEMPLATE
    return row


async def version(
    conn: asyncpg.Connection, template_id: int, number: int | None = None
) -> asyncpg.Record:
    """One version of a template (the newest when ``number`` is None)."""
    q = queries().email_templates
    if number is None:
        row = await q.latest_version(conn, template_id=template_id)
    else:
        row = await q.get_version(conn, template_id=template_id, version=number)
    if row is None:
        raise NotFound("No such version of this template.", field="version")
    return row


async def list_templates(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().email_templates.list_templates(conn, tenant_id=tenant_id))


async def versions(conn: asyncpg.Connection, template_id: int) -> list[asyncpg.Record]:
    return await rows(queries().email_templates.list_versions(conn, template_id=template_id))


async def layout_for(conn: asyncpg.Connection, campaign: asyncpg.Record) -> Layout | None:
    """The campaign's layout: None for the built-in one; else its template at the pinned
    version (the newest while the campaign has not started)."""
    if campaign["layout_id"] is None:
        return None
    template = await get(conn, campaign["tenant_id"], campaign["layout_id"])
    chosen = await version(conn, template["id"], campaign["layout_version"])
    others = await _others(conn, campaign["tenant_id"], but=template["id"])
    return Layout(template["name"], chosen["html"], chosen["body_text"], chosen["version"], others)


async def preview(
    conn: asyncpg.Connection, settings: Settings, tenant: asyncpg.Record, template_id: int
) -> tuple[str, str]:
    """The newest version's HTML and text parts for a sample recipient and a sample body (the
    links are samples too: no working link of a real person is shown to staff)."""
    template = await get(conn, tenant["id"], template_id)
    chosen = await version(conn, template_id)
    prepared = await _checked(
        conn, tenant, template["name"], chosen["html"], chosen["body_text"], template_id=template_id
    )
    domain = tenant["sender_domain"]
    raw = prepared.render(
        compose.Recipient(
            to_address=f"preview@{domain}",
            to_name="Preview",
            message_id=f"<template{template_id}.preview@{domain}>",
            unsubscribe_url=f"{settings.base_url}/u/PREVIEW",
            mailto_unsubscribe=f"unsubscribe+preview@{domain}",
            preferences_url=f"{settings.base_url}/p/PREVIEW",
        )
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    return (
        html_part.get_content() if isinstance(html_part, EmailMessage) else "",
        text_part.get_content() if isinstance(text_part, EmailMessage) else "",
    )
