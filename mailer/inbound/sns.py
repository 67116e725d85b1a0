"""Amazon SNS message signatures: the string SNS signs, the certificate URL it may use, and the
check itself (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA).

Fetching the certificate is the caller's business (a network call); this module only says
which URLs are acceptable and verifies with what was fetched.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["cert_url_allowed", "signed_string", "verify"]

# Only AWS's own SNS endpoints may serve the certificate: otherwise anyone could sign with a
# key of their own and point at it.
_CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[A-Za-z0-9._/-]+\.pem$")

_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION_KEYS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)  # fmt: skip
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def cert_url_allowed(url: object) -> bool:
    return isinstance(url, str) and _CERT_URL.fullmatch(url) is not None


def signed_string(message: dict[str, Any]) -> bytes | None:
    """What SNS signed, as documented for each message type; None for an unknown type."""
    kind = message.get("Type")
    keys: tuple[str, ...]
    if kind == "Notification":
        keys = _NOTIFICATION_KEYS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        keys = _SUBSCRIPTION_KEYS
    else:
        return None
    parts = []
    for key in keys:
        value = message.get(key)
        if value is None and key == "Subject":
            continue  # the only optional one
        if not isinstance(value, str):
            return None
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode("utf-8")


def verify(message: dict[str, Any], cert_pem: bytes) -> bool:
    """True when ``message`` carries a valid signature by the certificate's key."""
    text = signed_string(message)
    algorithm = _HASHES.get(str(message.get("SignatureVersion")))
    if text is None or algorithm is None:
        return False
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except (binascii.Error, ValueError):
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(signature, text, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        return False
    return True
