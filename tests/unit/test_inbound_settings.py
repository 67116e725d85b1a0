"""Inbound settings from the environment: limits, complaint thresholds, webhook secrets."""

from __future__ import annotations

import pytest

from mailer.errors import ConfigError
from mailer.inbound_settings import InboundSettings, load_inbound_settings


def test_defaults():
    settings = load_inbound_settings({})
    assert settings == InboundSettings()
    assert settings.max_message_bytes == 10 * 1024 * 1024
    assert settings.max_line_bytes == 64 * 1024
    assert (settings.complaint_alert_rate, settings.complaint_pause_rate) == (0.001, 0.003)
    assert settings.complaint_min_deliveries == 1000
    assert settings.hook_secret("ses") is None
    assert settings.verify_sns_signatures is True
    assert (
        load_inbound_settings({"OPTOUT_HOOK_SES_VERIFY_SIGNATURE": "0"}).verify_sns_signatures
        is False
    )


def test_values_and_secrets_are_read():
    settings = load_inbound_settings(
        {
            "OPTOUT_INBOUND_MAX_BYTES": "2048",
            "OPTOUT_COMPLAINT_ALERT_RATE": "0.05%",
            "OPTOUT_COMPLAINT_PAUSE_RATE": "0.002",
            "OPTOUT_HOOK_SECRET_SENDGRID": "s" * 20,
        }
    )
    assert settings.max_message_bytes == 2048
    assert settings.complaint_alert_rate == pytest.approx(0.0005)
    assert settings.hook_secret("sendgrid") == "s" * 20
    assert "s" * 20 not in repr(settings)


@pytest.mark.parametrize(
    "env, names",
    [
        ({"OPTOUT_INBOUND_MAX_RECIPIENTS": "many"}, "OPTOUT_INBOUND_MAX_RECIPIENTS"),
        ({"OPTOUT_COMPLAINT_PAUSE_RATE": "2"}, "OPTOUT_COMPLAINT_PAUSE_RATE"),
        ({"OPTOUT_COMPLAINT_PAUSE_RATE": "0.0001"}, "OPTOUT_COMPLAINT_PAUSE_RATE"),
        ({"OPTOUT_HOOK_SECRET_MAILGUN": "x" * 20}, "OPTOUT_HOOK_SECRET_MAILGUN"),
        ({"OPTOUT_HOOK_SECRET_SES": "short"}, "OPTOUT_HOOK_SECRET_SES"),
        ({"OPTOUT_INBOUND_TLS_CERT": "/nonexistent.pem"}, "OPTOUT_INBOUND_TLS_KEY"),
        ({"OPTOUT_HOOK_SES_VERIFY_SIGNATURE": "maybe"}, "OPTOUT_HOOK_SES_VERIFY_SIGNATURE"),
        ({"OPTOUT_INBOUND_MAX_LINE": "999"}, "OPTOUT_INBOUND_MAX_LINE"),
        ({"OPTOUT_INBOUND_MAX_LINE": "64k"}, "OPTOUT_INBOUND_MAX_LINE"),
        ({"OPTOUT_BOUNCE_DERIVED_5_1_1_AFTER": "0"}, "OPTOUT_BOUNCE_DERIVED_5_1_1_AFTER"),
    ],
)
def test_bad_values_name_their_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        load_inbound_settings(env)
