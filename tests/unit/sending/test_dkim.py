"""DKIM signer: every signature is checked by an independent verifier (dkimpy)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from types import SimpleNamespace

import dkim
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from dkim.canonicalization import Relaxed
from dkim.util import parse_tag_value
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.errors import ConfigError, InvalidInput
from mailer.sending.dkim import (
    DEFAULT_SIGNED_HEADERS,
    DkimKeyError,
    DkimSigner,
    body_hash,
    ed25519_dns_record,
    generate_ed25519_key_pem,
    generate_rsa_key_pem,
    public_key_dns_record,
)

DOMAIN = "example.com"
SIGNED_AT = 1_700_000_000.75


@pytest.fixture(scope="session")
def rsa_pem() -> bytes:
    return generate_rsa_key_pem(2048)


@pytest.fixture(scope="session")
def ed_pem() -> bytes:
    return generate_ed25519_key_pem()


@pytest.fixture(scope="session")
def dns(rsa_pem, ed_pem):
    """A stub resolver with the two published key records, as dkimpy's dnsfunc."""
    records = {
        b"mail._domainkey.example.com.": public_key_dns_record(rsa_pem).encode(),
        b"mail-ed._domainkey.example.com.": ed25519_dns_record(ed_pem).encode(),
    }

    def dnsfunc(name, timeout=5):
        return records.get(name)

    return dnsfunc


@pytest.fixture(scope="session")
def signer(rsa_pem) -> DkimSigner:
    return DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, clock=lambda: SIGNED_AT)


@pytest.fixture(scope="session")
def dual_signer(rsa_pem, ed_pem) -> DkimSigner:
    return DkimSigner.from_pem(
        DOMAIN,
        "mail",
        rsa_pem,
        ed25519_pem=ed_pem,
        ed25519_selector="mail-ed",
        clock=lambda: SIGNED_AT,
    )


@pytest.fixture
def ed25519_capable_dkimpy(monkeypatch):
    """dkimpy checks Ed25519 through PyNaCl; without it, the same primitive from cryptography.

    dkimpy still parses, canonicalises and hashes; only the final Ed25519 check is swapped.
    """
    if importlib.util.find_spec("nacl") is None:
        monkeypatch.setattr(dkim, "nacl", _nacl_on_cryptography(), raising=False)


def _nacl_on_cryptography() -> SimpleNamespace:
    class VerifyKey:
        def __init__(self, key_b64, encoder=None):
            self._key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64))

        def verify(self, message, signature):
            self._key.verify(signature, message)
            return message

    return SimpleNamespace(
        signing=SimpleNamespace(VerifyKey=VerifyKey),
        encoding=SimpleNamespace(Base64Encoder=None),
        exceptions=SimpleNamespace(ValueError=ValueError, BadSignatureError=InvalidSignature),
    )


def newsletter(body_text: bytes = b"Hello there,  \t\r\nthe news.\t\r\n") -> bytes:
    """A realistic multipart newsletter as CRLF bytes, with the awkward bits signers trip on."""
    boundary = b"==b0undary=="
    headers = [
        b"From: Example News <news@example.com>",
        b"To: Jane Doe <jane@example.org>",
        b"Subject: =?utf-8?q?Caf=C3=A9_news?= for\r\n  June",
        b"Date: Tue, 04 Jun 2024 10:00:00 +0000",
        b"Message-ID: <20240604100000.abc123@example.com>",
        b"List-Id: Example News <news.example.com>",
        b"List-Unsubscribe: <https://example.com/u/TOKEN>,\r\n"
        b" <mailto:unsubscribe+code@example.com>",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"',
    ]
    body = [
        b"--" + boundary,
        b'Content-Type: text/plain; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        body_text.removesuffix(b"\r\n"),
        b".",
        b"Caf=C3=A9   and   spaces   ",
        b"",
        b"--" + boundary,
        b'Content-Type: text/html; charset="utf-8"',
        b"Content-Transfer-Encoding: quoted-printable",
        b"",
        b"<p>Caf=C3=A9</p>\t",
        b"",
        b"--" + boundary + b"--",
        b"",
        b"",
    ]
    return b"\r\n".join(headers) + b"\r\n\r\n" + b"\r\n".join(body)


