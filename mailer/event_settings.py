"""Settings of event delivery to tenants' webhook endpoints (issue 22), read from the
environment; part of mailer.config.Settings. Every key is in the README's table."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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


def load_event_settings(env: Mapping[str, str]) -> EventSettings:
    """Read OPTOUT_EVENTS_*; a wrong value raises ConfigError naming its variable."""
    d = EventSettings()
    return EventSettings(
        retry_for_seconds=_seconds(env, "OPTOUT_EVENTS_RETRY_FOR", d.retry_for_seconds),
        backoff_seconds=_seconds(env, "OPTOUT_EVENTS_BACKOFF", d.backoff_seconds),
        timeout_seconds=_seconds(env, "OPTOUT_EVENTS_TIMEOUT", d.timeout_seconds),
        concurrency=int(_number(env, "OPTOUT_EVENTS_CONCURRENCY", d.concurrency, 1, 100)),
        lease_seconds=_seconds(env, "OPTOUT_EVENTS_LEASE", d.lease_seconds),
        poll_seconds=_seconds(env, "OPTOUT_EVENTS_POLL", d.poll_seconds),
        batch_size=int(_number(env, "OPTOUT_EVENTS_BATCH", d.batch_size, 1, 10_000)),
        allow_cidrs=_cidrs(env, "OPTOUT_EVENTS_ALLOW_CIDRS"),
        allow_http_loopback=_flag(env, "OPTOUT_EVENTS_ALLOW_HTTP_LOOPBACK"),
        in_worker=_flag(env, "OPTOUT_EVENTS_IN_WORKER", default=True),
    )


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds from "90", "30s", "30m", "2h" or "3d"."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    unit = _UNITS.get(raw[-1:])
    try:
        value = float(raw[:-1] if unit else raw) * (unit or 1.0)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a duration like 30s, 2h or 3d") from None
    if not 0 < value <= 30 * 86_400:
        raise ConfigError(f"{name} must be positive and at most 30 days")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0")


def _cidrs(env: Mapping[str, str], name: str) -> tuple[Network, ...]:
    found: list[Network] = []
    for part in (env.get(name) or "").split(","):
        if not part.strip():
            continue
        try:
            found.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not a CIDR like 10.1.2.0/24") from None
    return tuple(found)
