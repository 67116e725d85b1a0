"""Erased means erased everywhere: after erasing a person who had a staff test send, a reply
to it, a bounce, a relay webhook event, an import and a data request, neither a full pg_dump
of the database (made with the pg_dump of the server's own major version) nor any file under
the data folder or the journal holds their address, name or IP."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import os
import random
import subprocess
import uuid
from pathlib import Path

from mailer import api_tokens, event_delivery, event_endpoints, journal
from mailer.config import Settings
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.rights import erasure, privacy, queue
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.api_world import bearer
from tests.support.inbound_world import fixture, inbound_server, send_smtplib
from tests.support.mailer_env import DOMAIN, mail_settings, make_tenant
from tests.support.pg_tools import server_major, tool
from tests.support.webhook_receiver import Receiver
from unsubscribe_web.app import create_app

HOOK_SECRET = "sendgrid-secret-0123456789"
CONTENT = {"headline": "News", "intro": "Hello.", "blocks": []}


@dataclasses.dataclass(frozen=True)
class Person:
    email: str
    name: str
    ip: str

    @classmethod
    def generated(cls) -> Person:
        tag = uuid.uuid4().hex[:12]
        octets = [random.randint(1, 254) for _ in range(3)]
        return cls(
            email=f"Erase.{tag}@Example.org",
            name=f"Ada {tag} Lovelace",
            ip=f"10.{octets[0]}.{octets[1]}.{octets[2]}",
        )

    def needles(self) -> list[str]:
        return [self.email, self.name, self.ip]


async def deliver_events(db_dsn: str, settings: Settings) -> None:
    """Every due event to the tenant's endpoint (bounded)."""
    pool = await create_pool(db_dsn, max_size=2)
    try:
        async with event_delivery.Sender(pool, settings) as sender:
            for _ in range(20):
                if await sender.run_once() == 0:
                    break
    finally:
        await pool.close()


