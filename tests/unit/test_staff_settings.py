"""Issue 24's settings: read with their documented defaults, a wrong value refused in one line
naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.config import load_settings
from mailer.errors import ConfigError

KEYS = {"OPTOUT_SECRET_KEYS": "k1:" + "a" * 40, "OPTOUT_HASH_KEY": "h" * 40}
PG = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
    "OPTOUT_JOURNAL_DIR": "/var/lib/optout-journal",
}


def test_staff_settings_have_their_documented_defaults_and_are_read(tmp_path: Path):
    base = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path)}
    staff = load_settings(base).staff
    assert staff.invite_seconds == 72 * 3600 and staff.password_hashes == 2
    assert (staff.session_idle, staff.session_max) == (30 * 60, 12 * 3600)
    assert staff.token_signin is False and staff.mail_from is None
    chosen = load_settings(
        base
        | {
            "OPTOUT_STAFF_INVITE_HOURS": "24",
            "OPTOUT_PASSWORD_HASHES": "4",
            "OPTOUT_SESSION_IDLE_MINUTES": "10",
            "OPTOUT_SESSION_MAX_HOURS": "8",
            "OPTOUT_TOKEN_SIGNIN": "1",
            "OPTOUT_STAFF_MAIL_FROM": "staff@optout.example",
            "OPTOUT_STAFF_TOTP_REQUIRED": "yes",
        }
    ).staff
    assert chosen.invite_seconds == 24 * 3600 and chosen.password_hashes == 4
    assert (chosen.session_idle, chosen.session_max) == (600, 8 * 3600)
    assert chosen.token_signin is True and chosen.mail_from == "staff@optout.example"
    assert chosen.totp_required is True and staff.totp_required is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPTOUT_STAFF_INVITE_HOURS", "0", "between"),
        ("OPTOUT_PASSWORD_HASHES", "2.5", "whole number"),
        ("OPTOUT_PASSWORD_HASHES", "0", "between"),
        ("OPTOUT_SESSION_IDLE_MINUTES", "forever", "must be a number"),
        ("OPTOUT_SESSION_MAX_HOURS", "-1", "between"),
        ("OPTOUT_TOKEN_SIGNIN", "maybe", "must be 1 or 0"),
        ("OPTOUT_STAFF_TOTP_REQUIRED", "always", "must be 1 or 0"),
        ("OPTOUT_STAFF_MAIL_FROM", "not an address", "must be an email address"),
        ("OPTOUT_STAFF_DKIM_SELECTOR", "sel1", "go together"),
        ("OPTOUT_STAFF_DKIM_KEY_PATH", "/nowhere/key.pem", "go together"),
    ],
)
def test_a_wrong_staff_setting_is_one_line_naming_it(name, value, message, tmp_path: Path):
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env)
    assert name in caught.value.message and "\n" not in caught.value.message


def test_the_staff_dkim_key_needs_a_sender_a_selector_and_a_file(tmp_path: Path):
    key = tmp_path / "staff.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    env = PG | KEYS | {"OPTOUT_DATA_DIR": str(tmp_path)}
    pair = {"OPTOUT_STAFF_DKIM_SELECTOR": "staff1", "OPTOUT_STAFF_DKIM_KEY_PATH": str(key)}
    sender = {"OPTOUT_STAFF_MAIL_FROM": "staff@optout.example"}
    chosen = load_settings(env | pair | sender).staff
    assert (chosen.dkim_selector, chosen.dkim_key_path) == ("staff1", str(key))
    for changes, message in [
        (pair, "needs OPTOUT_STAFF_MAIL_FROM"),
        (pair | sender | {"OPTOUT_STAFF_DKIM_SELECTOR": "no spaces"}, "not a DKIM selector"),
        (pair | sender | {"OPTOUT_STAFF_DKIM_KEY_PATH": str(tmp_path / "gone.pem")}, "not a file"),
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            load_settings(env | changes)
        assert "OPTOUT_STAFF_DKIM" in caught.value.message and "\n" not in caught.value.message
