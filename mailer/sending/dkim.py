"""DKIM signing (RFC 6376, relaxed/relaxed) of the exact bytes the SMTP client sends.

RSA-SHA256 through OpenSSL (``cryptography``), with an optional Ed25519 (RFC 8463) signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailer.errors import ConfigError, InvalidInput

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "MIN_RSA_BITS",
    "DkimKeyError",
    "DkimSigner",
    "body_hash",
    "ed25519_dns_record",
    "generate_ed25519_key_pem",
    "generate_rsa_key_pem",
    "public_key_dns_record",
]

MIN_RSA_BITS = 2048

# RFC 6376 §5.4.1's recommended set, the RFC 8058 pair that MUST be covered (STANDARDS 20, 21)
# and the top-level MIME fields. Each is oversigned, so none can be added after signing.
# Content-Transfer-Encoding is left out: our messages are multipart, so it lives in the parts.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)

_LINE_LIMIT = 77  # RFC 5322 §2.1.1: lines SHOULD be under 78 characters, CRLF excluded.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_DNS_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
# A header field ends at a CRLF not followed by WSP (a fold); splitting on that yields fields.
_FIELD_SPLIT = re.compile(rb"\r\n(?![ \t])")
_WSP_RUN = re.compile(rb"[ \t]+")
# Body whitespace is compressed in two passes whose patterns start with a literal, which the
# regex engine finds with a fast substring search; one character-class pattern was 5x slower.
_TAB_RUN = re.compile(rb"\t[ \t]*")
_SPACE_RUN = re.compile(rb"  +")
_H_CACHE_LIMIT = 64


class DkimKeyError(ConfigError):
    """The DKIM key is not usable."""

    code = "dkim_key"


def body_hash(body: bytes) -> bytes:
    """The bh= value (base64 SHA-256 of the relaxed-canonical body) for a CRLF body."""
    return base64.b64encode(hashlib.sha256(_relaxed_body(body)).digest())


def _relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalisation, with C-level passes over the bytes."""
    if not body:
        return b""
    if not body.endswith(b"\r\n"):
        # SMTP ends the DATA with CRLF anyway; canonicalise what the receiver will see.
        body += b"\r\n"
    # Each pass runs only when a cheap substring test says it has work: quoted-printable bodies
    # seldom have trailing or doubled whitespace, HTML indentation often does.
    if b" \r\n" in body or b"\t\r\n" in body:
        body = b"\r\n".join([line.rstrip(b" \t") for line in body.split(b"\r\n")])
    if b"\t" in body:
        body = _TAB_RUN.sub(b" ", body)
    if b"  " in body:
        body = _SPACE_RUN.sub(b" ", body)
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _relaxed_value(value: bytes) -> bytes:
    """RFC 6376 §3.4.2 relaxed header value: unfold, compress WSP, trim."""
    return _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")


# --- keys ------------------------------------------------------------------------------------


def generate_rsa_key_pem(bits: int = MIN_RSA_BITS) -> bytes:
    """A new unencrypted PKCS#8 PEM RSA private key (for the demo, tests and key rotation)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _private_pem(key)


def generate_ed25519_key_pem() -> bytes:
    """A new unencrypted PKCS#8 PEM Ed25519 private key."""
    return _private_pem(ed25519.Ed25519PrivateKey.generate())


