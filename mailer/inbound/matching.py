"""Map a bounce, complaint or relay report back to what we sent: the delivery (and so the
tenant, campaign and person), from the returned Message-ID, a VERP code, the List-Unsubscribe
codes of the returned headers. Mail from anyone is matched only by identifiers carrying our
MAC (``locate_signed``); an authenticated relay's webhook also by a stored Message-ID or, as a
last resort, the recipient's address (``locate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from mailer.addresses import parse_address, suppression_key, tenant_hash_key
from mailer.db import queries
from mailer.errors import InvalidInput
from mailer.tokens import CodeClaims, CodeKind, Keyring, Purpose, read_message_id

__all__ = [
    "MISS_REASONS",
    "Match",
    "address_key_for",
    "locate",
    "locate_signed",
    "read_local_code",
    "split_address",
]

BOUNCE_PREFIX = "bounces"
UNSUBSCRIBE_PREFIX = "unsubscribe"

_MAILTO = re.compile(r"<mailto:([^<>@\s]+)@([^<>?\s]+)[^<>]*>", re.I)
# The one-click path of issue 4's web app: /u/TOKEN (base64url).
_ONE_CLICK = re.compile(r"<https://[^<>\s]*/u/([A-Za-z0-9_-]+)/?>", re.I)


@dataclass(frozen=True, slots=True)
class Match:
    """What a report is about. ``delivery`` is a get_delivery row when one is known."""

    tenant_id: int
    delivery: asyncpg.Record | None
    subscriber_id: int | None
    via: str  # message_id | verp | list_unsubscribe | recipient

    @property
    def delivery_id(self) -> int | None:
        return None if self.delivery is None else int(self.delivery["id"])

    @property
    def campaign_id(self) -> int | None:
        if self.delivery is None or self.delivery["campaign_id"] is None:
            return None
        return int(self.delivery["campaign_id"])


def split_address(address: str) -> tuple[str, str]:
    """(local part, lowercased domain); the local part keeps its case."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return local, domain.lower().rstrip(".")


def read_local_code(keyring: Keyring, local: str, prefix: str, kind: CodeKind) -> CodeClaims | None:
    """The verified claims of ``prefix+CODE``, case-insensitively; None when it is not one."""
    head, plus, code = local.partition("+")
    if not plus or head.lower() != prefix:
        return None
    try:
        return keyring.read_code(code, kind)
    except InvalidInput:
        return None


async def locate(
    conn: asyncpg.Connection,
    keyring: Keyring,
    hash_key: bytes,
    *,
    tenant_ids: Sequence[int],
    message_id: str | None = None,
    verp_addresses: Iterable[str | None] = (),
    list_unsubscribe: str | None = None,
    recipient: str | None = None,
) -> Match | None:
    """For an authenticated relay's report (webhook): the first of a signed Message-ID, a
    stored Message-ID, VERP code, List-Unsubscribe code or token, recipient address.

    The relay is authenticated by its webhook secret, so its plain identifiers are trusted;
    mail from anyone uses ``locate_signed``. Only tenants in ``tenant_ids`` are considered: a
    report sent to one tenant's address can never touch another tenant's people.
    """
    found = await _locate(
        conn, keyring, hash_key, tenant_ids=tenant_ids, message_id=message_id,
        verp_addresses=verp_addresses, list_unsubscribe=list_unsubscribe, recipient=recipient,
        signed_only=False,
    )  # fmt: skip
    return found if isinstance(found, Match) else None


async def locate_signed(
    conn: asyncpg.Connection,
    keyring: Keyring,
    *,
    tenant_ids: Sequence[int],
    message_id: str | None = None,
    verp_addresses: Iterable[str | None] = (),
    list_unsubscribe: str | None = None,
    recipient: str | None = None,
) -> Match | str:
    """For a report anyone could have sent (an ARF mail): only identifiers whose MAC holds.

    Returns the match, or why there is none (one of ``MISS_REASONS``): a guessable Message-ID
    or the recipient's address alone names nobody, since anyone can write them.
    """
    return await _locate(
        conn, keyring, b"", tenant_ids=tenant_ids, message_id=message_id,
        verp_addresses=verp_addresses, list_unsubscribe=list_unsubscribe, recipient=recipient,
        signed_only=True,
    )  # fmt: skip


MISS_REASONS = (
    "no_tenant",
    "unknown_delivery",
    "unsigned_message_id",
    "recipient_only",
    "no_identifier",
)


