"""Organizational domains (RFC 7489 section 3.2) from the Public Suffix List that the
``publicsuffixlist`` package ships (never fetched at run time), and DMARC's relaxed alignment:
used to refuse a tenant whose sender domain cannot align with its From, and to judge the
authentication of inbound mail."""

from __future__ import annotations

from functools import cache

from publicsuffixlist import PublicSuffixList

__all__ = ["aligned", "organizational_domain"]


@cache
def _psl() -> PublicSuffixList:
    # Loading parses the packaged list once per process (a few milliseconds).
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registered domain under its public suffix ("news.example.co.uk" -> "example.co.uk").

    A name that is itself a public suffix (or has none, like "localhost") is its own
    organizational domain, as RFC 7489 section 3.2 step 4 says.
    """
    name = domain.strip().rstrip(".").lower()
    return _psl().privatesuffix(name) or name


def aligned(a: str | None, b: str | None) -> bool:
    """Relaxed alignment: both domains share one organizational domain."""
    if not a or not b:
        return False
    return organizational_domain(a) == organizational_domain(b)
