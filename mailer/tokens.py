"""Signed, rotatable identifiers: link tokens for URLs and short codes for mail local parts.

Both are HMAC-SHA256 under a keyring (the first key signs, every key verifies), canonical,
compared in constant time, and carry ids only, never an address (DESIGN G5; STANDARDS 6, 44).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailer.errors import ConfigError, InvalidInput

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_CODE_TENANT_ID",
    "MAX_ID",
    "CodeClaims",
    "CodeKind",
    "ExpiredToken",
    "InvalidToken",
    "Keyring",
    "LinkClaims",
    "Purpose",
    "message_id_for",
    "read_message_id",
]

MAX_ID = 2**63 - 1
"""The largest id (a Postgres bigint) and the largest expiry a token carries."""

MAX_CODE_LENGTH = 52
"""A local-part code never exceeds this, so ``bounces+`` + code fits RFC 5321's 64 octets."""

MAX_CODE_TENANT_ID = 2**21 - 1
"""The largest tenant id an UNSUBSCRIBE code can carry.

Three arbitrary bigints (189 bits) plus an 80-bit MAC need 269 bits, but 52 base32 characters
hold only 260: something must be bounded. Tenants are by far the smallest population (a
processor's clients), so the tenant id is; subscriber and topic ids may be any bigint. The bound
is checked for every code, not only long ones, so an over-large tenant fails on its first send.
"""

_DAY = 86_400


class InvalidToken(InvalidInput):
    """The link is not valid."""

    code = "invalid_token"


class ExpiredToken(InvalidToken):
    """The link has expired."""

    code = "expired_token"


class Purpose(enum.IntEnum):
    """What a link token may be used for; the purpose is signed and checked on every verify.

    To add one: a new member with a new value, and its lifetime in ``_TTL``.
    """

    ONE_CLICK = 1
    PREFERENCES = 2
    CONFIRM = 3
    UNDO = 4
    DATA_ACCESS = 5
    DATA_SESSION = 6  # the self-service session a used DATA_ACCESS link opens
    CLAIM = 7  # confirms a partner-sharing withdrawal mailed from an unknown address

    @property
    def ttl(self) -> int | None:
        """Seconds a token of this purpose lives, or None for never."""
        return _TTL[self]


# Unsubscribe and preference links must work as long as the subscription exists (STANDARDS 14);
# a data link reveals or destroys data, so it lives an hour (DESIGN G5). A confirmation link
# lives a week: long enough for a slow inbox, short enough that a stale sign-up cannot be
# confirmed months later by whoever finds the mail.
_TTL: dict[Purpose, int | None] = {
    Purpose.ONE_CLICK: None,
    Purpose.PREFERENCES: None,
    Purpose.CONFIRM: 7 * _DAY,
    Purpose.UNDO: 30 * _DAY,
    Purpose.DATA_ACCESS: 3_600,
    Purpose.DATA_SESSION: 3_600,
    Purpose.CLAIM: 7 * _DAY,  # the confirmation mail goes out at most once a week
}
# The purposes a token may carry, by value: a dict lookup, not Purpose()'s, on every verify.
_PURPOSES = {purpose.value: purpose for purpose in _TTL}


class CodeKind(enum.IntEnum):
    """What a local-part code is for: ``unsubscribe+CODE@`` or ``bounces+CODE@`` (VERP).

    The kind has two bits in a code's header: values 1 to 3 only.
    """

    UNSUBSCRIBE = 1
    BOUNCE = 2
    MESSAGE = 3  # the left part of a Message-ID we send: <CODE@domain>


# The largest value of each id a code carries, in order; the length of the tuple is the arity.
_CODE_ID_LIMITS: dict[CodeKind, tuple[int, ...]] = {
    CodeKind.UNSUBSCRIBE: (MAX_CODE_TENANT_ID, MAX_ID, MAX_ID),  # tenant, subscriber, topic
    CodeKind.BOUNCE: (MAX_ID, MAX_ID),  # tenant, delivery
    CodeKind.MESSAGE: (MAX_ID, MAX_ID),  # tenant, delivery
}


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What a link token says: who, for what, about which object, until when."""

    purpose: Purpose
    tenant_id: int
    subscriber_id: int
    object_id: int = 0
    expires_at: int = 0  # unix seconds, 0 = never

    @classmethod
    def issue(
        cls,
        purpose: Purpose,
        tenant_id: int,
        subscriber_id: int,
        object_id: int = 0,
        *,
        now: float | None = None,
    ) -> LinkClaims:
        """Claims whose expiry follows the purpose's lifetime, counted from ``now``."""
        ttl = purpose.ttl
        if ttl is None:
            return cls(purpose, tenant_id, subscriber_id, object_id)
        issued = int(time.time() if now is None else now)
        return cls(purpose, tenant_id, subscriber_id, object_id, issued + ttl)


