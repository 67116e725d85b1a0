"""Authentication of inbound mail as receivers do it: DKIM (dkimpy), SPF (pyspf) and DMARC
(the policy record read with dnspython, alignment from the packaged Public Suffix List).

Every lookup goes to one resolver (``OPTOUT_DNS_RESOLVER``, else the system's) and lives at
most ``LOOKUP_LIFETIME`` seconds; a lookup that fails makes that check ``temperror``. The
checks run in a thread, before the message's database transaction, so a slow DNS server
never holds a connection or a lock.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

import dkim
import dns.exception
import dns.resolver
import spf

from mailer.domains import aligned, organizational_domain
from mailer.inbound.bounce_parse import header_value, header_values, load_message

__all__ = ["LOOKUP_LIFETIME", "Authentication", "DnsClient", "authenticate"]

log = logging.getLogger(__name__)

LOOKUP_LIFETIME = 3.0
# A message with more signatures than this is not worth checking each of them.
MAX_SIGNATURES = 5


@dataclass(frozen=True, slots=True)
class Authentication:
    """What the checks found; kept with the inbound event and in the ledger's evidence."""

    dkim: str  # pass | fail | none | temperror
    spf: str  # pass | fail | softfail | neutral | none | temperror | permerror
    dmarc: str  # pass | fail | none | temperror
    from_domain: str | None = None
    spf_domain: str | None = None  # the MAIL FROM domain (HELO's for a null sender)
    dkim_domains: tuple[str, ...] = ()  # d= of every passing signature
    aligned_domain: str | None = None  # an authenticated domain aligned with From, if any
    dmarc_policy: str | None = None

    @property
    def from_verified(self) -> bool:
        """SPF or DKIM passed for a domain aligned with the From domain."""
        return self.aligned_domain is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "dkim": self.dkim,
            "dkim_domains": list(self.dkim_domains),
            "spf": self.spf,
            "spf_domain": self.spf_domain,
            "dmarc": self.dmarc,
            "dmarc_policy": self.dmarc_policy,
            "from_domain": self.from_domain,
            "aligned_domain": self.aligned_domain,
        }


UNCHECKED = Authentication("none", "none", "none")


class TempFail(Exception):
    """A DNS lookup timed out or no server answered."""


