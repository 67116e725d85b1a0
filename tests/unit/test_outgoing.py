"""Where event deliveries may go (issue 22, item 6): https only, globally routable addresses
only, in every disguise an address can wear; the installation's CIDRs are the one exception.
Also the endpoint secret's seal and the event settings."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given
from hypothesis import strategies as st

from mailer import secret_box
from mailer.config import load_settings
from mailer.errors import ConfigError, InvalidInput
from mailer.outgoing import Guard, RefusedDestination, check_url, refusal

GUARD = Guard()


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",  # private
        "192.168.0.1",
        "172.16.5.4",
        "127.0.0.1",  # loopback
        "0.0.0.0",
        "0.1.2.3",  # this network
        "100.64.0.1",  # shared (carrier-grade NAT)
        "100.127.255.254",
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "100.100.100.200",  # Alibaba metadata
        "fd00:ec2::254",  # AWS IPv6 metadata
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "224.0.0.1",  # multicast
        "198.18.0.1",  # benchmarking
        "192.0.2.1",  # documentation
    ],
)
def test_not_globally_routable_addresses_are_refused(address):
    assert refusal(address, GUARD) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:84e5", "8.8.8.8"])
def test_public_addresses_pass(address):
    assert refusal(address, GUARD) is None


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_an_ipv4_address_is_judged_alike_in_every_ipv6_disguise(value):
    v4 = ipaddress.IPv4Address(value)
    verdict = refusal(str(v4), GUARD) is None
    mapped = ipaddress.IPv6Address(0xFFFF00000000 | value)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | value)
    assert (refusal(str(mapped), GUARD) is None) == verdict
    assert (refusal(str(nat64), GUARD) is None) == verdict


def test_only_the_installation_lists_exceptions():
    allowed = Guard(allow_cidrs=(ipaddress.ip_network("10.9.0.0/16"),))
    assert refusal("10.9.1.2", allowed) is None
    assert refusal("10.8.1.2", allowed) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/in",
        "ftp://hooks.example.com/in",
        "https://user:pw@hooks.example.com/in",
        "https:///nohost",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://127.0.0.1:8080/hook",  # http to loopback only in development
    ],
)
def test_urls_refused_at_the_door(url):
    with pytest.raises(InvalidInput):
        check_url(url, GUARD)


def test_http_to_loopback_only_with_the_development_setting_and_a_literal_host():
    dev = Guard(allow_http_loopback=True)
    assert check_url("http://127.0.0.1:8080/hook", dev)
    assert check_url("http://localhost:8080/hook", dev)
    with pytest.raises(InvalidInput):
        check_url("http://hooks.example.com/hook", dev)
    with pytest.raises(RefusedDestination):
        check_url("https://10.0.0.1/hook", dev)


def test_a_sealed_secret_opens_only_with_its_key_and_row():
    secret = secret_box.new_secret()
    assert secret.startswith("whsec_") and len(secret_box.secret_bytes(secret)) == 32
    sealed = secret_box.seal(b"k" * 32, secret, b"event_endpoint:1")
    assert secret.encode() not in sealed
    assert secret_box.unseal(b"k" * 32, sealed, b"event_endpoint:1") == secret
    with pytest.raises(InvalidTag):
        secret_box.unseal(b"x" * 32, sealed, b"event_endpoint:1")
    with pytest.raises(InvalidTag):
        secret_box.unseal(b"k" * 32, sealed, b"event_endpoint:2")


def events_of(env, tmp_path):
    base = {"OPTOUT_DATA_DIR": str(tmp_path / "data"), "OPTOUT_JOURNAL_DIR": str(tmp_path / "j")}
    return load_settings(base | env).events


def test_event_settings_defaults_and_refusals(tmp_path):
    d = events_of({}, tmp_path)
    assert d.retry_for_seconds == 3 * 86_400 and not d.allow_http_loopback and d.in_worker
    assert events_of({"OPTOUT_EVENTS_RETRY_FOR": "2d"}, tmp_path).retry_for_seconds == 172_800
    assert not events_of({"OPTOUT_EVENTS_IN_WORKER": "0"}, tmp_path).in_worker
    for name, value in (
        ("OPTOUT_EVENTS_RETRY_FOR", "soon"),
        ("OPTOUT_EVENTS_ALLOW_CIDRS", "10.0.0.0/33"),
        ("OPTOUT_EVENTS_ALLOW_HTTP_LOOPBACK", "maybe"),
        ("OPTOUT_EVENTS_CONCURRENCY", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            events_of({name: value}, tmp_path)
