"""`./dev demo`, the README's first command: the whole system on loopback, a newsletter sent
into the catcher, Ctrl-C stops it cleanly, and a second run reuses the data."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from mailer.sending.dkim import public_key_dns_record
from tests.support.cli import optout
from tests.support.demo_process import DemoProcess

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    process = DemoProcess(tmp_path / "data", subscribers=25)
    try:
        yield process
    finally:
        process.kill()


def subject(path: Path) -> str:
    return str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Subject"])


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.read().decode()


def test_demo_sends_a_signed_newsletter_and_stops_on_ctrl_c(demo: DemoProcess) -> None:
    """STANDARDS 3 and 20 on the demo's own mail: the one-click header, and a DKIM signature
    that verifies and covers List-Unsubscribe and List-Unsubscribe-Post."""
    demo.start()
    assert set(demo.links) == {"admin", "staff"}
    assert all(
        link.startswith(f"{demo.base_url}/dashboard/signin/") for link in demo.links.values()
    )
    for path in ("/dev/outbox", "/dashboard", "/s/demo/newsletter", "/policy/demo"):
        assert f"{demo.base_url}{path}" in demo.output
    # Each person gets the newsletter and the notice of policy version 2 (the demo announces it).
    files = demo.wait_for_messages(50)
    assert len(files) == 50
    newsletters = [path for path in files if subject(path).startswith("Demo news #1")]
    notices = [path for path in files if subject(path).startswith("Changes to our privacy policy")]
    assert len(newsletters) == 25 and len(notices) == 25
    raw = newsletters[0].read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<{demo.base_url}/u/" in str(message["List-Unsubscribe"])
    key = (demo.data_dir / "demo" / "dkim-demo.pem").read_bytes()
    record = public_key_dns_record(key).encode()
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)
    tags = dict(
        tag.strip().split("=", 1) for tag in str(message["DKIM-Signature"]).split(";") if "=" in tag
    )
    signed = {name.strip().lower() for name in tags["h"].split(":")}
    assert {"from", "list-unsubscribe", "list-unsubscribe-post"} <= signed
    status, page = get(f"{demo.base_url}/dev/outbox")
    assert status == 200 and page.count('href="/dev/outbox/') == 50
    status, _ = get(f"{demo.base_url}/healthz")
    assert status == 200

    # The tour's `optout policy status`, from a second terminal on the demo's data: the notice
    # of version 2 is followed, and nothing is wrong with it (exit 0, no warning).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.pop("DATABASE_URL", None)
    env["OPTOUT_DATA_DIR"] = str(demo.data_dir / "demo")
    env["OPTOUT_JOURNAL_DIR"] = str(demo.data_dir / "demo-journal")
    status_run = optout("policy", "status", "--tenant", "demo", env=env)
    assert status_run.returncode == 0, status_run.stdout + status_run.stderr
    assert "WARNING" not in status_run.stdout
    assert "version 2" in status_run.stdout and "announced" in status_run.stdout
    assert "notice: 25 sent, 0 pending" in status_run.stdout

    assert demo.stop(signal.SIGINT) == 0
    assert "demo stopped" in demo.output
    assert "Traceback" not in demo.output


def test_ctrl_c_mid_send_then_a_second_run_mails_everyone_once_and_fresh_starts_over(
    demo: DemoProcess,
) -> None:
    """Ctrl-C (SIGINT to the whole process group, the embedded Postgres too) while the
    newsletter is half sent; the next run reuses the data, finishes it and sends one more:
    every person gets each newsletter exactly once."""
    demo.subscribers = 200
    demo.start()
    demo.wait_for_messages(1)
    assert demo.stop(signal.SIGINT, group=True) == 0
    assert "Traceback" not in demo.output

    demo.lines.clear()
    demo.links.clear()
    demo.start()
    assert "reusing" in demo.output
    assert "newsletter #2 queued for 200 subscribers" in demo.output
    demo.wait_for_messages(600)  # two newsletters and the policy notice
    assert demo.stop() == 0
    received = Counter(
        (message["To"], message["Subject"])
        for message in (
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in demo.caught()
        )
    )
    assert len(received) == 600 and set(received.values()) == {1}

    demo.lines.clear()
    demo.links.clear()
    demo.start("--fresh")
    assert "created tenant 'demo'" in demo.output
    assert "newsletter #1 queued" in demo.output
    demo.wait_for_messages(400)
    assert len(demo.caught()) == 400  # the old outbox went with the old data
    assert demo.stop() == 0


def test_the_demo_ignores_a_real_installations_settings(tmp_path: Path) -> None:
    """README: `optout demo` ignores DATABASE_URL, SMTP_URL and OPTOUT_BASE_URL (here all
    pointing elsewhere, without the keys a DATABASE_URL needs): it runs on its own."""
    demo = DemoProcess(
        tmp_path / "data",
        subscribers=5,
        environment={
            "DATABASE_URL": "postgresql://optout@127.0.0.1:1/production",
            "SMTP_URL": "smtp://relay.invalid:587",
            "OPTOUT_BASE_URL": "https://optout.example.com",
        },
    )
    try:
        demo.start()
        files = demo.wait_for_messages(10)
        raw = b"".join(path.read_bytes() for path in files)
        assert f"<{demo.base_url}/u/".encode() in raw
        assert b"optout.example.com" not in raw
        assert demo.stop() == 0
    finally:
        demo.kill()
    assert "Traceback" not in demo.output and "DATABASE_URL" not in demo.output
