"""Protection of the public forms: CSRF tokens bound to link tokens (rate limits are shared
through Postgres: mailer.limits)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


class CsrfTokens:
    """Form tokens bound to a link token: a page reached with a link token can post back,
    a page elsewhere cannot forge the field (it needs the key). No cookie involved."""

    def __init__(self, secret_keys: Sequence[tuple[str, bytes]]) -> None:
        # A key of its own per link key: CSRF values never double as link MACs.
        self._keys = [
            hmac.new(secret, b"optout/csrf-key/v1", hashlib.sha256).digest()
            for _, secret in secret_keys
        ]

    def _value(self, key: bytes, link_token: str, form: str) -> str:
        mac = hmac.new(key, f"{form}\x00{link_token}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode("ascii")

    def issue(self, link_token: str, form: str) -> str:
        return self._value(self._keys[0], link_token, form)

    def check(self, link_token: str, form: str, given: object) -> bool:
        if not isinstance(given, str) or len(given) != 24:
            return False
        return any(
            hmac.compare_digest(self._value(key, link_token, form), given) for key in self._keys
        )
