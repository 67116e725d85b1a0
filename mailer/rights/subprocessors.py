"""The companies that help provide the service (sub-processors, GDPR Art. 28(2), STANDARDS 41):
a register per tenant and one for the whole installation (relays, hosting), each saved as a
whole; and a material change, which publishes a new policy version whose text embeds the
register, so the notice period, the notice campaign and the proof of notice apply unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer import audit
from mailer.db import queries, rows
from mailer.errors import InvalidInput
from mailer.rights import policy

MAX_ENTRIES = 100
LIMITS = {"name": 200, "purpose": 500, "location": 200}
# The heading the policy text carries the register under; a material change replaces the
# section it starts (up to the next heading of the same level) or appends one.
SECTION_TITLE = "Companies that help provide the service"
_SECTION = f"## {SECTION_TITLE}"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    purpose: str
    location: str


def check_entries(raw: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """A register as people typed it: each field one line of text within its limit, each
    company once (blank rows, all three fields empty, are dropped)."""
    out: list[Entry] = []
    seen: set[str] = set()
    for number, item in enumerate(raw, start=1):
        values = {k: str(item.get(k) or "").strip() for k in LIMITS}
        if not any(values.values()):
            continue
        for key, limit in LIMITS.items():
            value = values[key]
            if not value:
                raise InvalidInput(f"Entry {number} has no {key}.", field=key)
            if len(value) > limit or any(ord(c) < 32 or c == "|" for c in value):
                raise InvalidInput(
                    f"Entry {number}: the {key} is one line of at most {limit} characters (no |).",
                    field=key,
                )
        if values["name"].lower() in seen:
            raise InvalidInput(f"{values['name']!r} is listed twice.", field="name")
        seen.add(values["name"].lower())
        out.append(Entry(**values))
    if len(out) > MAX_ENTRIES:
        raise InvalidInput(f"At most {MAX_ENTRIES} companies in a register.", field="entries")
    return out


async def register(conn: asyncpg.Connection, tenant_id: int | None) -> list[asyncpg.Record]:
    """A tenant's register, or the installation's (``None``)."""
    return await rows(queries().subprocessors.register(conn, tenant_id=tenant_id))


async def save(
    conn: asyncpg.Connection, tenant_id: int | None, entries: list[Entry], *, by: str
) -> list[asyncpg.Record]:
    """Replace a register with ``entries`` (checked), audited, in one transaction."""
    q = queries().subprocessors
    async with conn.transaction():
        await q.lock_register(conn, tenant_id=tenant_id)
        before = [r["name"] for r in await register(conn, tenant_id)]
        await q.clear_register(conn, tenant_id=tenant_id)
        for position, entry in enumerate(entries):
            await q.add_entry(
                conn,
                tenant_id=tenant_id,
                position=position,
                name=entry.name,
                purpose=entry.purpose,
                location=entry.location,
                updated_by=by,
            )
        await audit.record(
            conn,
            actor=by,
            action="subprocessors.save",
            tenant_id=tenant_id,
            target_type="subprocessors",
            detail={
                "register": "tenant" if tenant_id is not None else "installation",
                "before": before,
                "after": [e.name for e in entries],
            },
        )
        return await register(conn, tenant_id)


def as_entries(found: Iterable[Mapping[str, Any]]) -> list[Entry]:
    return [Entry(r["name"], r["purpose"], r["location"]) for r in found]


def section(own: list[Entry], installation: list[Entry]) -> str:
    """The register as a Markdown section of the policy text."""
    lines = [
        _SECTION,
        "",
        "These companies help us provide the service and process personal data on our "
        "instructions:",
        "",
        "| Company | Purpose | Location |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {e.name} | {e.purpose} | {e.location} |" for e in own + installation]
    if not own and not installation:
        lines += ["| (none) | | |"]
    return "\n".join(lines)


def embed(body: str, text: str) -> str:
    """``body`` with its register section replaced by ``text`` (or ``text`` appended)."""
    lines = body.strip("\n").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _SECTION)
    except StopIteration:
        return ("\n".join(lines) + "\n\n" + text).strip("\n") + "\n"
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "# "))),
        len(lines),
    )
    kept = lines[:start] + text.splitlines() + (["", *lines[end:]] if end < len(lines) else [])
    return "\n".join(kept).strip("\n") + "\n"


@dataclass(frozen=True, slots=True)
class MaterialChange:
    version: asyncpg.Record
    notice: asyncpg.Record | None  # the draft notice campaign, when the tenant has a notice topic


async def publish_change(
    conn: asyncpg.Connection,
    *,
    tenant: asyncpg.Record,
    effective_at: dt.datetime,
    summary: str,
    now: dt.datetime,
    policy_url: str,
    force_reason: str | None = None,
    by: str = "cli",
) -> MaterialChange:
    """A change of the register marked material: the newest policy text with the register
    embedded, published like any version (the notice period applies, a shorter one only with
    ``force_reason``), with its notice campaign as a draft on the notice topic."""
    latest = await queries().policy.latest_version(conn, tenant_id=tenant["id"])
    own = as_entries(await register(conn, tenant["id"]))
    installation = as_entries(await register(conn, None))
    body = embed(latest["body_md"] if latest else "", section(own, installation))
    topic = await policy.first_notice_topic(conn, tenant["id"])
    async with conn.transaction():
        version = await policy.publish(
            conn,
            tenant=tenant,
            body=body,
            summary=summary,
            effective_at=effective_at,
            now=now,
            force_reason=force_reason,
            published_by=by,
        )
        notice = None
        if topic is not None:
            notice = await policy.create_notice_campaign(
                conn,
                tenant=tenant,
                version=version,
                topic=topic,
                policy_url=policy_url,
                by=by,
            )
    return MaterialChange(version, notice)
