"""Link tokens and local-part codes: round trips, tamper refusal, rotation, expiry, lengths."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer import tokens
from mailer.errors import ConfigError, InvalidInput
from mailer.tokens import (
    MAX_CODE_LENGTH,
    MAX_CODE_TENANT_ID,
    MAX_ID,
    CodeClaims,
    CodeKind,
    ExpiredToken,
    InvalidToken,
    Keyring,
    LinkClaims,
    Purpose,
)

PROPERTY = settings(max_examples=150, deadline=None)

OLD = ("k2024", b"old-secret-0123456789abcdef")
NEW = ("k2025", b"new-secret-0123456789abcdef")
RING = Keyring([OLD])
ROTATED = Keyring([NEW, OLD])
NEW_ONLY = Keyring([NEW])

URL_ALPHABET = string.ascii_letters + string.digits + "-_"
CODE_ALPHABET = string.ascii_lowercase + "234567"
NOW = 1_750_000_000
FIVE_YEARS = 5 * 366 * 86_400

ids = st.integers(0, MAX_ID)


@st.composite
def link_claims(draw, purpose: Purpose | None = None) -> LinkClaims:
    chosen = draw(st.sampled_from(Purpose)) if purpose is None else purpose
    expires_at = 0 if chosen.ttl is None else draw(st.integers(1, MAX_ID))
    return LinkClaims(chosen, draw(ids), draw(ids), draw(ids), expires_at)


@st.composite
def code_claims(draw, kind: CodeKind | None = None) -> CodeClaims:
    chosen = draw(st.sampled_from(CodeKind)) if kind is None else kind
    if chosen is CodeKind.UNSUBSCRIBE:
        return CodeClaims(chosen, (draw(st.integers(0, MAX_CODE_TENANT_ID)), draw(ids), draw(ids)))
    return CodeClaims(chosen, (draw(ids), draw(ids)))


def link_raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def link_text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def code_raw(code: str) -> bytes:
    return base64.b32decode(code.upper() + "=" * (-len(code) % 8))


def code_text(raw: bytes) -> str:
    return base64.b32encode(raw).rstrip(b"=").decode().lower()


def leb128(value: int, padding: int = 0) -> bytes:
    """LEB128, optionally with ``padding`` redundant zero groups (a non-canonical form)."""
    out = bytearray()
    while True:
        more = value > 0x7F or padding > 0
        out.append((value & 0x7F) | (0x80 if more else 0))
        value >>= 7
        if not more:
            return bytes(out)
        if value == 0:
            padding -= 1


def forge_link(key: tuple[str, bytes], fields: bytes, version: int = 1) -> str:
    """A token MAC'd with a known key, for shapes sign() would never produce."""
    kid = key[0].encode()
    body = bytes(((version << 4) | len(kid),)) + kid + fields
    mac = hmac.new(key[1], tokens._LINK_DOMAIN + body, hashlib.sha256).digest()[:16]
    return link_text(body + mac)


def forge_code(key: tuple[str, bytes], kind: int, fields: bytes) -> str:
    body = bytes(((kind << 6) | tokens._key_tag(key[0]),)) + fields
    mac = hmac.new(key[1], tokens._CODE_DOMAIN + body, hashlib.sha256).digest()[:10]
    return code_text(body + mac)


def unused_bits(text: str, raw: bytes, bits_per_char: int) -> int:
    return len(text) * bits_per_char - len(raw) * 8


# Round trips and shape


@PROPERTY
@given(link_claims())
def test_link_round_trip_for_every_purpose(claims):
    """STANDARDS 6: the token is opaque (URL-safe alphabet only, no address) and verifies."""
    token = RING.sign(claims)
    assert set(token) <= set(URL_ALPHABET)
    assert "@" not in token
    assert RING.verify(token, claims.purpose, now=0) == claims


