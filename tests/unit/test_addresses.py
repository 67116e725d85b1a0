"""Unit tests for mailer.addresses: validation, normalisation, suppression keys, masking."""

from __future__ import annotations

import unicodedata

import pytest
from email_validator import EmailNotValidError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailer.addresses import (
    Address,
    mask,
    normalise,
    parse_address,
    suppression_key,
    tenant_hash_key,
)
from mailer.errors import ConfigError, InvalidAddress

HASH_KEY = b"k" * 32
TENANT_A = tenant_hash_key(HASH_KEY, 1)
TENANT_B = tenant_hash_key(HASH_KEY, 2)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A 260-octet address whose local part is within its own limit, so the total limit is what
# refuses it (labels of 60 characters stay under the 63-octet DNS label limit).
LONG_TOTAL = "a" * 60 + "@" + ".".join(["b" * 60] * 3) + "." + "c" * 16
assert len(LONG_TOTAL) == 260


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("no-at-sign", "no @ sign"),
        ("a@@b.com", "more than one @ sign"),
        ("a@b@c.com", "more than one @ sign"),
        ("a b@c.com", "space"),
        ("a@b.com\r\nBcc: x@y.com", "line break"),
        ("a\n@b.com", "line break"),
        ("x" * 300 + "@b.com", "before the @ sign is too long"),
        (LONG_TOTAL, "too long"),
        (123, "must be text"),
        (None, "must be text"),
        (b"a@b.com", "must be text"),
        ("a\x00b@c.com", "control character"),
        ("a@b.com\t", "control character"),
        ("a@b", "period"),
    ],
)
def test_invalid_addresses_are_refused_in_plain_words(raw, words):
    """Design G6: bad input gets a clear error naming the field."""
    with pytest.raises(InvalidAddress) as caught:
        parse_address(raw)
    assert caught.value.field == "email"
    assert words in caught.value.message
    assert caught.value.message[0].isupper() and caught.value.message.endswith(".")


def test_email_validator_errors_do_not_leak_their_type():
    with pytest.raises(InvalidAddress) as caught:
        parse_address("a..b@example.com")
    assert type(caught.value) is InvalidAddress
    assert not isinstance(caught.value, EmailNotValidError)
    assert isinstance(caught.value.__cause__, EmailNotValidError)  # kept for debugging only


def test_quoted_local_parts_domain_literals_and_display_names_are_refused():
    for raw in ['"a"@example.com', "a@[192.0.2.1]", "Bob <bob@example.com>"]:
        with pytest.raises(InvalidAddress):
            parse_address(raw)


def test_total_limit_counts_octets_not_characters():
    # 40 two-octet letters: 40 characters but 80 octets, over the 64-octet local limit.
    with pytest.raises(InvalidAddress, match="too long"):
        parse_address("é" * 40 + "@example.com")


# -- valid addresses ----------------------------------------------------------------------


def test_surrounding_whitespace_is_stripped_and_the_rest_kept_for_delivery():
    address = parse_address("  Bob@Example.COM ")
    assert address == Address(
        as_given="Bob@Example.COM",
        normalised="bob@example.com",
        local="Bob",
        domain="Example.COM",
        ascii_domain="example.com",
    )


def test_case_variants_are_one_person():
    assert normalise("Bob@Example.COM") == normalise("bob@example.com") == "bob@example.com"
    assert suppression_key(TENANT_A, "Bob@Example.COM") == suppression_key(
        TENANT_A, "bob@example.com"
    )


def test_internationalised_address_variants_share_one_key():
    nfd_local = unicodedata.normalize("NFD", "Jörg")
    assert nfd_local != "Jörg"
    variants = ["Jörg@Bücher.example", "JÖRG@bücher.EXAMPLE", f"{nfd_local}@Bücher.example"]
    parsed = [parse_address(raw) for raw in variants]
    assert {p.ascii_domain for p in parsed} == {"xn--bcher-kva.example"}
    assert {p.normalised for p in parsed} == {"jörg@xn--bcher-kva.example"}
    assert len({suppression_key(TENANT_A, p) for p in parsed}) == 1
    # As given is kept for delivery, including the unicode domain.
    assert parsed[0].as_given == "Jörg@Bücher.example"
    assert parsed[0].domain == "Bücher.example"


def test_suppression_key_accepts_a_string_or_a_parsed_address():
    key = suppression_key(TENANT_A, "bob@example.com")
    assert key == suppression_key(TENANT_A, parse_address("BOB@example.com"))
    assert len(key) == 32
    with pytest.raises(InvalidAddress):
        suppression_key(TENANT_A, "not an address")


# -- keys ---------------------------------------------------------------------------------


def test_tenant_keys_are_32_bytes_distinct_and_stable():
    assert len(TENANT_A) == 32
    assert TENANT_A != TENANT_B
    assert tenant_hash_key(HASH_KEY, 1) == TENANT_A
    assert tenant_hash_key(b"j" * 32, 1) != TENANT_A