def signature_tags(signed: bytes, index: int = 0) -> dict[bytes, bytes]:
    fields = re.findall(rb"^DKIM-Signature:(.*?\r\n(?:[ \t].*?\r\n)*)", signed, re.M)
    value = fields[index].replace(b"\r\n", b"")
    return {k: re.sub(rb"\s+", b"", v) for k, v in parse_tag_value(value).items()}


def test_rsa_signature_verifies_with_dkimpy(signer, dns):
    """STANDARDS 20, 23: the bytes as sent carry a valid DKIM signature."""
    message = newsletter()
    signed = signer.sign(message)
    assert signed == signer.signature_headers(message) + message
    assert dkim.verify(signed, dnsfunc=dns)


def test_h_covers_from_and_the_list_unsubscribe_pair_oversigned(signer):
    """STANDARDS 20, 21: From and both RFC 8058 headers are in h=, each listed once more than
    it occurs; absent recommended headers are listed once."""
    names = signature_tags(signer.sign(newsletter()))[b"h"].split(b":")
    for present in (b"from", b"to", b"subject", b"date", b"message-id", b"list-id"):
        assert names.count(present) == 2
    assert names.count(b"list-unsubscribe") == 2
    assert names.count(b"list-unsubscribe-post") == 2
    for absent in (b"cc", b"reply-to", b"in-reply-to", b"references"):
        assert names.count(absent) == 1
    assert b"content-transfer-encoding" not in names


def test_algorithm_canonicalisation_and_time_tags(signer):
    """STANDARDS 22: a=rsa-sha256 (never rsa-sha1), relaxed/relaxed, t= from the clock."""
    tags = signature_tags(signer.sign(newsletter()))
    assert tags[b"a"] == b"rsa-sha256"
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.com"
    assert tags[b"s"] == b"mail"
    assert tags[b"t"] == b"1700000000"
    assert b"x" not in tags
    assert b"l" not in tags


def test_expiry_is_opt_in(rsa_pem, dns):
    expiring = DkimSigner.from_pem(
        DOMAIN, "mail", rsa_pem, clock=lambda: SIGNED_AT, expire_after=3600
    )
    signed = expiring.sign(newsletter())
    assert signature_tags(signed)[b"x"] == b"1700003600"
    with pytest.raises(ConfigError):
        DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, expire_after=0)


@pytest.mark.parametrize(
    "added",
    [
        b"List-Unsubscribe: <https://evil.example.net/u/x>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"From: Someone Else <ceo@example.com>\r\n",
        b"Reply-To: attacker@example.net\r\n",
    ],
)
def test_header_added_after_signing_breaks_the_signature(signer, dns, added):
    """STANDARDS 21: prepending a second List-Unsubscribe (or any signed name) fails."""
    signed = signer.sign(newsletter())
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(added + signed, dnsfunc=dns)


def test_header_appended_at_the_bottom_breaks_the_signature(signer, dns):
    """STANDARDS 21: an extra instance below the signed one is what h= would pick."""
    signed = signer.sign(newsletter())
    forged = signed.replace(
        b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example.net/>\r\n\r\n", 1
    )
    assert not dkim.verify(forged, dnsfunc=dns)


def test_one_changed_body_byte_breaks_the_signature(signer, dns):
    signed = signer.sign(newsletter())
    at = signed.index(b"the news.")
    forged = signed[:at] + b"T" + signed[at + 1 :]
    assert not dkim.verify(forged, dnsfunc=dns)


def test_one_changed_subject_byte_breaks_the_signature(signer, dns):
    signed = signer.sign(newsletter())
    assert not dkim.verify(signed.replace(b"for\r\n  June", b"for\r\n  July"), dnsfunc=dns)


def test_header_refolding_keeps_the_signature(signer, dns):
    """Relaxed canonicalisation survives a relay that re-folds or re-spaces header whitespace."""
    signed = signer.sign(newsletter())
    refolded = signed.replace(b"for\r\n  June", b"for June").replace(b"Subject: ", b"Subject:\t ")
    assert dkim.verify(refolded, dnsfunc=dns)


def test_rsa_and_ed25519_signatures_both_verify(dual_signer, dns, ed25519_capable_dkimpy):
    """STANDARDS 22: Ed25519 (RFC 8463) as a second signature; RSA stays first and valid."""
    signed = dual_signer.sign(newsletter())
    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=dns)
    assert verifier.verify(idx=1, dnsfunc=dns)
    first, second = signature_tags(signed, 0), signature_tags(signed, 1)
    assert (first[b"a"], first[b"s"]) == (b"rsa-sha256", b"mail")
    assert (second[b"a"], second[b"s"]) == (b"ed25519-sha256", b"mail-ed")
    assert first[b"h"] == second[b"h"]
    assert first[b"bh"] == second[b"bh"]
    assert dkim.verify(signed, dnsfunc=dns)


