"""Settings from the environment: every wrong value is one clear ConfigError naming the variable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailer.config import load_settings, parse_smtp_url
from mailer.errors import ConfigError

KEYS = {"OPTOUT_SECRET_KEYS": "k1:" + "a" * 40, "OPTOUT_HASH_KEY": "h" * 40}
PG = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "OPTOUT_JOURNAL_DIR": "/var/lib/optout-journal",
}


def test_embedded_setup_generates_keys_once_and_keeps_them_private(tmp_path: Path):
    env = {"OPTOUT_DATA_DIR": str(tmp_path)}
    first = load_settings(env)
    second = load_settings(env)
    assert first.secret_keys == second.secret_keys and first.hash_key == second.hash_key
    assert first.embedded and first.signing_key_id == "k1"
    mode = stat.S_IMODE((tmp_path / "secrets.env").stat().st_mode)
    assert mode == 0o600


def test_a_readable_secrets_file_is_refused(tmp_path: Path):
    load_settings({"OPTOUT_DATA_DIR": str(tmp_path)})
    (tmp_path / "secrets.env").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_settings({"OPTOUT_DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize("missing", ["OPTOUT_SECRET_KEYS", "OPTOUT_HASH_KEY"])
def test_database_url_requires_both_shared_keys(missing: str, tmp_path: Path):
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path)}
    del env[missing]
    with pytest.raises(ConfigError, match=f"^{missing} is required with DATABASE_URL"):
        load_settings(env)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPTOUT_SECRET_KEYS", "nocolon", "id:secret pairs"),
        ("OPTOUT_SECRET_KEYS", "k1:short", "shorter than 32"),
        ("OPTOUT_SECRET_KEYS", "K1:" + "a" * 40, "lowercase"),
        ("OPTOUT_SECRET_KEYS", f"k1:{'a' * 40},k1:{'b' * 40}", "appears twice"),
        ("OPTOUT_HASH_KEY", "tiny", "OPTOUT_HASH_KEY is shorter"),
        ("OPTOUT_BASE_URL", "http://news.example.com", "https"),
        ("OPTOUT_BASE_URL", "ftp://x", "https"),
        ("OPTOUT_BASE_URL", "https://x.example/?a=b", "query"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("SMTP_URL", "http://relay", "SMTP_URL must start"),
        ("SMTP_URL", "smtp://relay:99999", "SMTP_URL has a port"),
        ("SMTP_URL", "smtp://relay?tls=yes", "unknown options"),
        ("SMTP_URL", "smtp://relay?starttls=maybe", "starttls must be"),
        ("OPTOUT_WEB_HEADER_TIMEOUT", "soon", "OPTOUT_WEB_HEADER_TIMEOUT must be a number"),
        ("OPTOUT_WEB_BODY_TIMEOUT", "0", "OPTOUT_WEB_BODY_TIMEOUT must be between"),
        ("OPTOUT_WEB_UPLOAD_MIN_RATE", "-5", "OPTOUT_WEB_UPLOAD_MIN_RATE must be between"),
        ("OPTOUT_DNS_RESOLVER", "dns.example:53", "OPTOUT_DNS_RESOLVER: 'dns.example' is not"),
        ("OPTOUT_DNS_RESOLVER", "127.0.0.1:99999", "OPTOUT_DNS_RESOLVER: the port"),
        ("OPTOUT_DNS_RESOLVER", "a:b:c", "OPTOUT_DNS_RESOLVER must be host:port"),
        ("OPTOUT_CLAIMS_PER_HOST_PER_HOUR", "many", "OPTOUT_CLAIMS_PER_HOST_PER_HOUR must be"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str, tmp_path: Path):
    """STANDARDS 2: startup fails on a non-https base URL."""
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env)
    variable = "OPTOUT_SECRET_KEYS" if name == "OPTOUT_SECRET_KEYS" else name
    assert variable in caught.value.message
    assert "\n" not in caught.value.message


def test_http_base_url_is_allowed_on_loopback_only(tmp_path: Path):
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path)}
    assert load_settings(env | {"OPTOUT_BASE_URL": "http://127.0.0.1:8080/"}).base_url == (
        "http://127.0.0.1:8080"
    )


def test_smtp_url_forms():
    relay = parse_smtp_url("smtp://user%40x:p%3Ass@relay.example:587?starttls=require")
    assert (relay.host, relay.port, relay.starttls, relay.use_tls) == (
        "relay.example",
        587,
        "require",
        False,
    )
    assert (relay.username, relay.password) == ("user@x", "p:ss")
    implicit = parse_smtp_url("smtps://relay.example")
    assert (implicit.port, implicit.use_tls, implicit.starttls) == (465, True, "off")
    assert "p:ss" not in repr(relay)


def test_database_url_requires_a_journal_folder_outside_the_data_folder(tmp_path: Path):
    """The journal must survive what a restore brings back: required with DATABASE_URL, and
    refused inside OPTOUT_DATA_DIR; by default it is in the user's state folder."""
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path / "data")}
    del env["OPTOUT_JOURNAL_DIR"]
    with pytest.raises(ConfigError, match=r"^OPTOUT_JOURNAL_DIR is required with DATABASE_URL"):
        load_settings(env)
    inside = env | {"OPTOUT_JOURNAL_DIR": str(tmp_path / "data" / "journal")}
    with pytest.raises(ConfigError, match=r"^OPTOUT_JOURNAL_DIR: .* is inside OPTOUT_DATA_DIR"):
        load_settings(inside)
    apart = env | {"OPTOUT_JOURNAL_DIR": str(tmp_path / "journal")}
    assert load_settings(apart).journal_dir == tmp_path / "journal"
    embedded = load_settings({"OPTOUT_DATA_DIR": str(tmp_path / "data")}).journal_dir
    assert embedded is not None and (tmp_path / "data") not in embedded.parents
    assert embedded.name == "journal"


