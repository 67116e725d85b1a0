"""Campaign mail end to end: claim, compose, DKIM-sign, send over loopback SMTP, record."""

from __future__ import annotations

import email
import email.policy
import json
import re
from email.message import EmailMessage
from typing import Literal

import dkim
import pytest

from mailer import outbox
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.errors import UnknownTopic
from mailer.sending import campaigns
from mailer.sending.campaigns import CampaignRefused
from mailer.sending.dkim import ed25519_dns_record, generate_ed25519_key_pem, generate_rsa_key_pem
from mailer.sending.worker import Worker
from mailer.tokens import CodeKind, Purpose, message_id_for, read_message_id
from tests.conftest import probes, subprocess_env
from tests.support.cli import optout
from tests.support.mailer_env import (
    DOMAIN,
    SELECTOR,
    add_subscribers,
    address_key,
    dnsfunc,
    mail_settings,
    make_tenant,
)

CONTENT = {
    "headline": "Spring news",
    "intro": "Hello from Acme. Ünïcode stays 7-bit on the wire.",
    "blocks": [{"title": "A block", "body": "Its body.", "link": "https://acme.example/a"}],
}
LIST_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
    "DKIM-Signature",
)


async def new_campaign(conn, tenant, **changes):
    values = {
        "tenant_id": tenant["id"],
        "topic_slug": "newsletter",
        "name": "Spring",
        "template": "newsletter",
        "subject": "Spring news: 10% off — ça va?",
        "content": CONTENT,
    } | changes
    return await campaigns.create(conn, **values)


async def run_worker(dsn, settings, **kwargs):
    pool = await create_pool(dsn, max_size=4)
    try:
        return await Worker(pool, settings, **kwargs).run(until_idle=True)
    finally:
        await pool.close()


