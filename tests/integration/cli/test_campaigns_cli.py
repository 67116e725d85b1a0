"""`optout campaign ...` and `optout worker` as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import sys

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


async def test_create_preview_send_watch_and_test_send(conn, db_dsn, settings, smtp_sink, tmp_path):
    tenant, topic = await make_tenant(conn, tmp_path)
    await add_subscribers(conn, settings, tenant["id"], topic["id"], 3)
    env = sink_env(subprocess_env(db_dsn), smtp_sink.port, OPTOUT_POLL_SECONDS="0.2")
    content = json.dumps({"headline": "Hi", "intro": "Hello", "blocks": []})
    code, out, err = await optout(
        "campaign", "create", "--tenant", "acme", "--topic", "newsletter", "--name", "First",
        "--subject", "First news", "--content-json", content, env=env,
    )  # fmt: skip
    assert code == 0, err
    campaign_id = out.split()[2]
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