def test_ed25519_signature_rejects_a_changed_message(dual_signer, dns, ed25519_capable_dkimpy):
    signed = dual_signer.sign(newsletter())
    forged = signed.replace(b"for\r\n  June", b"for\r\n  July")
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dns)
    assert not dkim.DKIM(forged).verify(idx=1, dnsfunc=dns)
    with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
        dkim.DKIM(signed.replace(b"the news.", b"the newz.")).verify(idx=1, dnsfunc=dns)


def test_signature_lines_are_folded_under_78_characters(dual_signer):
    fields = dual_signer.signature_headers(newsletter())
    assert fields.endswith(b"\r\n")
    lines = fields[:-2].split(b"\r\n")
    assert all(len(line) < 78 for line in lines)
    assert [line for line in lines if not line.startswith(b"\t")] == [
        line for line in lines if line.startswith(b"DKIM-Signature: ")
    ]
    assert len([line for line in lines if line.startswith(b"DKIM-Signature: ")]) == 2


def test_1024_bit_key_is_refused(dns):
    """STANDARDS 22: keys under 2048 bits are a configuration error, with the reason."""
    small = generate_rsa_key_pem(1024)
    with pytest.raises(DkimKeyError, match="the key is 1024 bits; at least 2048 are required"):
        DkimSigner.from_pem(DOMAIN, "mail", small)
    assert issubclass(DkimKeyError, ConfigError)
    assert DkimKeyError().message == "The DKIM key is not usable."


@pytest.mark.parametrize(
    ("pem", "problem"),
    [
        (b"not a key at all", "not a readable PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a readable"),
        (b"", "not a readable PEM private key"),
    ],
)
def test_garbage_pem_is_refused(pem, problem):
    """STANDARDS 22: an unparsable key fails at configuration time, not at the first send."""
    with pytest.raises(DkimKeyError, match=problem):
        DkimSigner.from_pem(DOMAIN, "mail", pem)


def test_wrong_kind_of_key_and_encrypted_key_are_refused(rsa_pem, ed_pem):
    with pytest.raises(DkimKeyError, match="not an RSA key"):
        DkimSigner.from_pem(DOMAIN, "mail", ed_pem)
    with pytest.raises(DkimKeyError, match="not an Ed25519 key"):
        DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, ed25519_pem=rsa_pem, ed25519_selector="ed")
    key = serialization.load_pem_private_key(rsa_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(DkimKeyError, match="encrypted"):
        DkimSigner.from_pem(DOMAIN, "mail", encrypted)


def test_ed25519_needs_its_own_selector(rsa_pem, ed_pem):
    with pytest.raises(DkimKeyError, match="own selector"):
        DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, ed25519_pem=ed_pem)
    with pytest.raises(DkimKeyError, match="must differ"):
        DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, ed25519_pem=ed_pem, ed25519_selector="MAIL")


def test_pkcs1_pem_and_key_files_load(rsa_pem, ed_pem, dns, tmp_path, ed25519_capable_dkimpy):
    key = serialization.load_pem_private_key(rsa_pem, password=None)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    (tmp_path / "rsa.pem").write_bytes(pkcs1)
    (tmp_path / "ed.pem").write_bytes(ed_pem)
    from_files = DkimSigner.from_files(
        DOMAIN,
        "mail",
        tmp_path / "rsa.pem",
        ed25519_key_path=str(tmp_path / "ed.pem"),
        ed25519_selector="mail-ed",
    )
    signed = from_files.sign(newsletter())
    assert dkim.DKIM(signed).verify(idx=0, dnsfunc=dns)
    assert dkim.DKIM(signed).verify(idx=1, dnsfunc=dns)
    assert DkimSigner.from_pem(DOMAIN, "mail", pkcs1.decode()).sign(newsletter())


def test_missing_key_file_is_a_key_error(tmp_path):
    with pytest.raises(DkimKeyError, match="cannot read the DKIM key file"):
        DkimSigner.from_files(DOMAIN, "mail", tmp_path / "absent.pem")