def body(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    content: str = part.get_content()
    return content


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_every_message_parses_verifies_and_decodes_to_its_recipient(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """STANDARDS 1, 2, 3, 4, 7, 20, 21, 22, 23, 43, 55: each captured message carries every
    header once, verifies with dkimpy, and its link and codes name that recipient and topic."""
    tenant, topic = await make_tenant(conn, tmp_path)
    people = await add_subscribers(conn, settings, tenant["id"], topic["id"], 30)
    campaign = await new_campaign(conn, tenant)
    s = mail_settings(settings, smtp_sink.port, pool_size=3)
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == 30

    stats = await run_worker(db_dsn, s)
    assert stats.sent == 30
    messages = await smtp_sink.wait_for(30)
    assert len(messages) == 30
    keyring = settings.keyring()
    by_delivery = {
        r["id"]: r
        for r in await _rows(probes().campaign_deliveries(conn, campaign_id=campaign["id"]))
    }
    seen = set()
    for captured in messages:
        raw = captured.data
        assert max(raw) < 128, "every part is 7-bit"
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
        message = parse(raw)
        for name in LIST_HEADERS:
            assert len(message.get_all(name) or []) == 1, name
        assert dkim.verify(raw, dnsfunc=dnsfunc), "dkimpy verifies the bytes as received"
        signature = message["DKIM-Signature"]
        assert "a=rsa-sha256" in signature.replace(" ", "")
        h_tag = re.search(r"h=([^;]+);", re.sub(r"\s+", "", str(signature)))
        assert h_tag
        h = h_tag.group(1).lower().split(":")
        for name in (
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "mime-version",
            "content-type",
        ):
            assert h.count(name) >= 2, f"{name} is oversigned"
        # The envelope: VERP code names the delivery, which names this recipient.
        verp = re.fullmatch(rf"bounces\+([a-z2-7]+)@{DOMAIN}", captured.mail_from)
        assert verp and len("bounces+" + verp.group(1)) <= 64
        tenant_id, delivery_id = keyring.read_code(verp.group(1).upper(), CodeKind.BOUNCE).ids
        delivery = by_delivery[delivery_id]
        subscriber_id = delivery["subscriber_id"]
        assert tenant_id == tenant["id"]
        assert captured.rcpt_tos == (people[subscriber_id],)
        assert message["To"] == people[subscriber_id]
        # The Message-ID names the same delivery under a MAC (a complaint can quote it).
        assert message["Message-ID"] == message_id_for(keyring, tenant["id"], delivery_id, DOMAIN)
        named = read_message_id(keyring, message["Message-ID"])
        assert named is not None and named.ids == (tenant["id"], delivery_id)
        assert message["Subject"] == "Spring news: 10% off — ça va?"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Feedback-ID"] == f"{campaign['id']}:{tenant['id']}:{topic['id']}:optout"
        assert "<newsletter.acme.news.example.com>" in message["List-Id"]
        # List-Unsubscribe: raw, unfolded, unencoded; https token and mailto code decode.
        head = raw.split(b"\r\n\r\n", 1)[0].decode()
        unsub = re.search(r"^List-Unsubscribe: <(https://[^>]+)>,\s*<mailto:([^>]+)>", head, re.M)
        assert unsub, "the https URI is whole inside its brackets"
        url, mailto = unsub.groups()
        assert "=?" not in url and url.startswith("https://optout.test/u/")
        claims = keyring.verify(url.rsplit("/", 1)[1], Purpose.ONE_CLICK)
        assert (claims.tenant_id, claims.subscriber_id, claims.object_id) == (
            tenant["id"],
            subscriber_id,
            topic["id"],
        )
        local, _, domain = mailto.partition("@")
        assert domain == DOMAIN and local.startswith("unsubscribe+")
        code = keyring.read_code(local.removeprefix("unsubscribe+"), CodeKind.UNSUBSCRIBE)
        assert code.ids == (tenant["id"], subscriber_id, topic["id"])
        # The body: both parts, the footer's links and the postal address.
        text = body(message, "plain")
        html = body(message, "html")
        for part in (text, html):
            assert url in part and "/p/" in part and "1 Main Street" in part
        prefs_link = re.search(r"https://optout\.test/p/([A-Za-z0-9_-]+)", text)
        assert prefs_link
        prefs = prefs_link.group(1)
        assert keyring.verify(prefs, Purpose.PREFERENCES).subscriber_id == subscriber_id
        seen.add(subscriber_id)
    assert seen == set(people)
    # Connection reuse (STANDARDS 55): 30 transactions over at most the 3 pooled sessions.
    assert smtp_sink.connections <= 3
    result = await campaigns.stats(conn, tenant["id"], campaign["id"])
    assert (result.status, result.sent, result.total) == ("done", 30, 30)
    assert all(d["state"] == "sent" and d["claimed_at"] for d in by_delivery.values())


async def _rows(gen):
    return [r async for r in gen]


@pytest.mark.parametrize(
    "problem",
    ["no_postal", "no_dkim", "small_key", "broken_key", "empty_audience", "no_smtp"],
)
async def test_a_campaign_that_cannot_be_right_refuses_to_start(problem, conn, settings, tmp_path):
    """Bad input: one clear message, nothing queued, the campaign stays a draft."""
    tenant, topic = await make_tenant(
        conn,
        tmp_path,
        postal=None if problem == "no_postal" else "1 Main Street",
        dkim=problem != "no_dkim",
    )
    if problem != "empty_audience":
        await add_subscribers(conn, settings, tenant["id"], topic["id"], 3)
    if problem in ("small_key", "broken_key"):
        pem = generate_rsa_key_pem(1024) if problem == "small_key" else b"not a key"
        (tmp_path / "acme-dkim.pem").write_bytes(pem)
    s = settings if problem == "no_smtp" else mail_settings(settings, 2525)
    if problem == "no_postal":
        with pytest.raises(CampaignRefused, match="postal address"):
            await new_campaign(conn, tenant)
        return
    campaign = await new_campaign(conn, tenant)
    expected = {
        "no_dkim": "no DKIM key",
        "small_key": "1024 bits",
        "broken_key": "not a readable PEM",
        "empty_audience": "nobody would receive",
        "no_smtp": "SMTP_URL",
    }[problem]
    with pytest.raises(CampaignRefused, match=expected) as caught:
        await campaigns.start(conn, s, tenant["id"], campaign["id"])
    assert "\n" not in caught.value.message
    states = await _rows(probes().delivery_states(conn, campaign_id=campaign["id"]))
    assert states == []
    assert (await campaigns.get(conn, tenant["id"], campaign["id"]))["status"] == "draft"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"subject": "Hi\r\nBcc: everyone@example.org"}, "line break"),
        ({"subject": "x" * 300}, "longer than"),
        ({"template": "no_such_template"}, "no email template"),
        ({"content": {"intro": "x", "blocks": []}}, "headline"),
    ],
)
async def test_bad_subject_or_template_is_refused_at_create(changes, expected, conn, tmp_path):
    tenant, _ = await make_tenant(conn, tmp_path)
    with pytest.raises(CampaignRefused, match=expected):
        await new_campaign(conn, tenant, **changes)


async def test_unknown_topic_is_refused(conn, tmp_path):
    tenant, _ = await make_tenant(conn, tmp_path)
    with pytest.raises(UnknownTopic):
        await new_campaign(conn, tenant, topic_slug="nope")


