"""The `optout` command as a user runs it: tenants and topics, and one-line errors."""

from __future__ import annotations

import json

from tests.conftest import subprocess_env
from tests.support.cli import optout


async def test_tenant_and_topic_lifecycle(db_dsn):
    env = subprocess_env(db_dsn)
    created = optout(
        "tenant",
        "create",
        "acme",
        "--name",
        "Acme Ltd",
        "--sender-address",
        "News@Acme.example",
        "--postal-address",
        "1 Road, Town",
        "--time-zone",
        "Europe/Paris",
        "--holiday",
        "2026-12-25",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    shown = json.loads(optout("tenant", "show", "acme", "--json", env=env).stdout)
    assert shown["sender_domain"] == "acme.example"
    assert shown["minimum_age"] == 13 and shown["notice_period_days"] == 30
    assert shown["holidays"] == ["2026-12-25"]
    updated = optout("tenant", "update", "acme", "--notice-period-days", "45", env=env)
    assert updated.returncode == 0, updated.stderr
    assert (
        json.loads(optout("tenant", "show", "acme", "--json", env=env).stdout)["notice_period_days"]
        == 45
    )
    assert "acme" in optout("tenant", "list", env=env).stdout
    topic = optout("topic", "create", "news", "--tenant", "acme", "--name", "News", env=env)
    assert topic.returncode == 0, topic.stderr
    assert "news" in optout("topic", "list", "--tenant", "acme", env=env).stdout


async def test_bad_input_is_one_line_and_exit_2(db_dsn):
    env = subprocess_env(db_dsn)
    assert (
        optout(
            "tenant", "create", "acme", "--name", "A", "--sender-address", "a@acme.example", env=env
        ).returncode
        == 0
    )
    cases = [
        (
            ["tenant", "create", "acme", "--name", "A", "--sender-address", "b@acme.example"],
            "exists already",
        ),
        (
            ["tenant", "create", "Bad Slug", "--name", "A", "--sender-address", "a@b.example"],
            "slug",
        ),
        (["tenant", "create", "x", "--name", "A", "--sender-address", "not-an-address"], "@"),
        (["tenant", "update", "acme", "--time-zone", "Mars/Olympus"], "Unknown time zone"),
        (["tenant", "update", "acme", "--minimum-age", "10"], "13"),
        (["tenant", "update", "acme", "--holiday", "25/12/2026"], "not a date"),
        (["tenant", "show", "nobody"], "No tenant 'nobody'"),
        (["topic", "create", "n", "--tenant", "nobody", "--name", "N"], "No tenant"),
    ]
    for args, message in cases:
        result = optout(*args, env=env)
        assert result.returncode in (1, 2), (args, result)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_config_exits_2_with_one_line(tmp_path):
    env = subprocess_env("postgresql://postgres@127.0.0.1:1/none")
    for name, value in [
        ("OPTOUT_BASE_URL", "http://example.com"),
        ("SMTP_URL", "smtp://x:0x"),
        ("OPTOUT_HASH_KEY", "short"),
        ("DATABASE_URL", "mysql://x"),
    ]:
        result = optout("tenant", "list", env=env | {name: value})
        assert result.returncode == 2, (name, result)
        assert result.stderr.startswith(f"optout: {name}") or name in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    no_keys = {k: v for k, v in env.items() if k != "OPTOUT_HASH_KEY"}
    result = optout("tenant", "list", env=no_keys)
    assert result.returncode == 2 and "OPTOUT_HASH_KEY is required" in result.stderr


async def test_tenant_whose_sender_domain_does_not_align_is_refused_with_one_line(db_dsn):
    """STANDARDS 24: `tenant create` refuses a sender domain outside the From's
    organizational domain with one line, and creates nothing; a subdomain is fine."""
    env = subprocess_env(db_dsn)
    common = ["--name", "Acme", "--sender-address", "news@acme.example"]
    refused = optout(
        "tenant", "create", "acme", *common, "--sender-domain", "esp-mailer.example", env=env
    )
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "esp-mailer.example does not align with the From domain acme.example" in lines[0]
    assert "acme" not in optout("tenant", "list", env=env).stdout
    created = optout(
        "tenant", "create", "acme", *common, "--sender-domain", "bounces.acme.example", env=env
    )
    assert created.returncode == 0, created.stderr
    moved = optout("tenant", "update", "acme", "--sender-domain", "other.example", env=env)
    assert moved.returncode != 0 and len(moved.stderr.strip().splitlines()) == 1