@PROPERTY
@given(code_claims())
def test_code_round_trip_within_local_part_limit(claims):
    """STANDARDS 44: the length limit holds and the encoding round-trips."""
    code = RING.make_code(claims)
    assert set(code) <= set(CODE_ALPHABET)
    assert len(code) <= MAX_CODE_LENGTH
    assert len(f"unsubscribe+{code}") <= 64
    assert len(f"bounces+{code}") <= 64
    assert RING.read_code(code, claims.kind) == claims


@PROPERTY
@given(code_claims(), st.data())
def test_code_reads_the_same_in_any_case(claims, data):
    """Mail servers may change a local part's case; the claims must not change."""
    code = RING.make_code(claims)
    mask = data.draw(st.integers(0, 2 ** len(code) - 1))
    mixed = "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(code))
    assert RING.read_code(code.upper(), claims.kind) == claims
    assert RING.read_code(mixed, claims.kind) == claims


@pytest.mark.parametrize(
    "claims",
    [
        CodeClaims(CodeKind.UNSUBSCRIBE, (MAX_CODE_TENANT_ID, MAX_ID, MAX_ID)),
        CodeClaims(CodeKind.BOUNCE, (MAX_ID, MAX_ID)),
    ],
)
def test_codes_with_the_largest_ids_fit(claims):
    """STANDARDS 44: at the largest ids a code is at most 52 octets, so the local part <= 64."""
    code = RING.make_code(claims)
    assert len(code) <= 52
    assert len(f"bounces+{code}") <= 64
    assert RING.read_code(code, claims.kind) == claims


def test_small_ids_make_short_codes_and_tokens():
    assert len(RING.make_code(CodeClaims(CodeKind.BOUNCE, (1, 1000)))) <= 24
    assert len(RING.make_code(CodeClaims(CodeKind.UNSUBSCRIBE, (1, 1000, 2)))) <= 26
    assert len(RING.sign(LinkClaims(Purpose.ONE_CLICK, 1, 1000, 2))) <= 40


def test_unsubscribe_code_refuses_a_tenant_beyond_its_bound():
    claims = CodeClaims(CodeKind.UNSUBSCRIBE, (MAX_CODE_TENANT_ID + 1, 1, 1))
    with pytest.raises(InvalidInput) as caught:
        RING.make_code(claims)
    assert not isinstance(caught.value, InvalidToken)


# Tampering with link tokens


@PROPERTY
@given(link_claims(), st.data())
def test_link_with_any_character_changed_is_refused(claims, data):
    """STANDARDS 6: a changed token is refused."""
    token = RING.sign(claims)
    at = data.draw(st.integers(0, len(token) - 1))
    other = data.draw(st.sampled_from(URL_ALPHABET).filter(lambda c: c != token[at]))
    with pytest.raises(InvalidToken):
        RING.verify(token[:at] + other + token[at + 1 :], claims.purpose, now=0)