async def test_opted_out_and_suppressed_people_are_not_mailed_even_after_enqueue(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """STANDARDS 27, 37: an opt-out between enqueue and send stops the delivery at claim."""
    tenant, topic = await make_tenant(conn, tmp_path)
    people = await add_subscribers(conn, settings, tenant["id"], topic["id"], 6)
    campaign = await new_campaign(conn, tenant)
    s = mail_settings(settings, smtp_sink.port)
    await campaigns.start(conn, s, tenant["id"], campaign["id"])
    ids = sorted(people)
    await consent.unsubscribe(
        conn, tenant_id=tenant["id"], subscriber_id=ids[0], topic_id=topic["id"], source="one_click"
    )
    await consent.unsubscribe_all_marketing(
        conn, tenant_id=tenant["id"], subscriber_id=ids[1], source="preference_centre"
    )
    await consent.suppress(
        conn,
        tenant_id=tenant["id"],
        address_key=address_key(settings, tenant["id"], people[ids[2]]),
        scope="all",
        reason="complaint",
        source="complaint",
    )
    stats = await run_worker(db_dsn, s)
    assert stats.sent == 3 and stats.suppressed == 3
    received = {m.rcpt_tos[0] for m in smtp_sink.messages}
    assert received == {people[i] for i in ids[3:]}
    states = {
        r["state"]: r["n"]
        for r in await _rows(probes().delivery_states(conn, campaign_id=campaign["id"]))
    }
    assert states == {"sent": 3, "suppressed": 3}


async def test_transactional_mail_ignores_marketing_suppression_but_not_scope_all(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """STANDARDS 34: a marketing opt-out does not block a confirmation; scope all does."""
    tenant, _ = await make_tenant(conn, tmp_path)
    scopes: tuple[tuple[str, Literal["marketing", "all"]], ...] = (
        ("m@example.org", "marketing"),
        ("a@example.org", "all"),
    )
    for address, scope in scopes:
        await consent.suppress(
            conn,
            tenant_id=tenant["id"],
            address_key=address_key(settings, tenant["id"], address),
            scope=scope,
            reason="manual",
            source="staff",
        )
    for address in ("m@example.org", "a@example.org", "ok@example.org"):
        await outbox.enqueue_transactional(
            conn,
            tenant_id=tenant["id"],
            recipient=address,
            template="confirm",
            payload={"confirm_url": "https://optout.test/c/TOKEN", "list_name": "News"},
        )
    s = mail_settings(settings, smtp_sink.port)
    stats = await run_worker(db_dsn, s)
    assert stats.sent == 2
    received = sorted(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert received == ["m@example.org", "ok@example.org"]
    for captured in smtp_sink.messages:
        message = parse(captured.data)
        assert dkim.verify(captured.data, dnsfunc=dnsfunc)
        assert message["List-Unsubscribe"] is None
        assert "https://optout.test/c/TOKEN" in body(message, "plain")


async def test_a_tenant_with_an_ed25519_key_signs_twice_and_both_verify(
    conn, db_dsn, settings, smtp_sink, tmp_path
):
    """STANDARDS 20, 22: a tenant configured with `optout tenant update --dkim-ed25519-*` sends
    mail with an RSA and an Ed25519 (RFC 8463) DKIM-Signature, each verifying with dkimpy."""
    tenant, topic = await make_tenant(conn, tmp_path)
    ed_pem = generate_ed25519_key_pem()
    ed_path = tmp_path / "acme-ed25519.pem"
    ed_path.write_bytes(ed_pem)
    env = subprocess_env(db_dsn)
    half = optout("tenant", "update", "acme", "--dkim-ed25519-selector", "ed1", env=env)
    assert half.returncode != 0 and "key path" in half.stderr, "a selector alone is refused"
    same = ("--dkim-ed25519-selector", SELECTOR, "--dkim-ed25519-key-path", str(ed_path))
    clash = optout("tenant", "update", "acme", *same, env=env)
    assert clash.returncode != 0 and "differ" in clash.stderr
    keys = ("--dkim-ed25519-selector", "ed1", "--dkim-ed25519-key-path", str(ed_path))
    updated = optout("tenant", "update", "acme", *keys, env=env)
    assert updated.returncode == 0, updated.stderr
    shown = json.loads(optout("tenant", "show", "acme", "--json", env=env).stdout)
    assert shown["dkim_ed25519_selector"] == "ed1"

    await add_subscribers(conn, settings, tenant["id"], topic["id"], 5)
    campaign = await new_campaign(conn, tenant)
    s = mail_settings(settings, smtp_sink.port)
    assert await campaigns.start(conn, s, tenant["id"], campaign["id"]) == 5
    assert (await run_worker(db_dsn, s)).sent == 5
    messages = await smtp_sink.wait_for(5)
    records = {
        f"ed1._domainkey.{DOMAIN}.".encode(): ed25519_dns_record(ed_pem).encode(),
    }

    def both(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name) or dnsfunc(name, timeout)

    for captured in messages:
        message = parse(captured.data)
        headers = message.get_all("DKIM-Signature") or []
        signatures = [re.sub(r"\s+", "", str(v)) for v in headers]
        assert len(signatures) == 2
        algorithms = sorted(re.findall(r"(?:^|;)a=([^;]+);", " ".join(signatures)))
        assert algorithms == ["ed25519-sha256", "rsa-sha256"]
        checker = dkim.DKIM(captured.data)
        assert checker.verify(idx=0, dnsfunc=both), "the first signature verifies"
        assert checker.verify(idx=1, dnsfunc=both), "the second signature verifies"
        # Without the Ed25519 record published, that signature fails and the RSA one still holds.
        index = next(i for i, v in enumerate(signatures) if "a=ed25519-sha256" in v)
        assert not dkim.DKIM(captured.data).verify(idx=index, dnsfunc=dnsfunc)
        assert dkim.DKIM(captured.data).verify(idx=1 - index, dnsfunc=dnsfunc)