@dataclass
class DnsClient:
    """Synchronous TXT/A/MX/PTR lookups against one resolver, each bounded in time."""

    server: tuple[str, int] | None = None
    lifetime: float = LOOKUP_LIFETIME
    _resolver: dns.resolver.Resolver = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.server is None:
            self._resolver = dns.resolver.Resolver()  # the system's (/etc/resolv.conf)
        else:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [self.server[0]]
            self._resolver.port = self.server[1]
        self._resolver.lifetime = self.lifetime
        self._resolver.timeout = self.lifetime

    def query(self, name: str, rdtype: str) -> list[Any]:
        """The answer's records; [] for no such name or no such record; TempFail else."""
        try:
            answer = self._resolver.resolve(name, rdtype, lifetime=self.lifetime, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise TempFail(f"{rdtype} {name}: {type(exc).__name__}") from None
        except dns.exception.DNSException as exc:  # a malformed name or answer
            log.info("DNS lookup refused %s %s: %s", rdtype, name, type(exc).__name__)
            return []
        return list(answer)

    def txt(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in self.query(name, "TXT")]


# pyspf reads DNS through its module-level DNSLookup hook and has no per-call resolver; the
# hook below sends each lookup to the client of the check in progress (a context variable,
# copied into the thread that runs the check), never to the system resolver behind our back.
_SPF_DNS: contextvars.ContextVar[DnsClient] = contextvars.ContextVar("optout_spf_dns")


def _spf_lookup(name: str, qtype: str, *_args: Any, **_kwargs: Any) -> list[Any]:
    client = _SPF_DNS.get()
    try:
        records = client.query(name, qtype)
    except TempFail as exc:
        raise spf.TempError(f"DNS {exc}") from None
    out: list[Any] = []
    for r in records:
        if qtype in ("A", "AAAA"):
            out.append(((name, qtype), r.address))
        elif qtype == "MX":
            out.append(((name, qtype), (r.preference, r.exchange)))
        elif qtype == "PTR":
            out.append(((name, qtype), r.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            out.append(((name, qtype), r.strings))
    return out


spf.DNSLookup = _spf_lookup


async def authenticate(
    raw: bytes, *, mail_from: str | None, client_ip: str | None, helo: str | None, dns: DnsClient
) -> Authentication:
    """DKIM, SPF and DMARC of one message; never raises (a failure is a temperror)."""
    context = contextvars.copy_context()
    context.run(_SPF_DNS.set, dns)
    try:
        return await asyncio.to_thread(
            context.run, _authenticate, raw, mail_from, client_ip, helo, dns
        )
    except Exception as exc:  # a check must never lose the message
        log.warning("inbound authentication failed: %s", type(exc).__name__)
        return Authentication("temperror", "temperror", "temperror")


def _authenticate(
    raw: bytes, mail_from: str | None, client_ip: str | None, helo: str | None, dns: DnsClient
) -> Authentication:
    msg = load_message(raw)
    from_domain = _domain_of(header_value(msg, "from"))
    dkim_result, dkim_domains = _check_dkim(raw, len(header_values(msg, "dkim-signature")), dns)
    spf_result, spf_domain = _check_spf(mail_from, client_ip, helo)
    aligned_domain = next((d for d in dkim_domains if aligned(d, from_domain)), None)
    if aligned_domain is None and spf_result == "pass" and aligned(spf_domain, from_domain):
        aligned_domain = spf_domain
    dmarc, policy = _check_dmarc(from_domain, aligned_domain, dns)
    return Authentication(
        dkim=dkim_result,
        spf=spf_result,
        dmarc=dmarc,
        from_domain=from_domain,
        spf_domain=spf_domain,
        dkim_domains=dkim_domains,
        aligned_domain=aligned_domain,
        dmarc_policy=policy,
    )


def _check_dkim(raw: bytes, count: int, dns: DnsClient) -> tuple[str, tuple[str, ...]]:
    if count == 0:
        return "none", ()
    failed_lookup = False

    def dnsfunc(name: bytes | str, timeout: float = LOOKUP_LIFETIME) -> bytes | None:
        nonlocal failed_lookup
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            records = dns.txt(text.rstrip("."))
        except TempFail:
            failed_lookup = True
            return None
        return records[0] if records else None

    passed: list[str] = []
    checker = dkim.DKIM(raw)
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            ok = checker.verify(idx=index, dnsfunc=dnsfunc)
        except dkim.DKIMException:
            ok = False
        if ok and checker.domain:
            passed.append(checker.domain.decode("ascii", "replace").lower())
    if passed:
        return "pass", tuple(dict.fromkeys(passed))
    return ("temperror" if failed_lookup else "fail"), ()


def _check_spf(
    mail_from: str | None, client_ip: str | None, helo: str | None
) -> tuple[str, str | None]:
    sender = (mail_from or "").strip().strip("<>")
    domain = sender.rpartition("@")[2].lower() if sender else (helo or "").lower() or None
    if not client_ip or not domain:
        return "none", domain
    # querytime bounds the whole check (all its lookups); each lookup has its own lifetime.
    result, _explanation = spf.check2(
        i=client_ip, s=sender, h=helo or "", timeout=LOOKUP_LIFETIME, querytime=LOOKUP_LIFETIME * 4
    )
    return str(result), domain


def _check_dmarc(
    from_domain: str | None, aligned_domain: str | None, dns: DnsClient
) -> tuple[str, str | None]:
    """RFC 7489 6.6.3: the From domain's record, else its organizational domain's."""
    if not from_domain:
        return "none", None
    try:
        record = _dmarc_record(from_domain, dns)
        org = organizational_domain(from_domain)
        if record is None and org != from_domain:
            record = _dmarc_record(org, dns)
    except TempFail:
        return "temperror", None
    if record is None:
        return "none", None
    policy = record.get("p")
    return ("pass" if aligned_domain else "fail"), policy


def _dmarc_record(domain: str, dns: DnsClient) -> dict[str, str] | None:
    for text in dns.txt(f"_dmarc.{domain}"):
        value = text.decode("ascii", "replace")
        if value.replace(" ", "").lower().startswith("v=dmarc1"):
            tags = (part.strip().partition("=") for part in value.split(";"))
            return {k.strip().lower(): v.strip() for k, _, v in tags if k.strip()}
    return None


def _domain_of(value: str | None) -> str | None:
    address = parseaddr(value or "")[1]
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return domain or None