@PROPERTY
@given(link_claims(), st.data())
def test_link_with_any_bit_flipped_is_refused(claims, data):
    """STANDARDS 6: a one-bit-flipped token is refused."""
    raw = bytearray(link_raw(RING.sign(claims)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidToken):
        RING.verify(link_text(bytes(raw)), claims.purpose, now=0)


@PROPERTY
@given(link_claims(), st.data())
def test_link_truncated_or_extended_is_refused(claims, data):
    token = RING.sign(claims)
    cut = data.draw(st.integers(0, len(token) - 1))
    tail = data.draw(st.text(URL_ALPHABET + "=", min_size=1, max_size=8))
    with pytest.raises(InvalidToken):
        RING.verify(token[:cut], claims.purpose, now=0)
    with pytest.raises(InvalidToken):
        RING.verify(token + tail, claims.purpose, now=0)


@PROPERTY
@given(link_claims())
def test_link_in_another_encoding_is_refused(claims):
    """Only the one canonical spelling is accepted: no padding, set trailing bits, +/ or space."""
    token = RING.sign(claims)
    raw = link_raw(token)
    variants = [
        token + "=" * (-len(token) % 4 or 4),
        base64.b64encode(raw).decode(),
        f" {token}",
        f"{token}\n",
    ]
    last = URL_ALPHABET.index(token[-1])
    for noise in range(1, 1 << unused_bits(token, raw, 6)):
        variants.append(token[:-1] + URL_ALPHABET[last ^ noise])
    for variant in variants:
        if variant != token:
            with pytest.raises(InvalidToken):
                RING.verify(variant, claims.purpose, now=0)


def test_link_with_trailing_bits_set_is_refused():
    claims = LinkClaims(Purpose.PREFERENCES, 1, 200, 3)
    token = RING.sign(claims)
    assert unused_bits(token, link_raw(token), 6) > 0
    last = URL_ALPHABET.index(token[-1])
    spelled_otherwise = token[:-1] + URL_ALPHABET[last ^ 1]
    assert link_raw(spelled_otherwise) == link_raw(token)
    with pytest.raises(InvalidToken):
        RING.verify(spelled_otherwise, Purpose.PREFERENCES)


def test_link_forged_shapes_are_refused_even_with_a_valid_mac():
    """A key holder's odd shapes (padded varints, other versions, unknown purposes) fail too."""
    canonical = leb128(1) + leb128(12) + leb128(300) + leb128(0) + leb128(0)
    assert RING.verify(forge_link(OLD, canonical), Purpose.ONE_CLICK).subscriber_id == 300
    shapes = [
        leb128(1) + leb128(12, padding=1) + leb128(300) + leb128(0) + leb128(0),
        leb128(1) + leb128(12) + leb128(300) + leb128(0) + leb128(0, padding=2),
        canonical + b"\x00",
        canonical[:-1],
        leb128(1) + leb128(2**63) + leb128(300) + leb128(0) + leb128(0),
    ]
    for fields in shapes:
        with pytest.raises(InvalidToken):
            RING.verify(forge_link(OLD, fields), Purpose.ONE_CLICK)
    with pytest.raises(InvalidToken):
        RING.verify(forge_link(OLD, canonical, version=2), Purpose.ONE_CLICK)
    unknown_purpose = leb128(99) + canonical[1:]
    with pytest.raises(InvalidToken):
        RING.verify(forge_link(OLD, unknown_purpose), Purpose.ONE_CLICK)


@PROPERTY
@given(st.one_of(st.text(max_size=120), st.text(URL_ALPHABET, min_size=25, max_size=100)))
def test_any_text_is_refused_with_invalid_token_only(text):
    with pytest.raises(InvalidToken):
        RING.verify(text, Purpose.ONE_CLICK)
    with pytest.raises(InvalidToken):
        RING.read_code(text, CodeKind.BOUNCE)


@pytest.mark.parametrize("value", [None, b"abc", 42, "é" * 40])
def test_non_text_and_non_ascii_are_refused(value):
    with pytest.raises(InvalidToken):
        RING.verify(value, Purpose.ONE_CLICK)
    with pytest.raises(InvalidToken):
        RING.read_code(value, CodeKind.UNSUBSCRIBE)


# Tampering with codes


@PROPERTY
@given(code_claims(), st.data())
def test_code_with_any_character_changed_is_refused(claims, data):
    code = RING.make_code(claims)
    at = data.draw(st.integers(0, len(code) - 1))
    others = (CODE_ALPHABET + CODE_ALPHABET.upper()).replace(code[at], "")
    other = data.draw(st.sampled_from(others.replace(code[at].upper(), "")))
    with pytest.raises(InvalidToken):
        RING.read_code(code[:at] + other + code[at + 1 :], claims.kind)


@PROPERTY
@given(code_claims(), st.data())
def test_code_with_any_bit_flipped_is_refused(claims, data):
    raw = bytearray(code_raw(RING.make_code(claims)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidToken):
        RING.read_code(code_text(bytes(raw)), claims.kind)


@PROPERTY
@given(code_claims(), st.data())
def test_code_truncated_extended_or_respelled_is_refused(claims, data):
    code = RING.make_code(claims)
    raw = code_raw(code)
    cut = data.draw(st.integers(0, len(code) - 1))
    tail = data.draw(st.text(CODE_ALPHABET, min_size=1, max_size=8))
    variants = [code[:cut], code + tail, code + "=" * (-len(code) % 8 or 8), f"{code} "]
    last = CODE_ALPHABET.index(code[-1])
    for noise in range(1, 1 << unused_bits(code, raw, 5)):
        variants.append(code[:-1] + CODE_ALPHABET[last ^ noise])
    for variant in variants:
        with pytest.raises(InvalidToken):
            RING.read_code(variant, claims.kind)


def test_code_forged_shapes_are_refused_even_with_a_valid_mac():
    canonical = leb128(7) + leb128(123456)
    assert RING.read_code(forge_code(OLD, 2, canonical), CodeKind.BOUNCE).ids == (7, 123456)
    for fields in [
        leb128(7, padding=1) + leb128(123456),
        canonical + leb128(1),
        canonical[:-1],
    ]:
        with pytest.raises(InvalidToken):
            RING.read_code(forge_code(OLD, 2, fields), CodeKind.BOUNCE)
    # Kind 0 is no kind; kind 3 (MESSAGE, a Message-ID) is read only as a Message-ID.
    for kind in CodeKind:
        with pytest.raises(InvalidToken):
            RING.read_code(forge_code(OLD, 0, canonical), kind)
    message = forge_code(OLD, 3, canonical)
    assert RING.read_code(message, CodeKind.MESSAGE).ids == (7, 123456)
    for kind in (CodeKind.UNSUBSCRIBE, CodeKind.BOUNCE):
        with pytest.raises(InvalidToken):
            RING.read_code(message, kind)
    over_bound = leb128(MAX_CODE_TENANT_ID + 1) + leb128(1) + leb128(1)
    with pytest.raises(InvalidToken):
        RING.read_code(forge_code(OLD, 1, over_bound), CodeKind.UNSUBSCRIBE)


# Purposes, kinds and domains are separate


@PROPERTY
@given(link_claims(), st.sampled_from(Purpose))
def test_link_of_one_purpose_is_refused_for_another(claims, other):
    token = RING.sign(claims)
    if other is claims.purpose:
        assert RING.verify(token, other, now=0) == claims
    else:
        with pytest.raises(InvalidToken) as caught:
            RING.verify(token, other, now=0)
        assert not isinstance(caught.value, ExpiredToken)


@PROPERTY
@given(code_claims())
def test_code_of_one_kind_is_refused_for_the_other(claims):
    other = CodeKind.BOUNCE if claims.kind is CodeKind.UNSUBSCRIBE else CodeKind.UNSUBSCRIBE
    with pytest.raises(InvalidToken):
        RING.read_code(RING.make_code(claims), other)


def test_codes_and_link_tokens_are_not_interchangeable():
    """The MACs are domain-separated: the same bytes MAC'd as a code do not pass as a link."""
    fields = leb128(1) + leb128(12) + leb128(300) + leb128(0) + leb128(0)
    kid = OLD[0].encode()
    body = bytes(((1 << 4) | len(kid),)) + kid + fields
    code_mac = hmac.new(OLD[1], tokens._CODE_DOMAIN + body, hashlib.sha256).digest()[:16]
    with pytest.raises(InvalidToken):
        RING.verify(link_text(body + code_mac), Purpose.ONE_CLICK)
    code = RING.make_code(CodeClaims(CodeKind.BOUNCE, (1, 2)))
    token = RING.sign(LinkClaims(Purpose.ONE_CLICK, 1, 2))
    with pytest.raises(InvalidToken):
        RING.verify(code, Purpose.ONE_CLICK)
    with pytest.raises(InvalidToken):
        RING.read_code(token, CodeKind.BOUNCE)


# Key rotation


@PROPERTY
@given(link_claims(), code_claims())
def test_rotation_old_key_still_verifies_until_removed(link, code_claims_):
    old_token = RING.sign(link)
    old_code = RING.make_code(code_claims_)
    assert ROTATED.verify(old_token, link.purpose, now=0) == link
    assert ROTATED.read_code(old_code, code_claims_.kind) == code_claims_
    with pytest.raises(InvalidToken):
        NEW_ONLY.verify(old_token, link.purpose, now=0)
    with pytest.raises(InvalidToken):
        NEW_ONLY.read_code(old_code, code_claims_.kind)
    new_token = ROTATED.sign(link)
    new_code = ROTATED.make_code(code_claims_)
    assert NEW_ONLY.verify(new_token, link.purpose, now=0) == link
    assert NEW_ONLY.read_code(new_code, code_claims_.kind) == code_claims_
    with pytest.raises(InvalidToken):
        RING.verify(new_token, link.purpose, now=0)


def test_rotated_ring_signs_with_its_first_key():
    assert ROTATED.signing_key_id == "k2025"
    assert ROTATED.key_ids == ("k2025", "k2024")
    token = ROTATED.sign(LinkClaims(Purpose.ONE_CLICK, 1, 2))
    assert b"k2025" in link_raw(token)


def test_same_key_id_with_another_secret_is_refused():
    impostor = Keyring([("k2024", b"another-secret-0123456789")])
    token = RING.sign(LinkClaims(Purpose.PREFERENCES, 1, 2))
    with pytest.raises(InvalidToken):
        impostor.verify(token, Purpose.PREFERENCES)


def test_key_tag_collisions_are_resolved_by_trying_each_key():
    by_tag: dict[int, str] = {}
    for n in range(1000):
        key_id = f"k{n}"
        tag = tokens._key_tag(key_id)
        if tag in by_tag:
            first, second = by_tag[tag], key_id
            break
        by_tag[tag] = key_id
    ring_a = Keyring([(first, b"a" * 16)])
    both = Keyring([(second, b"b" * 16), (first, b"a" * 16)])
    claims = CodeClaims(CodeKind.BOUNCE, (3, 4))
    assert both.read_code(ring_a.make_code(claims), CodeKind.BOUNCE) == claims
    assert both.read_code(both.make_code(claims), CodeKind.BOUNCE) == claims


def test_mac_is_compared_in_constant_time(monkeypatch):
    """STANDARDS 6: hmac.compare_digest does the comparison."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    RING.verify(RING.sign(LinkClaims(Purpose.ONE_CLICK, 1, 2)), Purpose.ONE_CLICK)
    RING.read_code(RING.make_code(CodeClaims(CodeKind.BOUNCE, (1, 2))), CodeKind.BOUNCE)
    assert len(calls) == 2


# Expiry


@PROPERTY
@given(st.sampled_from([p for p in Purpose if p.ttl is not None]), ids, ids, st.data())
def test_expired_link_is_refused(purpose, tenant, subscriber, data):
    expires_at = data.draw(st.integers(1, 2**40))
    token = RING.sign(LinkClaims(purpose, tenant, subscriber, 0, expires_at))
    assert RING.verify(token, purpose, now=expires_at - 0.5).expires_at == expires_at
    later = expires_at + data.draw(st.floats(0, FIVE_YEARS))
    with pytest.raises(ExpiredToken) as caught:
        RING.verify(token, purpose, now=later)
    assert isinstance(caught.value, InvalidToken)
    assert caught.value.code == "expired_token"


@pytest.mark.parametrize("purpose", [Purpose.ONE_CLICK, Purpose.PREFERENCES])
def test_unsubscribe_links_never_expire(purpose):
    """STANDARDS 14: with expires_at=0 the link still verifies five years on."""
    claims = LinkClaims.issue(purpose, 1, 2, 3, now=NOW)
    assert claims.expires_at == 0
    token = RING.sign(claims)
    assert RING.verify(token, purpose, now=NOW + FIVE_YEARS) == claims
    assert RING.verify(token, purpose) == claims


@pytest.mark.parametrize(
    ("purpose", "ttl"),
    [(Purpose.CONFIRM, 7 * 86_400), (Purpose.UNDO, 30 * 86_400), (Purpose.DATA_ACCESS, 3_600)],
)
def test_issue_sets_the_purpose_lifetime(purpose, ttl):
    claims = LinkClaims.issue(purpose, 1, 2, 3, now=NOW + 0.9)
    assert claims.expires_at == NOW + ttl
    token = RING.sign(claims)
    assert RING.verify(token, purpose, now=NOW + ttl - 1) == claims
    with pytest.raises(ExpiredToken):
        RING.verify(token, purpose, now=NOW + ttl)


def test_every_purpose_has_a_lifetime_rule():
    for purpose in Purpose:
        assert purpose.ttl is None or purpose.ttl > 0


# Refusals when minting, and keyring configuration


@pytest.mark.parametrize(
    "claims",
    [
        LinkClaims(Purpose.ONE_CLICK, 1, 2, 3, NOW),
        LinkClaims(Purpose.DATA_ACCESS, 1, 2, 3, 0),
        LinkClaims(Purpose.ONE_CLICK, -1, 2),
        LinkClaims(Purpose.ONE_CLICK, 1, MAX_ID + 1),
        LinkClaims(Purpose.ONE_CLICK, 1, 2, True),
        LinkClaims(3, 1, 2, 3, NOW),  # type: ignore[arg-type]
    ],
)
def test_sign_refuses_claims_it_cannot_carry(claims):
    with pytest.raises(InvalidInput):
        RING.sign(claims)


@pytest.mark.parametrize(
    "claims",
    [
        CodeClaims(CodeKind.BOUNCE, (1, 2, 3)),
        CodeClaims(CodeKind.UNSUBSCRIBE, (1, 2)),
        CodeClaims(CodeKind.BOUNCE, (1, -2)),
        CodeClaims(CodeKind.BOUNCE, (1, MAX_ID + 1)),
        CodeClaims(7, (1, 2)),  # type: ignore[arg-type]
    ],
)
def test_make_code_refuses_claims_it_cannot_carry(claims):
    with pytest.raises(InvalidInput):
        RING.make_code(claims)


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [("", b"x" * 16)],
        [("toolongid", b"x" * 16)],
        [("Upper", b"x" * 16)],
        [("k-1", b"x" * 16)],
        [("k1", b"x" * 15)],
        [("k1", "x" * 16)],
        [("k1", b"x" * 16), ("k1", b"y" * 16)],
    ],
)
def test_keyring_refuses_bad_keys(keys):
    with pytest.raises(ConfigError):
        Keyring(keys)


def test_keyring_repr_hides_secrets():
    assert "secret" not in repr(ROTATED)
    assert "k2025" in repr(ROTATED)


def test_errors_carry_their_codes_and_messages():
    assert InvalidToken().code == "invalid_token"
    assert InvalidToken().message == "The link is not valid."
    assert ExpiredToken().message == "The link has expired."
    assert issubclass(InvalidToken, InvalidInput)


@PROPERTY
@given(st.integers(0, tokens.MAX_ID), st.integers(0, tokens.MAX_ID), st.text(max_size=80))
def test_message_id_names_its_delivery_and_nothing_else_does(tenant, delivery, noise):
    """DESIGN G7: our Message-ID carries (tenant, delivery) under a MAC, within RFC 5322's
    id-left shape; any other text (a sequential id, noise) names no delivery."""
    message_id = tokens.message_id_for(RING, tenant, delivery, "news.example.com")
    assert len(message_id) <= 2 + tokens.MAX_CODE_LENGTH + len("@news.example.com")
    claims = tokens.read_message_id(RING, message_id)
    assert claims is not None and claims.ids == (tenant, delivery)
    # Case changes in transit do not matter; another key's id or a guessed one never reads.
    assert tokens.read_message_id(RING, message_id.upper()) == claims
    assert tokens.read_message_id(Keyring([("other", b"x" * 32)]), message_id) is None
    assert tokens.read_message_id(RING, f"<c{tenant}.s{delivery}@news.example.com>") is None
    if noise != message_id:
        assert tokens.read_message_id(RING, noise) in (None, claims)