def pg_dump(db_dsn: str, major: int, out: Path) -> bytes:
    subprocess.run(
        [str(tool("pg_dump", major)), "--no-owner", "--file", str(out), "--dbname", db_dsn],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.read_bytes()


def hits(data: bytes, needle: str) -> int:
    """Occurrences in text, case aside, and in bytea's hex form (pg_dump writes bytea as \\x..)."""
    low = data.lower()
    forms = {
        needle.lower().encode(),
        needle.encode().hex().encode(),
        needle.lower().encode().hex().encode(),
    }
    return sum(low.count(form) for form in forms)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def reply_to(message_id: str, person: Person, verp: str) -> bytes:
    """An out-of-office answer to the test message, sent by the person's own mail system to the
    envelope sender (the VERP address), quoting their name, address and IP."""
    return (
        f"From: {person.name} <{person.email}>\r\n"
        f"To: {verp}\r\n"
        f"Subject: Re: Spring news\r\n"
        f"In-Reply-To: {message_id}\r\n"
        f"Message-ID: <reply.{uuid.uuid4().hex}@example.org>\r\n"
        f"Received: from [{person.ip}] by mx.example.org\r\n"
        "\r\n"
        f"I am away. -- {person.name}, {person.email}\r\n"
    ).encode()


async def test_erasure_leaves_no_address_name_or_ip_in_a_pg_dump_or_any_file(
    conn, db_dsn, settings, smtp_sink, aiohttp_client, tmp_path
):
    """STANDARDS 40: afterwards no column, queue row or file holds the email or name; the
    events delivered to the tenant's endpoint after the erasure carry none either (issue 22)."""
    person = Person.generated()
    data_dir = tmp_path / "data"
    settings = dataclasses.replace(
        mail_settings(settings, smtp_sink.port),
        data_dir=data_dir,
        inbound=dataclasses.replace(settings.inbound, hook_secrets=(("sendgrid", HOOK_SECRET),)),
        events=dataclasses.replace(settings.events, allow_http_loopback=True),
    )
    receiver = await Receiver().start()
    with journal.journal_in(tmp_path / "journal"):
        (tmp_path / "keys").mkdir()
        tenant, topic = await make_tenant(conn, tmp_path / "keys")
        token = await api_tokens.create_token(conn, role="admin", tenant_id=None)
        client = await aiohttp_client(create_app(settings))
        # Issue 22: the tenant's CRM takes every event, with addresses.
        await event_endpoints.create(
            conn, settings, tenant_id=tenant["id"], url=receiver.url, include_address=True
        )

        # An import over the API: the upload lands under the data folder while it runs.
        response = await client.post(
            "/api/v1/tenants/acme/imports",
            headers=bearer(token.secret) | {"Content-Type": "text/csv"},
            params={"topic": "newsletter", "lawful_basis": "consent", "source": "shop",
                    "age_attested": "true"},
            data=f"email,name\n{person.email},{person.name}\nnot-an-address,{person.name}\n",
        )  # fmt: skip
        assert response.status == 201, await response.text()
        imported = [r async for r in probes().import_ledger(conn, tenant_id=tenant["id"])]
        subscriber_id = imported[0]["subscriber_id"]
        # The person confirms from their browser: the IP is consent evidence.
        await consent.confirm(
            conn, hash_key=settings.hash_key, tenant_id=tenant["id"], subscriber_id=subscriber_id,
            topic_id=topic["id"],
            evidence=consent.Evidence(ip=person.ip, user_agent=f"Mozilla/5.0 ({person.name})"),
        )  # fmt: skip

        # A staff test send to the address, and the campaign itself; the worker sends both.
        campaign = await campaigns.create(
            conn, tenant_id=tenant["id"], topic_slug="newsletter", name="Spring",
            template="newsletter", subject="Spring news", content=CONTENT,
        )  # fmt: skip
        response = await client.post(
            f"/api/v1/tenants/acme/campaigns/{campaign['id']}/test",
            headers=bearer(token.secret),
            json={"to": person.email},
        )
        assert response.status in (200, 201, 202), await response.text()
        test_delivery = (await response.json())["delivery_id"]
        assert await campaigns.start(conn, settings, tenant["id"], campaign["id"]) == 1
        pool = await create_pool(db_dsn, max_size=4)
        try:
            await Worker(pool, settings).run(until_idle=True)
        finally:
            await pool.close()
        sent = await smtp_sink.wait_for(2)
        assert len([m for m in sent if person.email in m.rcpt_tos]) >= 2
        test_row = await probes().delivery_row(conn, id=test_delivery)
        test_message = next(
            m
            for m in sent
            if test_row["message_id"].encode() in m.data and person.email in m.rcpt_tos
        )
        campaign_message = next(
            m for m in sent if m is not test_message and person.email in m.rcpt_tos
            and b"Spring news" in m.data
        )  # fmt: skip

        # Inbound, over SMTP: a DSN for the test send, a reply to it, a bounce of the campaign.
        async with inbound_server(settings, db_dsn) as inbound:
            dsn = fixture("dsn", "postfix_5_1_1_user_unknown.eml").replace(
                b"jdoe@example.net", person.email.encode()
            )
            for verp, mail_from, raw in (
                (test_message.mail_from, "", dsn),
                (
                    test_message.mail_from,
                    person.email,
                    reply_to(test_row["message_id"], person, test_message.mail_from),
                ),
                (campaign_message.mail_from, "", dsn),
            ):
                replies = await send_smtplib(inbound.port, mail_from, [verp], raw)
                assert replies.data[0] == 250, replies

        # A relay's webhook about the campaign message.
        message_ids = {
            r["subscriber_id"]: r["message_id"]
            async for r in probes().campaign_deliveries(conn, campaign_id=campaign["id"])
        }
        hook = json.dumps([
            {"email": person.email, "timestamp": 1717488905, "smtp-id": message_ids[subscriber_id],
             "event": "bounce", "reason": f"550 5.1.1 <{person.email}> unknown",
             "status": "5.1.1", "type": "bounce", "sg_event_id": uuid.uuid4().hex},
        ])  # fmt: skip
        basic = base64.b64encode(f"relay:{HOOK_SECRET}".encode()).decode()
        response = await client.post(
            "/hooks/sendgrid", data=hook,
            headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
        )  # fmt: skip
        assert response.status == 200, await response.text()

        # Data requests: one extended and one rejected, with reasons naming the person.
        now = dt.datetime.now(dt.UTC)
        extended = await privacy.create_request(
            conn, hash_key=settings.hash_key, tenant=tenant, kind="access", email=person.email,
            now=now, verified=True,
        )  # fmt: skip
        await privacy.extend_request(
            conn, tenant=tenant, request_id=extended["id"], now=now,
            reason=f"{person.name} asked for every record since 2019",
        )  # fmt: skip
        rejected = await privacy.create_request(
            conn, hash_key=settings.hash_key, tenant=tenant, kind="rectify", email=person.email,
            now=now, verified=True,
        )  # fmt: skip
        await queue.reject(
            conn, tenant=tenant, request_id=rejected["id"], by="staff", now=now,
            reason=f"{person.email} asked to change a record we do not hold",
        )  # fmt: skip

        # The rows the erasure used to miss: not linked to the subscriber id at all.
        assert (test_row["subscriber_id"], test_row["recipient"]) == (None, person.email)
        answers = [r async for r in probes().inbound_of_delivery(conn, delivery_id=test_delivery)]
        assert [(r["envelope_from"], r["subscriber_id"]) for r in answers] == [
            ("<>", None),
            (person.email, None),
        ]

        await deliver_events(db_dsn, settings)
        assert any(e["data"].get("email") == person.email for e in receiver.events())

        major = await server_major(conn)
        before = pg_dump(db_dsn, major, tmp_path / "before.sql")
        for needle in person.needles():
            assert hits(before, needle), f"the set-up left no trace of {needle} in the dump"

        await erasure.erase_subscriber(
            conn, tenant_id=tenant["id"], subscriber_id=subscriber_id, by="staff"
        )

        delivered = len(receiver.received)
        await deliver_events(db_dsn, settings)
        await receiver.stop()
        erased = [e for e in receiver.events()[delivered:] if e["type"] == "subscriber.erased"]
        assert [e["data"]["subscriber_id"] for e in erased] == [subscriber_id]
        for got in receiver.received[delivered:]:
            for needle in person.needles():
                assert hits(got.body, needle) == 0, needle

        after = pg_dump(db_dsn, major, tmp_path / "after.sql")
        for needle in person.needles():
            assert hits(after, needle) == 0, needle
        assert (data_dir / "uploads").is_dir() and files_under(data_dir / "uploads") == []
        searched = files_under(data_dir) + files_under(tmp_path / "journal")
        assert any(p.suffix == ".journal" for p in searched)
        for path in searched:
            content = path.read_bytes()
            for needle in person.needles():
                assert hits(content, needle) == 0, (path, needle)
        # What proves the request was handled stays: kind, dates, status, a keyed hash.
        requests = [r async for r in probes().requests_of_tenant(conn, tenant_id=tenant["id"])]
        assert [
            (r["kind"], r["requester"], len(bytes(r["requester_key"])), r["status"])
            for r in requests
        ] == [("access", None, 32, "open"), ("rectify", None, 32, "rejected")]
        assert requests[0]["extended_due_at"] is not None
        assert [(r["extension_reason"], r["rejection_reason"]) for r in requests] == [
            ("(erased)", None),
            (None, "(erased)"),
        ]


async def test_mail_to_an_address_the_person_had_before_a_rectification_is_erased_too(
    conn, db_dsn, settings, tmp_path
):
    """Found by the keyed hash of every address the person had: a test send to the old
    address, and a reply from it that matched no delivery, go with the person."""
    (tmp_path / "keys").mkdir()
    tenant, topic = await make_tenant(conn, tmp_path / "keys")
    old, new = "before.rectify@example.org", "after.rectify@example.org"
    joined = await consent.subscribe(
        conn, hash_key=settings.hash_key, tenant_id=tenant["id"], topic_id=topic["id"],
        email=old, age_attested=True, source="import", confirmed=True, lawful_basis="consent",
    )  # fmt: skip
    person = joined.subscriber_id
    campaign = await campaigns.create(
        conn, tenant_id=tenant["id"], topic_slug="newsletter", name="Spring",
        template="newsletter", subject="Spring news", content=CONTENT,
    )  # fmt: skip
    test_send = await campaigns.test_send(
        conn, mail_settings(settings, 9), tenant["id"], campaign["id"], old
    )
    # A message from the old address to the postmaster: it names no delivery and no person.
    async with inbound_server(settings, db_dsn) as inbound:
        raw = f"From: <{old}>\r\nSubject: hello\r\n\r\nwho sent me this?\r\n".encode()
        replies = await send_smtplib(inbound.port, old, [f"postmaster@{DOMAIN}"], raw)
        assert replies.data[0] == 250
    await privacy.request_address_change(
        conn, settings, tenant=tenant, subscriber_id=person, new_email=new,
        now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    session = privacy.DataSession(
        tenant["id"], person, 0, "rectify", "t", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    assert await privacy.confirm_address_change(conn, settings, session, dt.datetime.now(dt.UTC))
    assert (await probes().subscriber_row(conn, id=person))["email"] == new

    await erasure.erase_subscriber(conn, tenant_id=tenant["id"], subscriber_id=person, by="staff")

    row = await probes().delivery_row(conn, id=test_send)
    assert (row["recipient"], row["state"]) == (None, "cancelled")
    await probes().define_find_anywhere(conn)
    for needle in (old, new):
        found = [
            (r["tbl"], r["col"])
            async for r in probes().find_anywhere(conn, needle=needle)
            if r["hits"]
        ]
        assert found == [], needle


async def test_uploads_left_by_a_crash_are_dropped_at_start_and_old_reports_after_30_days(
    conn, settings, tmp_path
):
    """An upload holds addresses: one left behind by a process that died mid-import is
    deleted when the web face starts; an import's per-row report goes 30 days after it ended."""
    from mailer.consent import imports
    from unsubscribe_web.api.admin import STALE_UPLOAD_SECONDS, drop_stale_uploads

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    left, fresh = uploads / "tmpleft.csv", uploads / "tmpfresh.csv"
    left.write_text("email\nleft@example.org\n")
    fresh.write_text("email\nbusy@example.org\n")
    now = fresh.stat().st_mtime
    os.utime(left, (now - STALE_UPLOAD_SECONDS - 1, now - STALE_UPLOAD_SECONDS - 1))
    assert drop_stale_uploads(tmp_path, now=now) == 1
    assert sorted(p.name for p in uploads.iterdir()) == ["tmpfresh.csv"]

    (tmp_path / "keys").mkdir()
    tenant, topic = await make_tenant(conn, tmp_path / "keys")
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nok@example.org,Ok\nnot-an-address,Bad\n")
    done = await imports.run_import(
        conn, settings, tenant_id=tenant["id"], topic_id=topic["id"], path=csv,
        options=imports.ImportOptions(lawful_basis="consent", source="shop", age_attested=True),
        filename="people.csv",
    )  # fmt: skip
    assert [r async for r in probes().import_error_rows(conn, import_id=done["id"])]
    ended = await imports.get_import(conn, tenant["id"], done["id"])
    finished = dt.datetime.fromisoformat(str(ended["finished_at"]))
    day = dt.timedelta(days=1)
    assert await imports.purge_old_reports(conn, tenant["id"], now=finished + 29 * day) == 0
    assert await imports.purge_old_reports(conn, tenant["id"], now=finished + 31 * day) == 1
    assert [r async for r in probes().import_error_rows(conn, import_id=done["id"])] == []
    assert (await imports.get_import(conn, tenant["id"], done["id"]))["rows_bad"] == 1
