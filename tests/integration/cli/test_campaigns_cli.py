"""`optout campaign ...` and `optout worker` as an operator runs them."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import sys

from mailer.consent import writer as consent
from tests.conftest import subprocess_env
from tests.support.mailer_env import add_subscribers, make_tenant, sink_env


async def optout(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    # asyncio, not subprocess.run: the SMTP sink runs in this test's event loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mailer.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _draft(conn, db_dsn, settings, smtp_sink, tmp_path, intro: str):
    """Tenant acme with 3 confirmed subscribers and a draft made with `campaign create`."""
    tenant, topic = await make_tenant(conn, tmp_path)
    people = await add_subscribers(conn, settings, tenant["id"], topic["id"], 3)
    env = sink_env(subprocess_env(db_dsn), smtp_sink.port, OPTOUT_POLL_SECONDS="0.2")
    content = json.dumps({"headline": "Hi", "intro": intro, "blocks": []})
    code, out, err = await optout(
        "campaign", "create", "--tenant", "acme", "--topic", "newsletter", "--name", "First",
        "--subject", "First news", "--content-json", content, env=env,
    )  # fmt: skip
    assert code == 0, err
    return tenant, topic, people, env, out.split()[2]


async def test_create_preview_send_watch_and_test_send(conn, db_dsn, settings, smtp_sink, tmp_path):
    *_, env, campaign_id = await _draft(conn, db_dsn, settings, smtp_sink, tmp_path, "Hello")
    code, out, _ = await optout("campaign", "preview", campaign_id, "--tenant", "acme", env=env)
    assert code == 0 and "List-Unsubscribe: <https://optout.test/u/PREVIEW>" in out
    assert "Subject: First news" in out and "1 Main Street" in out
    code, out, err = await optout(
        "campaign", "send", campaign_id, "--tenant", "acme", "--no-follow", env=env
    )
    assert code == 0 and "3 recipients queued" in out, err
    code, _, err = await optout("worker", "--until-idle", "--quiet", env=env)
    assert code == 0, err
    assert "sent 3" in err
    assert len(smtp_sink.messages) == 3
    code, out, _ = await optout("campaign", "status", campaign_id, "--tenant", "acme", env=env)
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["status"] == "done" and lines["sent"] == "3" and lines["failed"] == "0"
    code, out, _ = await optout(
        "campaign", "status", campaign_id, "--tenant", "acme", "--json", env=env
    )
    assert json.loads(out)["sent"] == 3
    # Not a terminal: --follow prints plain progress lines, no bar, and stops when done.
    code, out, _ = await optout(
        "campaign", "status", campaign_id, "--tenant", "acme", "--follow", env=env
    )
    assert code == 0 and out.startswith("100.0% sent 3 failed 0") and "[done]" in out
    assert "#" not in out
    code, out, err = await optout(
        "campaign", "test", campaign_id, "--tenant", "acme", "--to", "boss@example.org", env=env
    )
    assert code == 0, err
    code, _, err = await optout("worker", "--until-idle", "--quiet", env=env)
    assert code == 0, err
    assert smtp_sink.messages[-1].rcpt_tos == ("boss@example.org",)
    code, _, err = await optout("campaign", "pause", campaign_id, "--tenant", "acme", env=env)
    assert code == 1 and err.strip() == "optout: the campaign is done; cannot make it paused"


async def test_a_campaign_without_dkim_refuses_with_one_line(conn, db_dsn, settings, tmp_path):
    tenant, topic = await make_tenant(conn, tmp_path, dkim=False)
    await add_subscribers(conn, settings, tenant["id"], topic["id"], 2)
    env = sink_env(subprocess_env(db_dsn), 2525)
    code, out, err = await optout(
        "campaign", "create", "--tenant", "acme", "--topic", "newsletter", "--name", "X",
        "--subject", "X", "--content-json", '{"headline": "h", "intro": "i", "blocks": []}',
        env=env,
    )  # fmt: skip
    assert code == 0, err
    campaign_id = out.split()[2]
    code, out, err = await optout("campaign", "send", campaign_id, "--tenant", "acme", env=env)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no DKIM key" in err and "OPTOUT_ALLOW_UNSIGNED" in err
    code, _, err = await optout(
        "campaign", "create", "--tenant", "acme", "--topic", "newsletter", "--name", "X",
        "--subject", "bad\nsubject", env=env,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1


async def test_preview_writes_html_and_eml_and_status_tables_unsubscribes(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """The preview a person reads: the headers that matter and the text part, with --html and
    --eml files to open; status lists unsubscribes as channel and count, one per line."""
    tenant, topic, people, env, campaign_id = await _draft(
        conn, db_dsn, settings, smtp_sink, tmp_path, "Hello there"
    )
    html, eml = tmp_path / "preview.html", tmp_path / "preview.eml"
    code, out, err = await optout(
        "campaign", "preview", campaign_id, "--tenant", "acme", "--html", str(html),
        "--eml", str(eml), env=env,
    )  # fmt: skip
    assert code == 0, err
    head, _, body = out.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines())
    assert headers["Subject"] == "First news"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://optout.test/u/PREVIEW>")
    assert "text/plain" in headers["size"] and "text/html" in headers["size"]
    assert "Hello there" in body and "1 Main Street" in body
    assert "<html" not in out and "Content-Transfer-Encoding" not in out  # no raw MIME
    assert str(html) in err and str(eml) in err
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    assert "Hello there" in html.read_text()
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "First news" and message.is_multipart()

    code, out, err = await optout(
        "campaign", "send", campaign_id, "--tenant", "acme", "--no-follow", env=env
    )
    assert code == 0, err
    code, _, err = await optout("worker", "--until-idle", "--quiet", env=env)
    assert code == 0, err
    first, second, _ = sorted(people)
    for subscriber_id, source in ((first, "one_click"), (second, "landing_page")):
        await consent.unsubscribe(
            conn,
            tenant_id=tenant["id"],
            subscriber_id=subscriber_id,
            topic_id=topic["id"],
            source=source,
            campaign_id=int(campaign_id),
        )
    code, out, _ = await optout("campaign", "status", campaign_id, "--tenant", "acme", env=env)
    assert code == 0
    lines = out.splitlines()
    at = lines.index("unsubscribed   2")
    assert [line.split() for line in lines[at + 1 : at + 3]] == [
        ["landing_page", "1"],
        ["one_click", "1"],
    ]
    assert lines[at + 1].startswith("  ") and "{" not in out
