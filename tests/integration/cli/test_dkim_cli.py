"""`optout dkim generate` and `optout dkim records`: the key an operator makes and the DNS
records they publish are the ones receivers verify the signed mail with."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import dkim

from mailer import tenants
from mailer.sending import compose
from mailer.sending.campaigns import signer_for
from tests.conftest import subprocess_env
from tests.support.cli import optout

README = Path(__file__).resolve().parents[3] / "README.md"


def published(records: str) -> dict[bytes, bytes]:
    """The TXT records of the command's zone-file lines, as a resolver would return them."""
    zone = {}
    for name, value in re.findall(r'^(\S+) TXT "(.*)"$', records, re.M):
        zone[name.encode()] = value.replace('" "', "").encode()
    return zone


async def test_generated_keys_sign_mail_that_verifies_against_the_printed_records(
    db_dsn, conn, settings, tmp_path: Path
):
    """STANDARDS 20: both signatures verify with exactly the records the operator publishes."""
    env = subprocess_env(db_dsn)
    rsa_key, ed_key = tmp_path / "news.pem", tmp_path / "news-ed.pem"
    made = optout("dkim", "generate", str(rsa_key), env=env)
    assert made.returncode == 0, made.stderr
    assert "v=DKIM1; k=rsa; p=" in made.stdout
    assert stat.S_IMODE(rsa_key.stat().st_mode) == 0o600
    assert optout("dkim", "generate", str(ed_key), "--type", "ed25519", env=env).returncode == 0
    tenant = await tenants.create_tenant(
        conn,
        "acme",
        name="Acme",
        sender_address="news@news.acme.example",
        postal_address="1 Road",
        dkim_selector="s1",
        dkim_key_path=str(rsa_key),
        dkim_ed25519_selector="e1",
        dkim_ed25519_key_path=str(ed_key),
    )

    shown = optout("dkim", "records", "--tenant", "acme", env=env)
    assert shown.returncode == 0, shown.stderr
    zone = published(shown.stdout)
    assert set(zone) >= {b"s1._domainkey.news.acme.example.", b"e1._domainkey.news.acme.example."}
    assert "_dmarc.news.acme.example. TXT" in shown.stdout and " MX " in shown.stdout

    sender = compose.Sender(
        from_name="Acme",
        from_address="news@news.acme.example",
        domain="news.acme.example",
        postal_address="1 Road",
        list_id="News <news.acme.example>",
        feedback_id="1:1:1:optout",
    )
    raw = compose.prepare(
        "newsletter", sender, "Hello", {"headline": "Hi", "intro": "x", "blocks": []}
    ).render(
        compose.Recipient(
            to_address="ada@example.com",
            to_name="Ada",
            message_id="<1@news.acme.example>",
            unsubscribe_url="https://optout.test/u/T",
            mailto_unsubscribe="",
            preferences_url="https://optout.test/p/T",
        )
    )
    signer = signer_for(tenant, settings)
    assert signer is not None
    signed = signer.sign(raw)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return zone.get(name if name.endswith(b".") else name + b".", b"")

    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=dns)
    assert verifier.verify(idx=1, dnsfunc=dns)


async def test_an_existing_key_is_never_overwritten(db_dsn, tmp_path: Path):
    env = subprocess_env(db_dsn)
    key = tmp_path / "key.pem"
    key.write_bytes(b"the key in use")
    refused = optout("dkim", "generate", str(key), env=env)
    assert refused.returncode == 2 and "exists already" in refused.stderr
    assert key.read_bytes() == b"the key in use"
    weak = optout("dkim", "generate", str(tmp_path / "weak.pem"), "--bits", "1024", env=env)
    assert weak.returncode == 2 and "2048" in weak.stderr
    assert not (tmp_path / "weak.pem").exists()


async def test_dmarc_is_printed_where_the_readme_puts_it(db_dsn, conn, tmp_path: Path):
    """At the From address's domain, also when the sender (DKIM, envelope) domain differs."""
    key = tmp_path / "k.pem"
    assert optout("dkim", "generate", str(key), env=subprocess_env(db_dsn)).returncode == 0
    await tenants.create_tenant(
        conn,
        "acme",
        name="Acme",
        sender_address="news@example.com",
        sender_domain="news.example.com",
        dkim_selector="s1",
        dkim_key_path=str(key),
    )
    shown = optout("dkim", "records", "--tenant", "acme", env=subprocess_env(db_dsn))
    assert shown.returncode == 0, shown.stderr
    dmarc = [line for line in shown.stdout.splitlines() if "DMARC1" in line]
    assert len(dmarc) == 1 and dmarc[0].startswith("_dmarc.example.com. TXT")
    assert "s1._domainkey.news.example.com. TXT" in shown.stdout
    readme = await asyncio.to_thread(README.read_text)
    row = next(line for line in readme.splitlines() if line.startswith("| DMARC (TXT) |"))
    assert "the From address's domain" in row and "optout dkim records" in row