def test_dns_records(rsa_pem, ed_pem):
    rsa_record = public_key_dns_record(rsa_pem)
    assert re.fullmatch(r"v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*", rsa_record)
    ed_record = ed25519_dns_record(ed_pem)
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", ed_record)


def test_custom_header_list(rsa_pem, dns):
    custom = DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, headers=["From", "subject", "X-Campaign"])
    signed = custom.sign(newsletter())
    assert signature_tags(signed)[b"h"] == b"from:from:subject:subject:x-campaign"
    assert custom.signed_headers == ("from", "subject", "x-campaign")
    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(b"X-Campaign: 7\r\n" + signed, dnsfunc=dns)


@pytest.mark.parametrize(
    "headers",
    [("Subject", "To"), ("From", "Bad Name"), ("From", "DKIM-Signature"), "From"],
)
def test_bad_header_lists_are_config_errors(rsa_pem, headers):
    with pytest.raises(ConfigError):
        DkimSigner.from_pem(DOMAIN, "mail", rsa_pem, headers=headers)


@pytest.mark.parametrize(("domain", "selector"), [("exa mple.com", "mail"), (DOMAIN, "s;x=1")])
def test_bad_domain_or_selector_is_a_config_error(rsa_pem, domain, selector):
    with pytest.raises(ConfigError):
        DkimSigner.from_pem(domain, selector, rsa_pem)


def test_message_without_from_or_with_a_broken_header_is_refused(signer):
    with pytest.raises(InvalidInput, match="no From"):
        signer.sign(b"To: a@example.org\r\n\r\nbody\r\n")
    with pytest.raises(InvalidInput, match="malformed header"):
        signer.sign(b"From: a@example.com\r\nno colon here\r\n\r\nbody\r\n")


def test_precomputed_body_hash_gives_the_same_signature(signer):
    message = newsletter()
    body = message.split(b"\r\n\r\n", 1)[1]
    assert signer.signature_headers(message, bh=body_hash(body)) == signer.signature_headers(
        message
    )


@pytest.mark.parametrize(
    "message",
    [
        b"From: a@example.com\r\n\r\n",
        b"From: a@example.com\r\n",
        b"From: a@example.com\r\n\r\n\r\n\r\n",
        b"From: a@example.com\r\n\r\nno final line break  ",
    ],
)
def test_edge_bodies_verify(signer, dns, message):
    signed = signer.sign(message)
    assert signed.endswith(b"\r\n")
    assert dkim.verify(signed, dnsfunc=dns)


def test_default_header_list_is_the_documented_one():
    assert DEFAULT_SIGNED_HEADERS[0] == "From"
    assert {"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"} <= set(DEFAULT_SIGNED_HEADERS)


# --- canonicalisation against dkimpy on generated inputs --------------------------------------

_visible = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=8
)
_wsp = st.text(alphabet=" \t", min_size=1, max_size=4)
_fold = st.builds(lambda w, t: "\r\n" + w + t, _wsp, _visible)
_piece = st.one_of(_visible, _wsp, _fold)
_header_value = st.lists(_piece, max_size=8).map("".join).filter(lambda v: not v.startswith("\r\n"))
_body_line = st.text(alphabet="ab.= \t", max_size=12)
_body = st.builds(
    lambda lines, blank: "".join(line + "\r\n" for line in lines) + "\r\n" * blank,
    st.lists(_body_line, max_size=8),
    st.integers(0, 3),
)


def _random_case(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips, strict=False))


@settings(max_examples=200, deadline=None)
@given(
    subject=_header_value,
    to=_header_value,
    unsub=_header_value,
    body=_body,
    flips=st.lists(st.booleans(), min_size=16, max_size=16),
)
def test_relaxed_canonicalisation_agrees_with_dkimpy(signer, dns, subject, to, unsub, body, flips):
    message = (
        f"{_random_case('From', flips)}: news@example.com\r\n"
        f"{_random_case('To', flips)}:{to}\r\n"
        f"X-Unsigned: {subject}\r\n"
        f"{_random_case('Subject', flips)}:{subject}\r\n"
        f"{_random_case('List-Unsubscribe', flips)}:{unsub}\r\n"
        f"\r\n{body}"
    ).encode("ascii")
    assert dkim.verify(signer.sign(message), dnsfunc=dns)


@settings(max_examples=300, deadline=None)
@given(body=_body)
def test_body_hash_matches_dkimpy(body):
    raw = body.encode("ascii")
    expected = base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(raw)).digest())
    assert body_hash(raw) == expected
