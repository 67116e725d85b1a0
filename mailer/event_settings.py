"""Settings of event delivery to tenants' webhook endpoints (issue 22); part of
mailer.config.Settings, which reads them (OPTOUT_EVENTS_*). Every key is in the README's
table."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailer.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class EventSettings:
    """How events are delivered; the defaults suit a small install."""

    # Retries with backoff for this long after the event, then the delivery is abandoned.
    retry_for_seconds: float = 3 * 86_400.0
    # The first retry's wait; each next one doubles, up to an hour.
    backoff_seconds: float = 5.0
    # One request: connect, send, and the answer's first 64 KiB.
    timeout_seconds: float = 10.0
    # Requests in flight to one endpoint from one process.
    concurrency: int = 4
    # A claimed delivery a killed process held is tried again after this long.
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    batch_size: int = 100
    # An installation's exceptions to the address rules (never a tenant's or a caller's).
    allow_cidrs: tuple[Network, ...] = ()
    # Development: http:// to a literal loopback host (127.0.0.1, [::1], localhost).
    allow_http_loopback: bool = False
    # The sending worker (and `optout serve`) delivers events too; 0 when `optout events run`
    # processes do it instead.
    in_worker: bool = True


def parse_cidrs(name: str, raw: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs; a wrong one raises ConfigError naming ``name``."""
    found: list[Network] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            found.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not a CIDR like 10.1.2.0/24") from None
    return tuple(found)
