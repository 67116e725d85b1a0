"""Settings of the inbound side (SMTP server limits, raw-mail retention, complaint thresholds,
relay webhook secrets), read from the environment; part of mailer.config.Settings.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailer.errors import ConfigError

# Relays that report bounces and complaints by HTTP (unsubscribe_web/hooks.py).
RELAYS = ("ses", "sendgrid", "postmark")
_HOOK_SECRET = re.compile(r"^OPTOUT_HOOK_SECRET_([A-Z0-9_]+)$")
MIN_HOOK_SECRET_CHARS = 16
# RFC 5321 4.5.3.1.6: a server must take text lines of 1,000 octets with the CRLF.
MIN_LINE_BYTES = 1000


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """Limits and thresholds of the inbound side; the defaults suit a small install."""

    max_message_bytes: int = 10 * 1024 * 1024
    # Longest DATA line accepted, CRLF included: real bounces (SES, GMX) carry lines past
    # RFC 5321's 1,000-octet minimum (STANDARDS 60); command lines keep their own bound.
    max_line_bytes: int = 64 * 1024
    max_recipients: int = 20
    # A derived 5.1.1 (read from words, not given) suppresses after this many (issue 23).
    derived_unknown_after: int = 2
    max_connections_per_ip: int = 10
    tls_cert: Path | None = None
    tls_key: Path | None = None
    raw_retention_days: int = 30
    # Gmail: keep the spam rate below 0.1%, never reach 0.3% (STANDARDS 28).
    complaint_alert_rate: float = 0.001
    complaint_pause_rate: float = 0.003
    complaint_min_deliveries: int = 1000
    hook_secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    verify_sns_signatures: bool = True
    # Where inbound mail's DKIM, SPF and DMARC lookups go: (host, port), None for the system's.
    dns_resolver: tuple[str, int] | None = None
    # Feedback-loop domains whose aligned DKIM signature a complaint needs to count toward the
    # pause rate; empty: every MAC-matched complaint counts.
    fbl_domains: tuple[str, ...] = ()
    # Partner withdrawals from unknown senders: claims and confirmation mails, bounded.
    claims_per_tenant_per_hour: int = 100
    claims_per_host_per_hour: int = 10

    def hook_secret(self, relay: str) -> str | None:
        """The shared secret of one relay's webhook, or None when that relay is not enabled."""
        return dict(self.hook_secrets).get(relay)


def load_inbound_settings(env: Mapping[str, str]) -> InboundSettings:
    """Read OPTOUT_INBOUND_*, OPTOUT_COMPLAINT_* and OPTOUT_HOOK_SECRET_<RELAY>."""
    cert = env.get("OPTOUT_INBOUND_TLS_CERT") or None
    key = env.get("OPTOUT_INBOUND_TLS_KEY") or None
    if cert and not key:
        raise ConfigError("OPTOUT_INBOUND_TLS_KEY is required with OPTOUT_INBOUND_TLS_CERT")
    if key and not cert:
        raise ConfigError("OPTOUT_INBOUND_TLS_CERT is required with OPTOUT_INBOUND_TLS_KEY")
    for name, value in (("OPTOUT_INBOUND_TLS_CERT", cert), ("OPTOUT_INBOUND_TLS_KEY", key)):
        if value and not Path(value).is_file():
            raise ConfigError(f"{name}: no such file {value}")
    alert = _rate(env, "OPTOUT_COMPLAINT_ALERT_RATE", 0.001)
    pause = _rate(env, "OPTOUT_COMPLAINT_PAUSE_RATE", 0.003)
    if pause < alert:
        raise ConfigError(
            "OPTOUT_COMPLAINT_PAUSE_RATE must not be below OPTOUT_COMPLAINT_ALERT_RATE"
        )
    return InboundSettings(
        max_message_bytes=_int(env, "OPTOUT_INBOUND_MAX_BYTES", 10 * 1024 * 1024, 1024),
        max_line_bytes=_int(env, "OPTOUT_INBOUND_MAX_LINE", 64 * 1024, MIN_LINE_BYTES),
        max_recipients=_int(env, "OPTOUT_INBOUND_MAX_RECIPIENTS", 20, 1),
        derived_unknown_after=_int(env, "OPTOUT_BOUNCE_DERIVED_5_1_1_AFTER", 2, 1),
        max_connections_per_ip=_int(env, "OPTOUT_INBOUND_MAX_CONNECTIONS_PER_IP", 10, 1),
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        raw_retention_days=_int(env, "OPTOUT_INBOUND_RAW_RETENTION_DAYS", 30, 0),
        complaint_alert_rate=alert,
        complaint_pause_rate=pause,
        complaint_min_deliveries=_int(env, "OPTOUT_COMPLAINT_MIN_DELIVERIES", 1000, 0),
        hook_secrets=_hook_secrets(env),
        verify_sns_signatures=_flag(env, "OPTOUT_HOOK_SES_VERIFY_SIGNATURE", True),
        dns_resolver=_host_port(env, "OPTOUT_DNS_RESOLVER"),
        fbl_domains=tuple(
            d.strip().lower().rstrip(".")
            for d in (env.get("OPTOUT_FBL_DOMAINS") or "").split(",")
            if d.strip()
        ),
        claims_per_tenant_per_hour=_int(env, "OPTOUT_CLAIMS_PER_TENANT_PER_HOUR", 100, 0),
        claims_per_host_per_hour=_int(env, "OPTOUT_CLAIMS_PER_HOST_PER_HOUR", 10, 0),
    )


def _host_port(env: Mapping[str, str], name: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6; the port defaults to 53), or None when unset."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?", raw)
    if match is None:
        raise ConfigError(f"{name} must be host:port, e.g. 127.0.0.1:53")
    host = match.group(1) or match.group(3)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{name}: {host!r} is not an IP address") from None
    port = int(match.group(2) or match.group(4) or 53)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}: the port must be from 1 to 65535")
    return host, port


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0")


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw.rstrip("%")) / (100 if raw.endswith("%") else 1)
    except ValueError:
        raise ConfigError(
            f"{name} must be a fraction like 0.001 or a percentage like 0.1%"
        ) from None
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be between 0 and 1")
    return value


def _hook_secrets(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    secrets: list[tuple[str, str]] = []
    for name, value in sorted(env.items()):
        match = _HOOK_SECRET.match(name)
        if match is None or not value:
            continue
        relay = match.group(1).lower()
        if relay not in RELAYS:
            raise ConfigError(f"{name}: unknown relay {relay!r} (known: {', '.join(RELAYS)})")
        if len(value) < MIN_HOOK_SECRET_CHARS:
            raise ConfigError(f"{name} is shorter than {MIN_HOOK_SECRET_CHARS} characters")
        secrets.append((relay, value))
    return tuple(secrets)
