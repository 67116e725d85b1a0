"""Outgoing HTTP to addresses a tenant names (event endpoints): an attack surface, guarded.

Every request resolves its host through OPTOUT_DNS_RESOLVER, checks every address it gets and
connects only to a checked one (aiohttp connects to the address this resolver returns; TLS and
the Host header still use the name). Refused: anything not globally routable, including
IPv4-mapped, NAT64 and 6to4 forms of such addresses, 0.0.0.0/8, 100.64.0.0/10 and cloud
metadata addresses; the only exceptions are the installation's OPTOUT_EVENTS_ALLOW_CIDRS.
https only (http to a literal loopback host with OPTOUT_EVENTS_ALLOW_HTTP_LOOPBACK); no
redirects followed; no proxy from the environment; answers read to 64 KiB at most.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from mailer.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RESPONSE_BYTES = 64 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_REFUSED_V4 = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network": reaches the host itself on Linux
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    ipaddress.ip_network("169.254.0.0/16"),  # link-local: cloud metadata lives here
)
# Metadata services outside link-local (AWS's IPv6, Alibaba's, Oracle's legacy ones).
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("fd00:ec2::254", "100.100.100.200", "192.0.0.192", "169.254.169.254")
)


class RefusedDestination(InvalidInput):
    """The endpoint's address is not one Optout may send to."""


@dataclass(frozen=True, slots=True)
class Guard:
    """The rules for one installation: its resolver, its exceptions, its development mode."""

    dns_server: tuple[str, int] | None = None
    allow_cidrs: tuple[Network, ...] = ()
    allow_http_loopback: bool = False
    dns_lifetime: float = 5.0


def check_url(url: str, guard: Guard) -> str:
    """Refuse a URL that is not https (or http to a literal loopback host in development),
    carries credentials, or has no host; returns it unchanged."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidInput("The URL is not valid.", field="url") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput("The URL has no host.", field="url")
    if parts.username or parts.password:
        raise InvalidInput("The URL must not carry a user name or password.", field="url")
    if parts.scheme == "http":
        if not (guard.allow_http_loopback and host in LOOPBACK_NAMES):
            raise InvalidInput("Endpoints must use https://.", field="url")
    elif parts.scheme != "https":
        raise InvalidInput("Endpoints must use https://.", field="url")
    if port == 0:
        raise InvalidInput("The URL's port is not valid.", field="url")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return url  # a name: its addresses are checked at every delivery
    why = refusal(host, guard, loopback_ok=guard.allow_http_loopback and host in LOOPBACK_NAMES)
    if why is not None:
        raise RefusedDestination(f"The URL's address is {why}.", field="url")
    return url


def refusal(address: str, guard: Guard, *, loopback_ok: bool = False) -> str | None:
    """Why ``address`` may not be connected to, or None when it may."""
    try:
        addr: Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if any(addr in net for net in guard.allow_cidrs):
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_v4(addr)
        if embedded is not None:
            why = refusal(str(embedded), guard, loopback_ok=loopback_ok)
            return None if why is None else f"{why} (inside an IPv6 address)"
    if loopback_ok and addr.is_loopback:
        return None
    if addr in _METADATA:
        return "a cloud metadata address"
    if isinstance(addr, ipaddress.IPv4Address) and any(addr in net for net in _REFUSED_V4):
        return "a reserved or shared address"
    if addr.is_multicast or not addr.is_global:
        return "not globally routable"
    return None


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if any(addr in net for net in _NAT64):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver: names through the installation's resolver, every address checked;
    a name with any refused address is refused whole (a mixed answer is a rebinding trick)."""

    def __init__(self, guard: Guard) -> None:
        # Here, not at the top: every `optout` command imports this module, few deliver.
        import dns.asyncresolver

        self.guard = guard
        if guard.dns_server is None:
            self._dns = dns.asyncresolver.Resolver()
        else:
            self._dns = dns.asyncresolver.Resolver(configure=False)
            self._dns.nameservers = [guard.dns_server[0]]
            self._dns.port = guard.dns_server[1]
        self._dns.lifetime = guard.dns_lifetime
        self._dns.timeout = guard.dns_lifetime

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.strip("[]").lower()
        loopback_ok = self.guard.allow_http_loopback and name in LOOPBACK_NAMES
        try:
            addresses = [str(ipaddress.ip_address(name))]
        except ValueError:
            addresses = (
                ["127.0.0.1"] if name == "localhost" and loopback_ok else await self._lookup(name)
            )
        if not addresses:
            raise RefusedDestination(f"{name} has no address.")
        for address in addresses:
            why = refusal(address, self.guard, loopback_ok=loopback_ok)
            if why is not None:
                raise RefusedDestination(f"{name} resolves to {why}.")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def _lookup(self, name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._dns.resolve(name, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise RefusedDestination(
                    f"{name}: DNS lookup failed ({type(exc).__name__})."
                ) from None
            found.extend(r.address for r in answer)
        return found

    async def close(self) -> None:
        return None


def session(guard: Guard, *, limit: int = 100) -> aiohttp.ClientSession:
    """A client session that only reaches checked addresses: no environment proxy, no cookie
    jar, a fresh lookup for every connection (so a rebinding name is caught each time)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(guard), use_dns_cache=False, limit=limit, force_close=False
    )
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    error: str | None  # an error class: refused_address, timeout, connect, redirect, http_500


async def post(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
) -> Answer:
    """POST once; a 2xx is success, a redirect is a failure (never followed). The answer's
    body is read to MAX_RESPONSE_BYTES at most, then dropped."""
    try:
        async with client.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            await response.content.read(MAX_RESPONSE_BYTES)
            status = response.status
    except RefusedDestination:
        return Answer(None, "refused_address")
    except TimeoutError:
        return Answer(None, "timeout")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, RefusedDestination):
            return Answer(None, "refused_address")
        return Answer(None, "connect")
    except aiohttp.ClientError as exc:
        return Answer(None, _error_class(exc))
    if 200 <= status < 300:
        return Answer(status, None)
    if 300 <= status < 400:
        return Answer(status, "redirect")
    return Answer(status, f"http_{status}")


def _error_class(exc: BaseException) -> str:
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")[:60]
