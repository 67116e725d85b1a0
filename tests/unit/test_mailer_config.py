"""The mailer's settings from the environment, and the compose rule for local http links."""

from __future__ import annotations

import dataclasses

import pytest

from mailer.config import MailerSettings, load_settings
from mailer.errors import ConfigError, InvalidInput
from mailer.sending.compose import Recipient, Sender, prepare

BASE = {
    "OPTOUT_SECRET_KEYS": "k1:" + "a" * 40,
    "OPTOUT_HASH_KEY": "h" * 40,
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "OPTOUT_JOURNAL_DIR": "/var/lib/optout-journal",
}


def test_defaults_follow_rfc_5321():
    """STANDARDS 52, 54: first retry at 30 minutes, give up after 4 days, 5-minute timeouts."""
    mailer = load_settings(BASE).mailer
    assert mailer == MailerSettings()
    assert (
        load_settings(BASE | {"OPTOUT_BASE_URL": "https://u.example.com"}).mailer.helo_name
        == "u.example.com"
    )
    assert mailer.retry_schedule[0] >= 1800 and mailer.give_up_after >= 4 * 86400
    assert mailer.smtp_timeout >= 300
    # RFC 5321 4.5.3.2's per-stage minimums.
    assert dataclasses.asdict(mailer.smtp_timeouts) == {
        "greeting": 300.0, "mail": 300.0, "rcpt": 300.0,
        "data_init": 120.0, "data_block": 180.0, "data_end": 600.0,
    }  # fmt: skip


def test_every_setting_is_read():
    env = BASE | {
        "OPTOUT_SMTP_POOL_SIZE": "8",
        "OPTOUT_SMTP_TIMEOUT": "30",
        "OPTOUT_RELAY_PER_SECOND": "12.5",
        "OPTOUT_RELAY_PER_HOUR": "40000",
        "OPTOUT_BATCH_SIZE": "500",
        "OPTOUT_LEASE_SECONDS": "120",
        "OPTOUT_POLL_SECONDS": "2",
        "OPTOUT_RETRY_SCHEDULE": "45m,2h,1d",
        "OPTOUT_GIVE_UP_AFTER": "5d",
        "OPTOUT_PAUSE_ERROR_RATE": "0.1",
        "OPTOUT_PAUSE_MIN_ATTEMPTS": "50",
        "OPTOUT_HELO_NAME": "mx.example.com",
        "OPTOUT_SMTP_TIMEOUT_GREETING": "1",
        "OPTOUT_SMTP_TIMEOUT_MAIL": "2",
        "OPTOUT_SMTP_TIMEOUT_RCPT": "3",
        "OPTOUT_SMTP_TIMEOUT_DATA_INIT": "4",
        "OPTOUT_SMTP_TIMEOUT_DATA_BLOCK": "5",
        "OPTOUT_SMTP_TIMEOUT_DATA_END": "6.5",
    }
    mailer = load_settings(env).mailer
    assert dataclasses.asdict(mailer) == {
        "pool_size": 8,
        "smtp_timeout": 30.0,
        "per_second": 12.5,
        "per_hour": 40000,
        "batch_size": 500,
        "lease_seconds": 120.0,
        "poll_seconds": 2.0,
        "retry_schedule": (2700.0, 7200.0, 86400.0),
        "give_up_after": 5 * 86400.0,
        "pause_error_rate": 0.1,
        "pause_min_attempts": 50,
        "allow_unsigned": False,
        "helo_name": "mx.example.com",
        "fallbacks": (),
        "smtp_timeouts": {
            "greeting": 1.0, "mail": 2.0, "rcpt": 3.0,
            "data_init": 4.0, "data_block": 5.0, "data_end": 6.5,
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPTOUT_SMTP_POOL_SIZE", "many", "OPTOUT_SMTP_POOL_SIZE must be a number"),
        ("OPTOUT_SMTP_POOL_SIZE", "0", "OPTOUT_SMTP_POOL_SIZE must be between"),
        ("OPTOUT_SMTP_TIMEOUT_DATA_END", "soon", "OPTOUT_SMTP_TIMEOUT_DATA_END must be a number"),
        ("OPTOUT_RELAY_PER_SECOND", "-1", "OPTOUT_RELAY_PER_SECOND must be between"),
        ("OPTOUT_RETRY_SCHEDULE", "30m,soon", "OPTOUT_RETRY_SCHEDULE: 'soon'"),
        ("OPTOUT_GIVE_UP_AFTER", "0d", "OPTOUT_GIVE_UP_AFTER: durations must be positive"),
        ("OPTOUT_ALLOW_UNSIGNED", "maybe", "OPTOUT_ALLOW_UNSIGNED must be 1 or 0"),
        ("OPTOUT_SMTP_FALLBACK_URLS", "smtp://a,http://b", "OPTOUT_SMTP_FALLBACK_URLS: must start"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | {name: value})
    assert caught.value.message.startswith(message)
    assert "\n" not in caught.value.message


def test_fallback_relays_are_read_in_order():
    env = BASE | {"OPTOUT_SMTP_FALLBACK_URLS": "smtp://backup.example.com:2525, smtps://b.example"}
    fallbacks = load_settings(env).mailer.fallbacks
    assert [(r.host, r.port, r.use_tls) for r in fallbacks] == [
        ("backup.example.com", 2525, False),
        ("b.example", 465, True),
    ]


def test_unsigned_mail_is_only_for_a_local_relay():
    local = BASE | {"OPTOUT_ALLOW_UNSIGNED": "1", "SMTP_URL": "smtp://127.0.0.1:2525"}
    assert load_settings(local).mailer.allow_unsigned
    with pytest.raises(ConfigError, match="localhost"):
        load_settings(local | {"SMTP_URL": "smtp://relay.example.com"})


SENDER = Sender(
    from_name="Demo",
    from_address="news@demo.example.com",
    domain="demo.example.com",
    postal_address="1 Example Street",
    list_id="News <news.demo.example.com>",
    feedback_id="1:1:1:optout",
)


def _render(base: str) -> bytes:
    prepared = prepare("newsletter", SENDER, "Hi", {"headline": "H", "intro": "I", "blocks": []})
    return prepared.render(
        Recipient(
            to_address="a@example.org",
            to_name=None,
            message_id="<c1.s1@demo.example.com>",
            unsubscribe_url=f"{base}/u/TOKEN",
            mailto_unsubscribe="unsubscribe+abc@demo.example.com",
            preferences_url=f"{base}/p/TOKEN",
        )
    )


@pytest.mark.parametrize("base", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:80"])
def test_the_local_demo_may_use_http_links(base):
    """Mirrors OPTOUT_BASE_URL: http only for loopback, so the demo's links work."""
    assert f"List-Unsubscribe: <{base}/u/TOKEN>".encode() in _render(base)


@pytest.mark.parametrize("base", ["http://news.example.com", "ftp://127.0.0.1", "http://127.0.0.2"])
def test_a_public_http_unsubscribe_link_is_refused(base):
    """STANDARDS 2: the one-click URI must be https."""
    with pytest.raises(InvalidInput, match="https"):
        _render(base)
