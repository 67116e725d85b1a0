"""Organizational domains from the packaged Public Suffix List, and DMARC alignment of a
tenant's sender domain with its From (STANDARDS 24)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer import tenants
from mailer.domains import aligned, organizational_domain
from mailer.errors import InvalidInput


@pytest.mark.parametrize(
    "domain, org",
    [
        ("cbg.bounces.example.com", "example.com"),
        ("news.example.co.uk", "example.co.uk"),
        ("Example.COM.", "example.com"),
        ("a.b.github.io", "b.github.io"),  # a private suffix of the list counts too
        ("co.uk", "co.uk"),
        ("localhost", "localhost"),
    ],
)
def test_organizational_domain(domain, org):
    assert organizational_domain(domain) == org


def test_alignment_is_relaxed_and_stops_at_public_suffixes():
    """STANDARDS 24 (RFC 7489 3.1.2): cbg.bounces.example.com aligns with example.com."""
    assert aligned("cbg.bounces.example.com", "example.com")
    assert not aligned("example.co.uk", "other.co.uk")
    assert not aligned("a.github.io", "b.github.io")
    assert not aligned(None, "example.com")


LABEL = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)


@given(LABEL, LABEL, st.lists(LABEL, max_size=3), st.sampled_from(["com", "co.uk", "de"]))
def test_any_subdomain_aligns_with_its_parent_and_not_with_a_sibling(a, b, subs, suffix):
    org = f"{a}.{suffix}"
    assert aligned(".".join([*subs, org]), org)
    assert aligned(org, ".".join([*subs, org]))
    if a != b:
        assert not aligned(".".join([*subs, org]), f"{b}.{suffix}")


def _fields(**changes):
    return tenants.DEFAULTS | {"name": "Acme", "sender_address": "news@acme.example"} | changes


def test_a_tenant_whose_sender_domain_cannot_align_is_refused_with_one_line():
    """STANDARDS 24: d=, the VERP domain and From share one organizational domain (all three
    use sender_domain); another domain is refused with one line naming both."""
    ok = tenants.check_fields(_fields(sender_domain="bounces.acme.example"))
    assert ok["sender_domain"] == "bounces.acme.example"
    assert tenants.check_fields(_fields())["sender_domain"] == "acme.example"
    with pytest.raises(InvalidInput) as refused:
        tenants.check_fields(_fields(sender_domain="mailer.esp.example"))
    message = str(refused.value.message)
    assert "\n" not in message
    assert message.startswith(
        "sender_domain mailer.esp.example does not align with the From domain acme.example"
    )
    assert refused.value.field == "sender_domain"