@dataclass(frozen=True, slots=True)
class CodeClaims:
    """What a local-part code says."""

    kind: CodeKind
    ids: tuple[int, ...]  # UNSUBSCRIBE: (tenant, subscriber, topic); BOUNCE: (tenant, delivery)


# Domain separation: each MAC input starts with its own prefix, so a link token can never be
# replayed as a code or the reverse, whatever the bytes happen to look like. The prefix is fed
# into the precomputed HMAC state once per key, so it costs nothing per token.
_LINK_DOMAIN = b"optout/link/v1\x00"
_CODE_DOMAIN = b"optout/code/v1\x00"

# Link token bytes: header | key id | varints(purpose, tenant, subscriber, object, expiry) | MAC.
# The header holds the format version (high nibble) and the key id's length (low nibble). The
# key id travels as its own string, so any machine with that key verifies, whatever the order
# or length of its keyring.
_LINK_VERSION = 1
_LINK_MAC_LEN = 16  # 128 bits
_LINK_FIELDS = 5
_LINK_LIMITS = (MAX_ID,) * _LINK_FIELDS
_LINK_MIN_LEN = 1 + 1 + _LINK_FIELDS + _LINK_MAC_LEN
_LINK_MAX_LEN = 1 + 8 + 9 * _LINK_FIELDS + _LINK_MAC_LEN
# base64url, unpadded: 6 bits a character against base32's 5, so a quarter shorter; its
# alphabet is RFC 3986 "unreserved", so the token goes in a URL path with no percent-encoding,
# and URL paths keep their case (unlike mail local parts, which is why codes use base32).
_LINK_CHARS = ((_LINK_MIN_LEN * 8 + 5) // 6, (_LINK_MAX_LEN * 8 + 5) // 6)
_LINK_SHAPE = re.compile(f"[A-Za-z0-9_-]{{{_LINK_CHARS[0]},{_LINK_CHARS[1]}}}", re.ASCII)

# Code bytes: header | varint ids | MAC. The header holds the kind (high 2 bits) and a key tag
# (low 6 bits: the top of SHA-256 of the key id). A key id string would not fit in 52
# characters next to the largest ids; the tag is stable across machines, and a collision only
# means trying each key that shares it.
_CODE_MAC_LEN = 10  # 80 bits: an online forgery needs ~2**79 SMTP attempts
_CODE_SHAPE = re.compile(r"[A-Za-z2-7]{21,52}", re.ASCII)

_KEY_ID_SHAPE = re.compile(r"[a-z0-9]{1,8}", re.ASCII)
_MIN_SECRET_LEN = 16


class Keyring:
    """Signs with the first key, verifies with any; holds precomputed HMAC state per key."""

    __slots__ = (
        "_code_signer",
        "_code_tag",
        "_code_verifiers",
        "_key_ids",
        "_link_prefix",
        "_link_signer",
        "_link_verifiers",
    )

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        key_ids: list[str] = []
        self._link_verifiers: dict[bytes, hmac.HMAC] = {}
        self._code_verifiers: dict[int, list[hmac.HMAC]] = {}
        for key_id, secret in keys:
            _check_key(key_id, secret, key_ids)
            key_ids.append(key_id)
            self._link_verifiers[key_id.encode("ascii")] = hmac.new(
                bytes(secret), _LINK_DOMAIN, "sha256"
            )
            self._code_verifiers.setdefault(_key_tag(key_id), []).append(
                hmac.new(bytes(secret), _CODE_DOMAIN, "sha256")
            )
        if not key_ids:
            raise ConfigError("The keyring needs at least one key.", field="keys")
        self._key_ids = tuple(key_ids)
        signing = key_ids[0].encode("ascii")
        self._link_prefix = bytes(((_LINK_VERSION << 4) | len(signing),)) + signing
        self._link_signer = self._link_verifiers[signing]
        self._code_tag = _key_tag(key_ids[0])
        self._code_signer = self._code_verifiers[self._code_tag][0]

    def __repr__(self) -> str:
        # Key ids only: a keyring in a traceback or log must not show its secrets.
        return f"Keyring(key_ids={list(self._key_ids)!r})"

    @property
    def signing_key_id(self) -> str:
        """The id of the key new tokens and codes are signed with."""
        return self._key_ids[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, signing key first."""
        return self._key_ids

    def sign(self, claims: LinkClaims) -> str:
        """A URL-safe token for ``claims``; raises InvalidInput for claims it cannot carry."""
        purpose = _checked_purpose(claims.purpose)
        expires_at = _checked_id(claims.expires_at, "expires_at")
        _check_lifetime(purpose, expires_at)
        body = bytearray(self._link_prefix)
        _put_varint(body, purpose)
        _put_varint(body, _checked_id(claims.tenant_id, "tenant_id"))
        _put_varint(body, _checked_id(claims.subscriber_id, "subscriber_id"))
        _put_varint(body, _checked_id(claims.object_id, "object_id"))
        _put_varint(body, expires_at)
        mac = self._link_signer.copy()
        mac.update(body)
        body += mac.digest()[:_LINK_MAC_LEN]
        return _encode_link(body)

    def verify(self, token: str, purpose: Purpose, *, now: float | None = None) -> LinkClaims:
        """The claims of ``token`` if it is genuine, canonical, of ``purpose`` and unexpired.

        Raises ExpiredToken past its expiry (checked against ``now``, default the clock) and
        InvalidToken for anything else wrong with it.
        """
        raw = _decode_link(token)
        header = raw[0]
        key_len = header & 0x0F
        mac_at = len(raw) - _LINK_MAC_LEN
        if header >> 4 != _LINK_VERSION or not 1 <= key_len <= 8 or mac_at < 1 + key_len:
            raise InvalidToken()
        verifier = self._link_verifiers.get(raw[1 : 1 + key_len])
        if verifier is None:
            raise InvalidToken()
        _check_mac(verifier, raw, mac_at, _LINK_MAC_LEN)
        purpose_value, tenant_id, subscriber_id, object_id, expires_at = _read_varints(
            raw, 1 + key_len, mac_at, _LINK_LIMITS
        )
        found = _PURPOSES.get(purpose_value)
        if found is None or found != purpose:
            raise InvalidToken()
        if expires_at and (time.time() if now is None else now) >= expires_at:
            raise ExpiredToken()
        return LinkClaims(found, tenant_id, subscriber_id, object_id, expires_at)

    def make_code(self, claims: CodeClaims) -> str:
        """A lowercase base32 local-part code of at most 52 characters for ``claims``."""
        limits = _CODE_ID_LIMITS.get(claims.kind)
        if limits is None:
            raise InvalidInput("Unknown code kind.", field="kind")
        if len(claims.ids) != len(limits):
            raise InvalidInput(f"This kind of code carries {len(limits)} ids.", field="ids")
        body = bytearray(((claims.kind << 6) | self._code_tag,))
        for value, limit in zip(claims.ids, limits, strict=True):
            _put_varint(body, _checked_id(value, "ids", limit))
        mac = self._code_signer.copy()
        mac.update(body)
        body += mac.digest()[:_CODE_MAC_LEN]
        return base64.b32encode(body).rstrip(b"=").decode("ascii").lower()

    def read_code(self, code: str, kind: CodeKind) -> CodeClaims:
        """The claims of a code of ``kind``, read case-insensitively; raises InvalidToken."""
        raw = _decode_code(code)
        limits = _CODE_ID_LIMITS.get(kind)
        if limits is None or raw[0] >> 6 != kind:
            raise InvalidToken()
        mac_at = len(raw) - _CODE_MAC_LEN
        candidates = self._code_verifiers.get(raw[0] & 0x3F, ())
        # A tag collision between keys is possible; the code is genuine if any of them made it.
        if not any(_mac_matches(verifier, raw, mac_at, _CODE_MAC_LEN) for verifier in candidates):
            raise InvalidToken()
        return CodeClaims(CodeKind(kind), tuple(_read_varints(raw, 1, mac_at, limits)))


def message_id_for(keyring: Keyring, tenant_id: int, delivery_id: int, domain: str) -> str:
    """The Message-ID of a delivery: ``<CODE@domain>``, CODE a MESSAGE code under the keyring.

    A complaint quotes the Message-ID back; the MAC is what lets it name the delivery, so no
    one can forge a complaint about a message they never saw (DESIGN G7).
    """
    code = keyring.make_code(CodeClaims(CodeKind.MESSAGE, (tenant_id, delivery_id)))
    return f"<{code}@{domain}>"


def read_message_id(keyring: Keyring, value: str | None) -> CodeClaims | None:
    """The (tenant, delivery) a Message-ID of ours names, if its MAC holds under any key."""
    left, at, _domain = (value or "").strip().strip("<>").rpartition("@")
    if not at:
        return None
    try:
        return keyring.read_code(left, CodeKind.MESSAGE)
    except InvalidInput:
        return None


def _check_key(key_id: object, secret: object, seen: list[str]) -> None:
    if not isinstance(key_id, str) or _KEY_ID_SHAPE.fullmatch(key_id) is None:
        raise ConfigError("A key id is 1 to 8 characters of a-z and 0-9.", field="keys")
    if key_id in seen:
        raise ConfigError(f"Key id {key_id!r} appears twice in the keyring.", field="keys")
    if not isinstance(secret, bytes | bytearray) or len(secret) < _MIN_SECRET_LEN:
        raise ConfigError(
            f"Key {key_id!r} needs a secret of at least {_MIN_SECRET_LEN} bytes.", field="keys"
        )


def _key_tag(key_id: str) -> int:
    return hashlib.sha256(key_id.encode("ascii")).digest()[0] >> 2


def _checked_purpose(purpose: object) -> Purpose:
    if not isinstance(purpose, Purpose):
        raise InvalidInput("Unknown token purpose.", field="purpose")
    return purpose


def _check_lifetime(purpose: Purpose, expires_at: int) -> None:
    # Refusing here keeps a caller from minting an unsubscribe link that dies (STANDARDS 14)
    # or a data link that never does (DESIGN G5); LinkClaims.issue fills the expiry in.
    if purpose.ttl is None and expires_at:
        raise InvalidInput(f"A {purpose.name} token never expires.", field="expires_at")
    if purpose.ttl is not None and not expires_at:
        raise InvalidInput(f"A {purpose.name} token must expire.", field="expires_at")


def _checked_id(value: object, field: str, limit: int = MAX_ID) -> int:
    # type() rather than isinstance: a bool or an enum member is a bug, not an id.
    if type(value) is not int or not 0 <= value <= limit:
        raise InvalidInput(f"{field} must be an integer from 0 to {limit}.", field=field)
    return value


def _put_varint(out: bytearray, value: int) -> None:
    # LEB128: seven bits a byte, low first, so the usual small ids take one to three bytes.
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varints(buf: bytes, pos: int, end: int, limits: tuple[int, ...]) -> list[int]:
    """One canonical LEB128 varint per limit from ``buf[pos:end]``, which they must fill
    exactly; anything else is InvalidToken. One loop, no object: it runs on every link."""
    values = []
    for limit in limits:
        value = 0
        shift = 0
        while True:
            if pos >= end or shift > 56:
                raise InvalidToken()  # truncated, or more than 9 bytes (beyond 63 bits)
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        # A final zero byte after others is a padded (non-minimal) encoding of a smaller value.
        if (byte == 0 and shift) or value > limit:
            raise InvalidToken()
        values.append(value)
    if pos != end:
        raise InvalidToken()
    return values


def _mac_matches(verifier: hmac.HMAC, raw: bytes, mac_at: int, mac_len: int) -> bool:
    mac = verifier.copy()
    mac.update(raw[:mac_at])
    return hmac.compare_digest(mac.digest()[:mac_len], raw[mac_at:])


def _check_mac(verifier: hmac.HMAC, raw: bytes, mac_at: int, mac_len: int) -> None:
    if not _mac_matches(verifier, raw, mac_at, mac_len):
        raise InvalidToken()


def _encode_link(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_link(token: object) -> bytes:
    if not isinstance(token, str) or _LINK_SHAPE.fullmatch(token) is None:
        raise InvalidToken()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken() from None
    # Only the one encoding we produce is accepted: no padding, no set trailing bits.
    if _encode_link(raw) != token:
        raise InvalidToken()
    return raw


def _decode_code(code: object) -> bytes:
    if not isinstance(code, str) or _CODE_SHAPE.fullmatch(code) is None:
        raise InvalidToken()
    # Mail servers may change the case of a local part, so case carries no meaning here.
    lowered = code.lower()
    try:
        raw = base64.b32decode(lowered.upper() + "=" * (-len(code) % 8))
    except (binascii.Error, ValueError):
        raise InvalidToken() from None
    if base64.b32encode(raw).rstrip(b"=").decode("ascii").lower() != lowered:
        raise InvalidToken()
    return raw