async def _locate(
    conn: asyncpg.Connection,
    keyring: Keyring,
    hash_key: bytes,
    *,
    tenant_ids: Sequence[int],
    message_id: str | None,
    verp_addresses: Iterable[str | None],
    list_unsubscribe: str | None,
    recipient: str | None,
    signed_only: bool,
) -> Match | str:
    allowed = list(tenant_ids)
    if not allowed:
        return "no_tenant"
    q = queries().inbound
    signed_seen = False
    signed = read_message_id(keyring, message_id)
    if signed is not None and signed.ids[0] in allowed:
        signed_seen = True
        row = await q.get_delivery(conn, tenant_id=signed.ids[0], id=signed.ids[1])
        if row is not None:
            return Match(row["tenant_id"], row, row["subscriber_id"], "message_id")
    if message_id and signed is None and not signed_only:
        row = await q.delivery_by_message_id(conn, message_id=message_id, tenant_ids=allowed)
        if row is not None:
            return Match(row["tenant_id"], row, row["subscriber_id"], "message_id")
    for address in verp_addresses:
        if not address:
            continue
        claims = read_local_code(keyring, split_address(address)[0], BOUNCE_PREFIX, CodeKind.BOUNCE)
        if claims is not None and claims.ids[0] in allowed:
            signed_seen = True
            row = await q.get_delivery(conn, tenant_id=claims.ids[0], id=claims.ids[1])
            if row is not None:
                return Match(row["tenant_id"], row, row["subscriber_id"], "verp")
    if list_unsubscribe:
        found = await _by_list_unsubscribe(conn, keyring, list_unsubscribe, allowed)
        if isinstance(found, Match):
            return found
        signed_seen = signed_seen or found
    if recipient and len(allowed) == 1 and not signed_only:
        by_address = await _by_recipient(conn, hash_key, allowed[0], recipient)
        if by_address is not None:
            return by_address
    if signed_seen:
        return "unknown_delivery"
    if message_id:
        return "unsigned_message_id"
    return "recipient_only" if recipient else "no_identifier"


async def _by_list_unsubscribe(
    conn: asyncpg.Connection, keyring: Keyring, header: str, allowed: list[int]
) -> Match | bool:
    """The person a signed List-Unsubscribe code names; else whether any code was signed."""
    people: list[tuple[int, int, int]] = []
    for local, _domain in _MAILTO.findall(header):
        claims = read_local_code(keyring, local, UNSUBSCRIBE_PREFIX, CodeKind.UNSUBSCRIBE)
        if claims is not None:
            people.append((claims.ids[0], claims.ids[1], claims.ids[2]))
    for token in _ONE_CLICK.findall(header):
        try:
            link = keyring.verify(token, Purpose.ONE_CLICK)
        except InvalidInput:
            continue
        people.append((link.tenant_id, link.subscriber_id, link.object_id))
    for tenant_id, subscriber_id, topic_id in people:
        if tenant_id not in allowed:
            continue
        row = await queries().inbound.latest_topic_delivery(
            conn, tenant_id=tenant_id, subscriber_id=subscriber_id, topic_id=topic_id
        )
        if row is not None:
            return Match(tenant_id, row, subscriber_id, "list_unsubscribe")
        subscriber = await queries().consent.get_subscriber(
            conn, tenant_id=tenant_id, id=subscriber_id
        )
        if subscriber is not None:
            return Match(tenant_id, None, subscriber_id, "list_unsubscribe")
    return any(tenant_id in allowed for tenant_id, _, _ in people)


async def _by_recipient(
    conn: asyncpg.Connection, hash_key: bytes, tenant_id: int, recipient: str
) -> Match | None:
    key = address_key_for(hash_key, tenant_id, recipient)
    if key is None:
        return None
    subscriber = await queries().consent.get_subscriber_by_key(
        conn, tenant_id=tenant_id, email_key=key
    )
    if subscriber is None:
        return None
    return Match(tenant_id, None, subscriber["id"], "recipient")


def address_key_for(hash_key: bytes, tenant_id: int, address: str | None) -> bytes | None:
    """The suppression key of an address in a tenant, or None when it is not an address."""
    if not address:
        return None
    try:
        return suppression_key(tenant_hash_key(hash_key, tenant_id), parse_address(address))
    except InvalidInput:
        return None


def delivery_address_key(hash_key: bytes, delivery: Any) -> bytes | None:
    """The key of the address a delivery went to: the subscriber's, else its recipient's."""
    if delivery["email_key"] is not None:
        return bytes(delivery["email_key"])
    return address_key_for(hash_key, delivery["tenant_id"], delivery["address"])


async def remember_addresses(
    conn: asyncpg.Connection,
    event_id: int,
    hash_key: bytes,
    tenant_ids: Sequence[int],
    addresses: Iterable[str | None],
) -> None:
    """Keep the keyed hashes of the addresses an inbound event names, for each tenant it may
    belong to: erasure finds the event by them, even when it matched no delivery and the
    person has changed address since."""
    keys = {
        key
        for tenant_id in tenant_ids
        for address in addresses
        if (key := address_key_for(hash_key, tenant_id, address)) is not None
    }
    if keys:
        await queries().inbound.set_address_keys(conn, id=event_id, address_keys=sorted(keys))
