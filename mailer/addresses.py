"""Email addresses: validate (syntax only, never DNS), normalise for identity, hash for
suppression, and mask for pages that must not show the whole address.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from mailer.errors import ConfigError, InvalidAddress
from mailer.i18n import N_

__all__ = [
    "Address",
    "mask",
    "normalise",
    "parse_address",
    "suppression_key",
    "tenant_hash_key",
]

# RFC 5321 §4.5.3.1.1 (local part) and the 254-octet path limit that follows from §4.5.3.1.3;
# counted in UTF-8 octets, as SMTPUTF8 servers count them.
MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254

# The long-lived hash key must carry real entropy: config.py already refuses shorter secrets.
MIN_HASH_KEY_BYTES = 32
TENANT_KEY_BYTES = 32
# Versioned label so a future derivation can never collide with this one.
SUPPRESSION_KEY_LABEL = b"optout-suppression-v1:"

FIELD = "email"
MASK_FILL = "***"

# Line and paragraph separators are not control characters (Cc) but break lines in some
# renderers; surrogates cannot be encoded at all. Both are refused with the controls.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class Address:
    """A syntactically valid address, as given and in its canonical form."""

    as_given: str  # stripped, for delivery
    normalised: str  # the canonical form used for identity/suppression
    local: str  # local part as given
    domain: str  # domain as given
    ascii_domain: str  # IDNA A-label, lowercase


def parse_address(raw: object) -> Address:
    """Validate ``raw`` and return it with its normalised form; raise InvalidAddress if bad.

    Control characters (CR/LF above all: header injection) are refused anywhere in the raw
    value, before stripping, so "a@b.com\\n" is refused rather than silently trimmed.
    """
    if not isinstance(raw, str):
        raise _invalid(N_("The email address must be text."))
    _refuse_control_characters(raw)
    text = raw.strip()
    local, domain = _split_plainly(text)
    _check_lengths(local, text)
    ascii_domain = _validated_ascii_domain(text)
    normalised_local = _fold_local(local)
    normalised = f"{normalised_local}@{ascii_domain}"
    _check_normalised(local, normalised_local, normalised)
    return Address(
        as_given=text,
        normalised=normalised,
        local=local,
        domain=domain,
        ascii_domain=ascii_domain,
    )


def normalise(raw: str) -> str:
    """The canonical form of ``raw``: casefolded NFC local part, IDNA A-label domain."""
    return parse_address(raw).normalised


def tenant_hash_key(hash_key: bytes, tenant_id: int) -> bytes:
    """The 32-byte suppression key of one tenant, derived from the long-lived hash key.

    Derivation: HMAC-SHA256(hash_key, b"optout-suppression-v1:" + str(tenant_id)). The hash
    key is already uniformly random, so HKDF's extract step adds nothing; one HMAC used as a
    PRF over a versioned, tenant-specific label is the expand step with a single block. Keys
    of different tenants are independent, so the same address hashes differently per tenant.
    """
    if not isinstance(hash_key, bytes) or len(hash_key) < MIN_HASH_KEY_BYTES:
        raise ConfigError(f"The address hash key must be at least {MIN_HASH_KEY_BYTES} bytes.")
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int):
        raise TypeError("tenant_id must be an int")
    label = SUPPRESSION_KEY_LABEL + str(tenant_id).encode("ascii")
    return hmac.new(hash_key, label, hashlib.sha256).digest()


def suppression_key(tenant_key: bytes, address: Address | str) -> bytes:
    """HMAC-SHA256 of the normalised address under a tenant key (from tenant_hash_key)."""
    if not isinstance(tenant_key, bytes) or len(tenant_key) != TENANT_KEY_BYTES:
        # Catches passing the long-lived hash key itself, which would skip tenant separation.
        raise ValueError("tenant_key must be the 32-byte key returned by tenant_hash_key()")
    parsed = address if isinstance(address, Address) else parse_address(address)
    return hmac.new(tenant_key, parsed.normalised.encode("utf-8"), hashlib.sha256).digest()


def mask(address: Address | str) -> str:
    """A hint such as "b***@e***.com": first character of the local part and of the domain's
    first label, and the top-level domain; the filler is fixed, so nothing else leaks.
    """
    parsed = address if isinstance(address, Address) else parse_address(address)
    labels = parsed.domain.split(".")
    masked_local = parsed.local[0] + MASK_FILL
    masked_domain = labels[0][0] + MASK_FILL
    if len(labels) > 1:
        masked_domain += "." + labels[-1]
    return f"{masked_local}@{masked_domain}"


def _invalid(message: str, **params: object) -> InvalidAddress:
    return InvalidAddress(message, field=FIELD, params=params)


def _refuse_control_characters(raw: str) -> None:
    if "\r" in raw or "\n" in raw:
        raise _invalid(N_("The email address contains a line break."))
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in raw):
        raise _invalid(N_("The email address contains a control character."))


def _split_plainly(text: str) -> tuple[str, str]:
    """The checks whose plain-words message beats email-validator's, then the two halves."""
    if not text:
        raise _invalid(N_("The email address is empty."))
    if any(char.isspace() for char in text):
        raise _invalid(N_("The email address contains a space."))
    at_signs = text.count("@")
    if at_signs == 0:
        raise _invalid(N_("The email address has no @ sign."))
    if at_signs > 1:
        raise _invalid(N_("The email address has more than one @ sign."))
    local, _, domain = text.partition("@")
    if not local:
        raise _invalid(N_("The email address has nothing before the @ sign."))
    if not domain:
        raise _invalid(N_("The email address has nothing after the @ sign."))
    return local, domain


def _check_lengths(local: str, text: str) -> None:
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise _invalid(
            N_("The part before the @ sign is too long (more than %(limit)s bytes)."),
            limit=MAX_LOCAL_OCTETS,
        )
    if len(text.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise _invalid(
            N_("The email address is too long (more than %(limit)s bytes)."),
            limit=MAX_ADDRESS_OCTETS,
        )


def _validated_ascii_domain(text: str) -> str:
    try:
        validated = validate_email(
            text,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            check_deliverability=False,
        )
    except EmailNotValidError as exc:
        # Its messages are written for people; only its exception type stays inside.
        raise _invalid(str(exc)) from exc
    return validated.ascii_domain.lower()


def _fold_local(local: str) -> str:
    # NFC again after casefold: folding can leave decomposed sequences behind.
    folded = unicodedata.normalize("NFC", local).casefold()
    return unicodedata.normalize("NFC", folded)


def _check_normalised(local: str, normalised_local: str, normalised: str) -> None:
    """The normalised form must itself be a valid address, or normalise() is not idempotent.

    Casefolding can lengthen some letters (U+0149 becomes U+02BC U+006E), so limits are
    checked again. An ASCII local part only changes case, which keeps it valid and the same length.
    """
    if len(normalised_local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise _invalid(
            N_(
                "The part before the @ sign is too long once written in lower case "
                "(more than %(limit)s bytes)."
            ),
            limit=MAX_LOCAL_OCTETS,
        )
    if len(normalised.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise _invalid(
            N_(
                "The email address is too long once written in lower case with its domain "
                "encoded for sending (more than %(limit)s bytes)."
            ),
            limit=MAX_ADDRESS_OCTETS,
        )
    if not local.isascii():
        _validated_ascii_domain(normalised)