def public_key_dns_record(rsa_pem: bytes | str) -> str:
    """The TXT value to publish at ``<selector>._domainkey.<domain>`` for this RSA key."""
    der = (
        _load_rsa_key(rsa_pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def ed25519_dns_record(pem: bytes | str) -> str:
    """The TXT value to publish for this Ed25519 key (RFC 8463 §4: the raw 32-byte key)."""
    raw = (
        _load_ed25519_key(pem)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")


def _private_pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private_key(pem: bytes | str, what: str) -> object:
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # raised for an encrypted key when no password is given
        raise DkimKeyError(f"the {what} key is encrypted; give it unencrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise DkimKeyError(f"the {what} key is not a readable PEM private key: {exc}") from exc


def _load_rsa_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    key = _load_private_key(pem, "DKIM RSA")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"the DKIM RSA key is a {type(key).__name__}, not an RSA key")
    _check_rsa_size(key)
    return key


def _load_ed25519_key(pem: bytes | str) -> ed25519.Ed25519PrivateKey:
    key = _load_private_key(pem, "DKIM Ed25519")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DkimKeyError(f"the DKIM Ed25519 key is a {type(key).__name__}, not an Ed25519 key")
    return key


def _check_rsa_size(key: rsa.RSAPrivateKey) -> None:
    # RFC 8301 §3.2 allows 1024 bits but says SHOULD 2048; we enforce the SHOULD (STANDARDS 22).
    if key.key_size < MIN_RSA_BITS:
        raise DkimKeyError(f"the key is {key.key_size} bits; at least {MIN_RSA_BITS} are required")


def _read_key_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"cannot read the DKIM key file {path}: {exc.strerror}") from exc


# --- header folding --------------------------------------------------------------------------


def _fold(pieces: Sequence[tuple[bytes, bytes]], line: bytes) -> tuple[list[bytes], bytes]:
    """Append (glue, text) pieces to ``line``, breaking with CRLF TAB before a piece that would
    overflow. Returns the finished lines and the open last line."""
    done: list[bytes] = []
    for glue, text in pieces:
        if len(line) + len(glue) + len(text) <= _LINE_LIMIT:
            line += glue + text
        else:
            done.append(line)
            line = b"\t" + text
    return done, line


def _folded_h_tag(names: Sequence[bytes]) -> bytes:
    """``\\th=a:b:...;`` on lines of its own, broken after colons (FWS is allowed there)."""
    pieces = [(b"", n + b":") for n in names[:-1]] + [(b"", names[-1] + b";")]
    done, last = _fold(pieces, b"\th=")
    return b"\r\n".join([*done, last])


def _folded_b_tag(signature: bytes) -> bytes:
    """``\\tb=...`` on lines of its own; base64 may be broken anywhere (RFC 6376 §3.5)."""
    b64 = base64.b64encode(signature)
    first = _LINE_LIMIT - 3
    lines = [b"\tb=" + b64[:first]]
    lines += [b"\t" + b64[i : i + _LINE_LIMIT - 1] for i in range(first, len(b64), _LINE_LIMIT - 1)]
    return b"\r\n".join(lines)


# --- the signer ------------------------------------------------------------------------------


class _KeySlot:
    """One signature to make: the algorithm, its selector and the precomputed static tags."""

    __slots__ = ("algorithm", "key", "prefix_lines", "prefix_open")

    def __init__(
        self,
        algorithm: bytes,
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
        domain: bytes,
        selector: bytes,
    ) -> None:
        self.algorithm = algorithm
        self.key = key
        tags = [b"v=1;", b"a=" + algorithm + b";", b"c=relaxed/relaxed;"]
        tags += [b"d=" + domain + b";", b"s=" + selector + b";"]
        done, self.prefix_open = _fold([(b" ", t) for t in tags], b"DKIM-Signature:")
        self.prefix_lines = b"".join(line + b"\r\n" for line in done)

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463 §3: Ed25519 signs the SHA-256 hash of the header data, not the data itself.
        return self.key.sign(hashlib.sha256(data).digest())


class DkimSigner:
    """Signs whole CRLF messages for one domain; build once, reuse for every message.

    Each signed header name goes into h= once more than it occurs (oversigning), absent ones
    once, so a header added in transit breaks the signature (RFC 6376 §5.4, §8.15).
    """

    __slots__ = ("_clock", "_expire_after", "_h_cache", "_names", "_slots", "domain", "selector")

    def __init__(
        self,
        domain: str,
        selector: str,
        rsa_key: rsa.RSAPrivateKey,
        *,
        ed25519_key: ed25519.Ed25519PrivateKey | None = None,
        ed25519_selector: str | None = None,
        headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
        expire_after: int | None = None,
    ) -> None:
        self.domain = _check_dns_name(domain, "domain")
        self.selector = _check_dns_name(selector, "selector")
        if not isinstance(rsa_key, rsa.RSAPrivateKey):
            raise DkimKeyError("the DKIM RSA key is not an RSA private key")
        _check_rsa_size(rsa_key)
        self._names = _signed_names(headers)
        self._clock = clock
        if expire_after is not None and expire_after <= 0:
            raise ConfigError("the DKIM expiry must be positive", field="expire_after")
        self._expire_after = expire_after
        self._h_cache: dict[tuple[int, ...], bytes] = {}
        domain_b = self.domain.encode("ascii")
        self._slots = [_KeySlot(b"rsa-sha256", rsa_key, domain_b, self.selector.encode("ascii"))]
        if ed25519_key is not None:
            ed_selector = _ed25519_selector(ed25519_selector, self.selector)
            self._slots.append(
                _KeySlot(b"ed25519-sha256", ed25519_key, domain_b, ed_selector.encode("ascii"))
            )
        elif ed25519_selector is not None:
            raise ConfigError("an Ed25519 selector was given without an Ed25519 key")

    @classmethod
    def from_pem(
        cls,
        domain: str,
        selector: str,
        rsa_pem: bytes | str,
        *,
        ed25519_pem: bytes | str | None = None,
        ed25519_selector: str | None = None,
        headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
        expire_after: int | None = None,
    ) -> DkimSigner:
        """A signer from PEM private keys (PKCS#1 or PKCS#8, unencrypted)."""
        return cls(
            domain,
            selector,
            _load_rsa_key(rsa_pem),
            ed25519_key=None if ed25519_pem is None else _load_ed25519_key(ed25519_pem),
            ed25519_selector=ed25519_selector,
            headers=headers,
            clock=clock,
            expire_after=expire_after,
        )

    @classmethod
    def from_files(
        cls,
        domain: str,
        selector: str,
        rsa_key_path: str | Path,
        *,
        ed25519_key_path: str | Path | None = None,
        ed25519_selector: str | None = None,
        headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
        clock: Callable[[], float] = time.time,
        expire_after: int | None = None,
    ) -> DkimSigner:
        """A signer from PEM key files."""
        return cls.from_pem(
            domain,
            selector,
            _read_key_file(rsa_key_path),
            ed25519_pem=None if ed25519_key_path is None else _read_key_file(ed25519_key_path),
            ed25519_selector=ed25519_selector,
            headers=headers,
            clock=clock,
            expire_after=expire_after,
        )

    @property
    def signed_headers(self) -> tuple[str, ...]:
        """The lower-case header names this signer covers, in h= order."""
        return tuple(n.decode("ascii") for n in self._names)

    def signature_headers(self, message: bytes, *, bh: bytes | None = None) -> bytes:
        """The DKIM-Signature field(s), CRLF-terminated, to put in front of ``message``.

        ``message`` is the whole message as it will be sent (CRLF, header, blank line, body).
        ``bh`` is a precomputed :func:`body_hash` of its body, for callers that already have it.
        The RSA signature comes first, so verifiers that check only the topmost one see RSA.
        """
        header_block, body = _split_message(message)
        counts, header_data = self._header_data(header_block)
        tags = self._dynamic_tags(counts, body_hash(body) if bh is None else bh)
        fields = []
        for slot in self._slots:
            unsigned = slot.prefix_lines + tags(slot.prefix_open)
            signature = slot.sign(header_data + _signature_field_data(unsigned))
            fields.append(unsigned + _folded_b_tag(signature) + b"\r\n")
        return b"".join(fields)

    def sign(self, message: bytes, *, bh: bytes | None = None) -> bytes:
        """The message with its DKIM-Signature field(s) prepended, ending with CRLF."""
        if message and not message.endswith(b"\r\n"):
            message += b"\r\n"
        return self.signature_headers(message, bh=bh) + message

    def _header_data(self, header_block: bytes) -> tuple[tuple[int, ...], bytes]:
        """How often each signed name occurs, and the canonical header data h= selects."""
        found: dict[bytes, list[bytes]] = {name: [] for name in self._names}
        for field in _FIELD_SPLIT.split(header_block):
            name, colon, value = field.partition(b":")
            if not colon or not name or name[0] in b" \t":
                raise InvalidInput(f"malformed header line in the message: {field[:60]!r}")
            values = found.get(name.rstrip(b" \t").lower())
            if values is not None:
                values.append(value)
        if not found[b"from"]:
            raise InvalidInput("the message has no From header; DKIM must sign one")
        parts: list[bytes] = []
        for name in self._names:
            # RFC 6376 §5.4.2: repeated names in h= take instances from the bottom up.
            for value in reversed(found[name]):
                parts += (name, b":", _relaxed_value(value), b"\r\n")
        return tuple(len(found[n]) for n in self._names), b"".join(parts)

    def _dynamic_tags(self, counts: tuple[int, ...], bh: bytes) -> Callable[[bytes], bytes]:
        """A function completing a slot's open prefix line with t= (x=), h=, bh= and ``b=``."""
        now = int(self._clock())
        time_tags = [(b" ", b"t=%d;" % now)]
        if self._expire_after is not None:
            time_tags.append((b" ", b"x=%d;" % (now + self._expire_after)))
        tail = b"\r\n" + self._h_tag(counts) + b"\r\n\tbh=" + bh + b";\r\n"

        def complete(open_line: bytes) -> bytes:
            done, last = _fold(time_tags, open_line)
            return b"".join(line + b"\r\n" for line in done) + last + tail

        return complete

    def _h_tag(self, counts: tuple[int, ...]) -> bytes:
        folded = self._h_cache.get(counts)
        if folded is None:
            listed = [n for n, c in zip(self._names, counts, strict=True) for _ in range(c + 1)]
            folded = _folded_h_tag(listed)
            if len(self._h_cache) >= _H_CACHE_LIMIT:
                self._h_cache.clear()
            self._h_cache[counts] = folded
        return folded


def _signature_field_data(unsigned_field: bytes) -> bytes:
    """The DKIM-Signature field as hashed: relaxed, ``b=`` empty, no trailing CRLF (§3.7)."""
    # b= is the last tag and starts its own line, so the field up to "b=" is exactly what a
    # verifier gets after deleting the b= value; relaxed turns each CRLF TAB into one space.
    name, _, value = (unsigned_field + b"\tb=").partition(b":")
    return name.lower() + b":" + _relaxed_value(value)


def _split_message(message: bytes) -> tuple[bytes, bytes]:
    """(header block without its final CRLF, body) of a CRLF message."""
    end = message.find(b"\r\n\r\n")
    if end >= 0:
        return message[:end], message[end + 4 :]
    if message.endswith(b"\r\n"):
        return message[:-2], b""
    raise InvalidInput("the message has no CRLF line endings; DKIM signs the bytes as sent")


def _signed_names(headers: Sequence[str]) -> tuple[bytes, ...]:
    if isinstance(headers, str):
        raise ConfigError("the DKIM header list must be a sequence of names", field="headers")
    names: list[bytes] = []
    for header in headers:
        if not _FIELD_NAME.fullmatch(header):
            raise ConfigError(f"not a header field name: {header!r}", field="headers")
        name = header.lower().encode("ascii")
        if name == b"dkim-signature":
            raise ConfigError("DKIM-Signature cannot sign itself", field="headers")
        if name not in names:
            names.append(name)
    if b"from" not in names:
        # RFC 6376 §5.4: "The From header field MUST be signed".
        raise ConfigError("the DKIM header list must include From", field="headers")
    return tuple(names)


def _check_dns_name(value: str, what: str) -> str:
    if not _DNS_NAME.fullmatch(value):
        raise ConfigError(f"the DKIM {what} {value!r} is not a DNS name", field=what)
    return value


def _ed25519_selector(ed25519_selector: str | None, rsa_selector: str) -> str:
    # One selector name holds one key record, so the two keys cannot share it.
    if ed25519_selector is None:
        raise DkimKeyError("an Ed25519 key needs its own selector (ed25519_selector)")
    selector = _check_dns_name(ed25519_selector, "ed25519_selector")
    if selector.lower() == rsa_selector.lower():
        raise DkimKeyError("the Ed25519 selector must differ from the RSA selector")
    return selector
