"""Protection of the public forms: CSRF tokens bound to link tokens, and rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
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


class RateLimiter:
    """At most ``limit`` events per key in each ``window`` seconds (a fixed window), in memory.

    Per process: behind several web processes the real limit is that many times higher, which
    is fine for its purpose (keeping one client from flooding a mailbox with confirmations).
    """

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, key: str, *, now: float | None = None) -> bool:
        moment = time.monotonic() if now is None else now
        started, count = self._windows.get(key, (moment, 0))
        if moment - started >= self.window:
            started, count = moment, 0
        if count >= self.limit:
            return False
        if key not in self._windows and len(self._windows) >= self.max_keys:
            self._prune(moment)
        self._windows[key] = (started, count + 1)
        return True

    def _prune(self, moment: float) -> None:
        expired = [k for k, (s, _) in self._windows.items() if moment - s >= self.window]
        for key in expired:
            del self._windows[key]
        if len(self._windows) >= self.max_keys:
            self._windows.clear()  # a flood of distinct keys: forget rather than grow
