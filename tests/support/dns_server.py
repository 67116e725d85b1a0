"""A real DNS server on loopback (dnslib) serving the test domains' DKIM, SPF and DMARC
records, and a guard that fails any lookup sent to another resolver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.resolver
from dnslib import QTYPE, RR, TXT, A
from dnslib.server import BaseResolver, DNSRecord, DNSServer

__all__ = ["LoopbackDns", "guard_system_resolver", "start_dns"]


def _txt_chunks(value: str) -> list[bytes]:
    # A TXT string holds at most 255 octets: long records (DKIM keys) are split.
    data = value.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


@dataclass
class LoopbackDns(BaseResolver):  # type: ignore[misc]
    """Zone data in memory; tests add records while the server runs."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)
    stalled: set[str] = field(default_factory=set)  # names that never get an answer
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def add_txt(self, name: str, value: str) -> None:
        with self.lock:
            self.txt.setdefault(name.lower().rstrip("."), []).append(value)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((name, qtype))
            if name in self.stalled:
                return None  # dnslib sends nothing: the client's lifetime runs out
            if qtype == "TXT":
                for value in self.txt.get(name, []):
                    reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(_txt_chunks(value))))
            elif qtype == "A":
                for value in self.a.get(name, []):
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(value)))
        return reply


def start_dns(zone: LoopbackDns) -> DNSServer:
    server = DNSServer(zone, port=0, address="127.0.0.1")
    server.start_thread()
    zone.port = server.server.server_address[1]
    return server


class _Forbidden(dns.resolver.Resolver):
    """Stands in for the system resolver in tests: any use of it is a test failure."""

    def resolve(self, *args: object, **kwargs: object) -> dns.resolver.Answer:
        raise AssertionError(f"DNS lookup outside the loopback test server: {args[:2]!r}")


def guard_system_resolver() -> Iterator[None]:
    """Replace dnspython's default resolver (what any library uses unless told otherwise)."""
    saved = dns.resolver.default_resolver
    dns.resolver.default_resolver = _Forbidden(configure=False)
    try:
        yield
    finally:
        dns.resolver.default_resolver = saved
