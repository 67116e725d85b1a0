"""Erased means erased everywhere: after erasing a person who had a staff test send, a reply
to it, a bounce, a relay webhook event, an import and a data request, neither a full pg_dump
of the database (made with the pg_dump of the server's own major version) nor any file under
the data folder or the journal holds their address, name or IP."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import random
import subprocess
import uuid
from pathlib import Path

from mailer import api_tokens, journal
from mailer.consent import writer as consent
from mailer.db import create_pool
from mailer.rights import erasure, privacy
from mailer.sending import campaigns
from mailer.sending.worker import Worker
from tests.conftest import probes
from tests.support.api_world import bearer
from tests.support.inbound_world import fixture, inbound_server, send_smtplib
from tests.support.mailer_env import mail_settings, make_tenant
from tests.support.pg_tools import server_major, tool
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
    """STANDARDS 40: afterwards no column, queue row or file holds the email or name."""
    person = Person.generated()
    data_dir = tmp_path / "data"
    settings = dataclasses.replace(
        mail_settings(settings, smtp_sink.port),
        data_dir=data_dir,
        inbound=dataclasses.replace(settings.inbound, hook_secrets=(("sendgrid", HOOK_SECRET),)),
    )
    with journal.journal_in(tmp_path / "journal"):
        (tmp_path / "keys").mkdir()
        tenant, topic = await make_tenant(conn, tmp_path / "keys")
        token = await api_tokens.create_token(conn, role="admin", tenant_id=None)
        client = await aiohttp_client(create_app(settings))

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

        # A data request.
        await privacy.create_request(
            conn, hash_key=settings.hash_key, tenant=tenant, kind="access", email=person.email,
            now=dt.datetime.now(dt.UTC), verified=True,
        )  # fmt: skip

        # The rows the erasure used to miss: not linked to the subscriber id at all.
        assert (test_row["subscriber_id"], test_row["recipient"]) == (None, person.email)
        answers = [r async for r in probes().inbound_of_delivery(conn, delivery_id=test_delivery)]
        assert [(r["envelope_from"], r["subscriber_id"]) for r in answers] == [
            ("<>", None),
            (person.email, None),
        ]

        major = await server_major(conn)
        before = pg_dump(db_dsn, major, tmp_path / "before.sql")
        for needle in person.needles():
            assert hits(before, needle), f"the set-up left no trace of {needle} in the dump"

        await erasure.erase_subscriber(
            conn, tenant_id=tenant["id"], subscriber_id=subscriber_id, by="staff"
        )

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
        assert [(r["kind"], r["requester"], len(bytes(r["requester_key"]))) for r in requests] == [
            ("access", None, 32)
        ]