def test_web_limits_and_inbound_authentication_settings_are_read(tmp_path: Path):
    """Issue 14: every new limit is a setting with the documented default."""
    base = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path)}
    defaults = load_settings(base)
    assert (defaults.web.header_timeout, defaults.web.body_timeout) == (10.0, 30.0)
    assert defaults.web.upload_min_rate == 10 * 1024
    assert defaults.inbound.dns_resolver is None and defaults.inbound.fbl_domains == ()
    assert (
        defaults.inbound.claims_per_tenant_per_hour,
        defaults.inbound.claims_per_host_per_hour,
    ) == (100, 10)
    chosen = load_settings(
        base
        | {
            "OPTOUT_WEB_HEADER_TIMEOUT": "2.5",
            "OPTOUT_WEB_BODY_TIMEOUT": "12",
            "OPTOUT_WEB_UPLOAD_MIN_RATE": "50000",
            "OPTOUT_DNS_RESOLVER": "[::1]:5353",
            "OPTOUT_FBL_DOMAINS": " FBL.Yahoo.com., feedback.example ",
            "OPTOUT_CLAIMS_PER_TENANT_PER_HOUR": "7",
            "OPTOUT_CLAIMS_PER_HOST_PER_HOUR": "3",
        }
    )
    assert (chosen.web.header_timeout, chosen.web.body_timeout) == (2.5, 12.0)
    assert chosen.web.upload_min_rate == 50000
    assert chosen.inbound.dns_resolver == ("::1", 5353)
    assert chosen.inbound.fbl_domains == ("fbl.yahoo.com", "feedback.example")
    assert (chosen.inbound.claims_per_tenant_per_hour, chosen.inbound.claims_per_host_per_hour) == (
        7,
        3,
    )
    assert load_settings(base | {"OPTOUT_DNS_RESOLVER": "127.0.0.1"}).inbound.dns_resolver == (
        "127.0.0.1", 53,
    )  # fmt: skip