def test_tenant_key_derivation_is_the_documented_hmac():
    import hashlib
    import hmac

    expected = hmac.new(HASH_KEY, b"optout-suppression-v1:7", hashlib.sha256).digest()
    assert tenant_hash_key(HASH_KEY, 7) == expected


def test_weak_hash_keys_and_wrong_tenant_keys_are_refused():
    with pytest.raises(ConfigError):
        tenant_hash_key(b"short", 1)
    with pytest.raises(TypeError):
        tenant_hash_key(HASH_KEY, True)
    with pytest.raises(ValueError):
        # The long-lived key itself must not be used directly (no tenant separation).
        suppression_key(HASH_KEY + b"extra", "bob@example.com")


# -- masking ------------------------------------------------------------------------------


def test_mask_shape():
    assert mask("bob@example.com") == "b***@e***.com"
    assert mask("Jörg@Bücher.example") == "J***@B***.example"
    assert mask(parse_address("a@mail.example.co.uk")) == "a***@m***.uk"


# -- properties ---------------------------------------------------------------------------

# Dotless i (U+0131) is left out on purpose: its upper() is "I", whose casefold is "i", so
# upper() genuinely changes that address under Unicode case folding.
LOCAL_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "!#$%&'+-/=?^_`{|}~"
    "äöüßéèçñøåæœÄÖÜÉÈÇÑØÅÆŒσςΣжЖ"
)
LABEL_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789äöüéñçå"

atoms = st.text(alphabet=LOCAL_ALPHABET, min_size=1, max_size=10)
local_parts = st.lists(atoms, min_size=1, max_size=2).map(".".join)
labels = st.text(alphabet=LABEL_ALPHABET, min_size=1, max_size=12)
tlds = st.sampled_from(["com", "org", "de", "example", "museum"])
domains = st.builds(
    lambda parts, tld: ".".join([*parts, tld]), st.lists(labels, min_size=1, max_size=3), tlds
)
addresses = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)
tenant_ids = st.integers(min_value=1, max_value=2**31)


@PROPERTY
@given(addresses)
def test_generated_addresses_are_valid_and_normalise_is_idempotent(raw):
    once = normalise(raw)
    assert normalise(once) == once
    assert parse_address(once).ascii_domain == once.rpartition("@")[2]


@PROPERTY
@given(addresses, st.sampled_from([str.upper, str.lower, str.swapcase]))
def test_case_variants_share_a_suppression_key(raw, change_case):
    variant = change_case(raw)
    try:
        parse_address(variant)
    except InvalidAddress:
        assume(False)  # e.g. a case change that makes the address too long
    assert suppression_key(TENANT_A, variant) == suppression_key(TENANT_A, raw)


@PROPERTY
@given(addresses, st.sampled_from(["NFC", "NFD"]))
def test_canonically_equivalent_variants_share_a_suppression_key(raw, form):
    variant = unicodedata.normalize(form, raw)
    assert suppression_key(TENANT_A, variant) == suppression_key(TENANT_A, raw)


@PROPERTY
@given(addresses, tenant_ids, tenant_ids)
def test_the_same_address_hashes_differently_per_tenant(raw, first, second):
    assume(first != second)
    key_first = suppression_key(tenant_hash_key(HASH_KEY, first), raw)
    key_second = suppression_key(tenant_hash_key(HASH_KEY, second), raw)
    assert key_first != key_second


@PROPERTY
@given(st.text(), st.sampled_from(["\r", "\n", "\x00"]), st.text())
def test_any_text_with_cr_lf_or_nul_is_refused(before, bad, after):
    """Design G6: CR/LF never reaches a header (no header injection)."""
    with pytest.raises(InvalidAddress):
        parse_address(before + bad + after)


@PROPERTY
@given(st.text())
def test_arbitrary_text_raises_nothing_but_invalid_address(raw):
    try:
        address = parse_address(raw)
    except InvalidAddress as exc:
        assert exc.field == "email"
    else:
        assert normalise(address.normalised) == address.normalised


@PROPERTY
@given(
    st.text(alphabet=LOCAL_ALPHABET.replace("*", ""), min_size=3, max_size=30),
    domains,
)
def test_mask_never_shows_a_local_part_longer_than_two_characters(local, domain):
    masked = mask(f"{local}@{domain}")
    masked_local = masked.partition("@")[0]
    assert local not in masked_local
    assert masked_local == local[0] + "***"


def test_an_address_whose_folded_form_would_be_too_long_is_refused():
    # U+0149 (2 octets) casefolds to U+02BC U+006E (3 octets): 32 fit as given, not folded,
    # and accepting it would make normalise() produce an address that fails to parse.
    raw = "\u0149" * 32 + "@example.com"
    with pytest.raises(InvalidAddress, match="lower case"):
        parse_address(raw)
