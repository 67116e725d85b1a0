"""Tenants (the organisations whose lists these are) and their topics: create, read, update."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from mailer.addresses import parse_address
from mailer.db import queries, rows
from mailer.db_errors import domain_errors
from mailer.domains import aligned, organizational_domain
from mailer.errors import InvalidInput, UnknownTenant, UnknownTopic
from mailer.i18n import LANGUAGES, SOURCE_LANGUAGE, supported

TENANT_FIELDS = (
    "name",
    "sender_name",
    "sender_address",
    "sender_domain",
    "postal_address",
    "contact_web",
    "contact_email",
    "contact_phone",
    "dkim_selector",
    "dkim_key_path",
    "dkim_ed25519_selector",
    "dkim_ed25519_key_path",
    "partner_address",
    "time_zone",
    "minimum_age",
    "notice_period_days",
    "holidays",
    "limits",
    "default_language",
)
TOPIC_KINDS = ("marketing", "notice")
_SELECTOR = re.compile(r"[a-z0-9._-]+")  # the tenants table's CHECK on both selectors
# A web page, an email address or a phone number besides the postal address (STANDARDS 42).
CONTACT_FIELDS = ("contact_web", "contact_email", "contact_phone")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{2,38}")
DEFAULTS: dict[str, Any] = {
    "postal_address": None,
    "contact_web": None,
    "contact_email": None,
    "contact_phone": None,
    "dkim_selector": None,
    "dkim_key_path": None,
    "dkim_ed25519_selector": None,
    "dkim_ed25519_key_path": None,
    "partner_address": None,
    "time_zone": "UTC",
    "minimum_age": 13,
    "notice_period_days": 30,
    "holidays": [],
    "limits": {},
    "default_language": SOURCE_LANGUAGE,
}


async def create_tenant(conn: asyncpg.Connection, slug: str, **fields: Any) -> asyncpg.Record:
    values = {**DEFAULTS, **fields}
    for required in ("name", "sender_address"):
        if not values.get(required):
            raise InvalidInput(f"A tenant needs a {required.replace('_', ' ')}.", field=required)
    values.setdefault("sender_name", values["name"])
    checked = check_fields(values)
    language = checked.pop("default_language")
    contact = {name: checked.pop(name) for name in CONTACT_FIELDS}
    q = queries().tenants
    with domain_errors():
        async with conn.transaction():
            row: asyncpg.Record = await q.create_tenant(conn, slug=slug, **checked)
            if any(contact.values()):
                row = await q.set_contact(conn, id=row["id"], **contact)
            if language != SOURCE_LANGUAGE:
                row = await q.set_default_language(conn, id=row["id"], default_language=language)
            return row


async def update_tenant(
    conn: asyncpg.Connection, slug: str, changes: Mapping[str, Any]
) -> asyncpg.Record:
    unknown = set(changes) - set(TENANT_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown tenant fields: {', '.join(sorted(unknown))}")
    current = await get_tenant(conn, slug)
    merged = {name: current[name] for name in TENANT_FIELDS} | dict(changes)
    if "sender_address" in changes and "sender_domain" not in changes:
        merged["sender_domain"] = None  # follow the new address
    checked = check_fields(merged)
    with domain_errors():
        return await queries().tenants.update_tenant(conn, id=current["id"], **checked)


async def get_tenant(conn: asyncpg.Connection, slug: str) -> asyncpg.Record:
    tenant = await queries().tenants.get_tenant_by_slug(conn, slug=slug)
    if tenant is None:
        raise UnknownTenant(f"No tenant {slug!r}.", field="tenant")
    return tenant


async def list_tenants(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await rows(queries().tenants.list_tenants(conn))


async def create_topic(
    conn: asyncpg.Connection,
    tenant_id: int,
    *,
    slug: str,
    name: str,
    kind: str,
    description: str = "",
) -> asyncpg.Record:
    if kind not in TOPIC_KINDS:
        raise InvalidInput("A topic's kind is marketing or notice.", field="kind")
    with domain_errors():
        return await queries().tenants.create_topic(
            conn, tenant_id=tenant_id, slug=slug, name=name, description=description, kind=kind
        )


async def get_topic(conn: asyncpg.Connection, tenant_id: int, slug: str) -> asyncpg.Record:
    topic = await queries().tenants.get_topic_by_slug(conn, tenant_id=tenant_id, slug=slug)
    if topic is None:
        raise UnknownTopic(f"No topic {slug!r} in this tenant.", field="topic")
    return topic


async def list_topics(conn: asyncpg.Connection, tenant_id: int) -> list[asyncpg.Record]:
    return await rows(queries().tenants.list_topics(conn, tenant_id=tenant_id))


def _check_dkim(out: dict[str, Any]) -> None:
    """Selectors are DNS labels; the optional Ed25519 key comes with its selector and is only
    ever a second signature next to the RSA one (RFC 8463 §4: receivers may not know it)."""
    for name in ("dkim_selector", "dkim_ed25519_selector"):
        if out.get(name) is not None and not _SELECTOR.fullmatch(out[name]):
            raise InvalidInput(
                f"{name} must be lower-case letters, digits, dots, dashes or underscores.",
                field=name,
            )
    selector, path = out.get("dkim_ed25519_selector"), out.get("dkim_ed25519_key_path")
    if (selector is None) != (path is None):
        missing = "dkim_ed25519_key_path" if path is None else "dkim_ed25519_selector"
        raise InvalidInput(
            "The Ed25519 DKIM key needs both a selector and a key path.", field=missing
        )
    if path is not None and not (out.get("dkim_selector") and out.get("dkim_key_path")):
        raise InvalidInput(
            "The Ed25519 DKIM key is a second signature: set the RSA selector and key first.",
            field="dkim_key_path",
        )
    if selector is not None and selector == out.get("dkim_selector"):
        # One selector name publishes one key record, so the two keys cannot share it.
        raise InvalidInput(
            "The Ed25519 selector must differ from the RSA selector.",
            field="dkim_ed25519_selector",
        )


def check_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise tenant fields; raise InvalidInput naming the field."""
    out = dict(values)
    sender = parse_address(out["sender_address"])
    out["sender_address"] = sender.as_given
    out["sender_domain"] = (out.get("sender_domain") or sender.ascii_domain).lower()
    # DKIM's d=, the VERP return path and the Message-IDs all use sender_domain: unless it
    # shares the From's organizational domain, receivers fail DMARC (STANDARDS 24).
    if not aligned(out["sender_domain"], sender.ascii_domain):
        raise InvalidInput(
            f"sender_domain {out['sender_domain']} does not align with the From domain "
            f"{sender.ascii_domain} (DMARC needs one organizational domain, e.g. "
            f"bounces.{organizational_domain(sender.ascii_domain)}).",
            field="sender_domain",
        )
    if out.get("partner_address"):
        out["partner_address"] = parse_address(out["partner_address"]).as_given
    _check_contact(out)
    try:
        ZoneInfo(out["time_zone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"Unknown time zone {out['time_zone']!r} (use an IANA name like Europe/Paris).",
            field="time_zone",
        ) from None
    _check_dkim(out)
    language = supported(out.get("default_language"))
    if language is None or language != out.get("default_language"):
        raise InvalidInput(
            f"default_language must be one of {', '.join(LANGUAGES)}.", field="default_language"
        )
    out["holidays"] = [_as_date(day) for day in out.get("holidays") or []]
    if not isinstance(out.get("limits"), dict):
        raise InvalidInput("limits must be a JSON object.", field="limits")
    _check_retention(out["limits"])
    for name in ("minimum_age", "notice_period_days"):
        try:
            out[name] = int(out[name])
        except (TypeError, ValueError):
            raise InvalidInput(f"{name} must be a whole number.", field=name) from None
    if out["minimum_age"] < 13:
        raise InvalidInput(
            "The minimum age cannot be under 13: the policy excludes children 13 or under.",
            field="minimum_age",
        )
    return {name: out.get(name) for name in TENANT_FIELDS}


def has_contact(tenant: Mapping[str, Any]) -> bool:
    """Whether the tenant has a way to reach it besides the postal address (STANDARDS 42)."""
    return any(tenant.get(name) for name in CONTACT_FIELDS)


def contact_of(row: Any) -> dict[str, str | None]:
    """What public pages show of the tenant: its name, postal address and contact details."""
    return {
        "name": row.get("tenant_name") or row.get("name"),
        "postal_address": row.get("postal_address"),
        **{name: row.get(name) for name in CONTACT_FIELDS},
    }


def _check_contact(out: dict[str, Any]) -> None:
    """Contact details as people will use them: an http(s) page, an address, a phone number;
    empty means none."""
    for name in CONTACT_FIELDS:
        value = out.get(name)
        out[name] = value.strip() if isinstance(value, str) and value.strip() else None
    web = out["contact_web"]
    if web is not None:
        parts = urlsplit(web)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in web:
            raise InvalidInput(
                f"contact_web {web!r} is not a web address like https://example.com/contact.",
                field="contact_web",
            )
        if len(web) > 500:
            raise InvalidInput("contact_web is over 500 characters.", field="contact_web")
    if out["contact_email"] is not None:
        try:
            out["contact_email"] = parse_address(out["contact_email"]).as_given
        except InvalidInput as exc:
            raise InvalidInput(f"contact_email: {exc.message}", field="contact_email") from None
    phone = out["contact_phone"]
    if phone is not None and (not _PHONE.fullmatch(phone) or sum(c.isdigit() for c in phone) < 3):
        raise InvalidInput(
            f"contact_phone {phone!r} is not a phone number like +1 555 0100.",
            field="contact_phone",
        )


RETENTION_DAYS = (30, 3650)  # limits.retention_days bounds (mailer/sending/retention.py)


def _check_retention(limits: dict[str, Any]) -> None:
    """``retention_days``: how long deliveries and inbound events are kept (default 400)."""
    if "retention_days" not in limits:
        return
    days = limits["retention_days"]
    low, high = RETENTION_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise InvalidInput(
            f"limits.retention_days must be a whole number of days from {low} to {high}.",
            field="limits",
        )


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(
            f"Holiday {value!r} is not a date like 2026-12-25.", field="holidays"
        ) from None
