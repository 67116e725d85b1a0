"""Sealed endpoint secrets: AES-GCM under a key derived from OPTOUT_HASH_KEY for this one
purpose (HKDF), so a database dump alone cannot sign an event."""

from __future__ import annotations

import base64
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_PREFIX = "whsec_"
_INFO = b"optout event endpoint secrets v1"
_NONCE = 12


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def _key(hash_key: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(hash_key)
    return AESGCM(derived)


def seal(hash_key: bytes, secret: str, endpoint_label: bytes = b"") -> bytes:
    """nonce || ciphertext; ``endpoint_label`` binds it to its row (associated data)."""
    nonce = os.urandom(_NONCE)
    return nonce + _key(hash_key).encrypt(nonce, secret.encode(), endpoint_label or None)


def unseal(hash_key: bytes, sealed: bytes, endpoint_label: bytes = b"") -> str:
    sealed = bytes(sealed)
    return _key(hash_key).decrypt(sealed[:_NONCE], sealed[_NONCE:], endpoint_label or None).decode()
