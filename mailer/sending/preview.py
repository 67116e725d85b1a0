"""A campaign's message as one chosen recipient would get it, built and signed by the worker's
own Composer, so the preview cannot drift from what is sent.

The links in a preview are those of a sample subscriber (id 0), never the chosen person's:
a preview shown to staff must not hold a working opt-out or preference link of a real person.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import asyncpg

from mailer.config import Settings
from mailer.db import queries, rows
from mailer.errors import OptoutError
from mailer.sending import campaigns
from mailer.sending.worker import Composer

SAMPLE_RECIPIENTS = 20
# Shown in the preview's header list, in this order (what receivers and people check).
HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "DKIM-Signature",
)


@dataclass(frozen=True, slots=True)
class Preview:
    raw: bytes
    html: str
    text: str
    headers: list[tuple[str, str]]
    signed: bool  # False when the tenant has no DKIM key (shown unsigned, and refused to send)


async def recipients(
    conn: asyncpg.Connection, tenant_id: int, topic_id: int
) -> list[asyncpg.Record]:
    """The first recipients of the campaign's audience, for the picker."""
    return await rows(
        queries().campaigns.audience_sample(
            conn, tenant_id=tenant_id, topic_id=topic_id, lim=SAMPLE_RECIPIENTS
        )
    )


async def render(
    conn: asyncpg.Connection,
    settings: Settings,
    campaign: asyncpg.Record,
    recipient: asyncpg.Record | None,
) -> Preview:
    """The campaign's message for ``recipient`` (one of ``recipients``), or a sample person."""
    tenant = await queries().tenants.get_tenant(conn, id=campaign["tenant_id"])
    signed = True
    try:
        campaigns.signer_for(tenant, settings)
    except OptoutError:
        # Still show the message: its missing signature is one of the listed problems.
        signed = False
        settings = dataclasses.replace(
            settings, mailer=dataclasses.replace(settings.mailer, allow_unsigned=True)
        )
    row: dict[str, Any] = {
        "id": 0,
        "tenant_id": campaign["tenant_id"],
        "campaign_id": campaign["id"],
        "subscriber_id": 0,
        "address": recipient["email"] if recipient else f"preview@{tenant['sender_domain']}",
        "name": recipient["name"] if recipient else "Preview",
        "payload": {},
        "template": campaign["template"],
    }
    composer = Composer(settings)
    try:
        await composer.load(conn, [row])
    except OptoutError as exc:
        raise campaigns.CampaignRefused(exc.message, field=exc.field) from exc
    raw = composer.build(row).data
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    headers = [
        (name, " ".join(str(value).split()))
        for name in HEADERS
        for value in (message.get_all(name) or [])
    ]
    return Preview(
        raw=raw,
        html=html_part.get_content() if isinstance(html_part, EmailMessage) else "",
        text=text_part.get_content() if isinstance(text_part, EmailMessage) else "",
        headers=headers,
        signed=signed,
    )
