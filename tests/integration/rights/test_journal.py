"""The consent journal outside the database: written after COMMIT and only then (a rolled-back
transaction is never journalled), one fsync per transaction; after a restore from a backup,
`optout journal reapply` brings back every opt-out, suppression, lift and erasure made since,
and finds an edited line or a file cut short."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mailer import journal, tenants
from mailer.addresses import suppression_key, tenant_hash_key
from mailer.consent import suppression_lists
from mailer.consent import writer as consent
from mailer.db import connect, create_pool
from mailer.rights import erasure
from mailer.tokens import LinkClaims, Purpose
from tests.conftest import probes, subprocess_env
from tests.support.cli import optout
from tests.support.pg_tools import server_major, tool
from unsubscribe_web.app import create_app
from unsubscribe_web.keys import ONE_CLICK_BATCHER
from unsubscribe_web.pages import pool_connection

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclasses.dataclass
class Shop:
    tenant_id: int
    news: int
    offers: int
    notices: int


async def make_shop(conn) -> Shop:
    tenant = await tenants.create_tenant(
        conn, "acme", name="Acme", sender_address="news@news.example.com",
        postal_address="1 Main Street, Springfield",
    )  # fmt: skip
    topics = {
        slug: (await tenants.create_topic(conn, tenant["id"], slug=slug, name=slug, kind=kind))[
            "id"
        ]
        for slug, kind in (("news", "marketing"), ("offers", "marketing"), ("notices", "notice"))
    }
    return Shop(tenant["id"], topics["news"], topics["offers"], topics["notices"])


async def join(conn, settings, shop: Shop, email: str, *topics: int) -> int:
    subscriber_id = 0
    for topic in topics or (shop.news, shop.offers):
        result = await consent.subscribe(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id, topic_id=topic,
            email=email, name=f"Name of {email}", age_attested=True, source="web_form",
            evidence=consent.Evidence(ip="192.0.2.7"),
        )  # fmt: skip
        await consent.confirm(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id,
            subscriber_id=result.subscriber_id, topic_id=topic,
        )  # fmt: skip
        subscriber_id = result.subscriber_id
    return subscriber_id


async def state(conn, shop: Shop) -> tuple[list[dict[str, Any]], list[tuple[bytes, str, str]]]:
    people = [dict(r) async for r in probes().people_state(conn, tenant_id=shop.tenant_id)]
    for person in people:
        if isinstance(person["topics"], str):
            person["topics"] = json.loads(person["topics"])
    suppressions = [
        (bytes(r["address_key"]), r["scope"], r["reason"])
        async for r in probes().suppression_state(conn, tenant_id=shop.tenant_id)
    ]
    return people, suppressions


def dump(dsn: str, major: int, out: Path) -> Path:
    subprocess.run(
        [str(tool("pg_dump", major)), "--format=custom", "--no-owner", "--file", str(out),
         "--dbname", dsn],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


def restore(dump_file: Path, dsn: str, major: int) -> None:
    subprocess.run(
        [str(tool("pg_restore", major)), "--no-owner", "--exit-on-error", "--dbname", dsn,
         str(dump_file)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def plain_dump(dsn: str, major: int, out: Path) -> str:
    subprocess.run(
        [str(tool("pg_dump", major)), "--no-owner", "--file", str(out), "--dbname", dsn],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out.read_text().lower()


def reapply(dsn: str, folder: Path, *folders: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(dsn) | {"OPTOUT_JOURNAL_DIR": str(folder)}
    return optout("journal", "reapply", str(folder), *map(str, folders), env=env)


def counts(stdout: str) -> dict[str, int]:
    found = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(": ")
        if name in journal.EVENTS:
            found[name] = int(rest.split()[0])
    return found


def lines_of(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("*.journal"))
        for line in path.read_text().splitlines()
    ]


async def test_only_committed_transactions_are_journalled_with_one_fsync_each(
    conn, settings, tmp_path, monkeypatch
):
    """The order against the commit: head recorded in the transaction, lines written after
    COMMIT. A rollback, a savepoint rolled back, and a COMMIT that fails journal nothing."""
    folder = tmp_path / "journal"
    shop = await make_shop(conn)
    with journal.journal_in(folder) as target:
        ada = await join(conn, settings, shop, "ada@example.org")
        tokens_before = await probes().journal_transaction_count(conn)
        assert lines_of(folder) == []  # sign-ups and confirmations are not journalled

        with pytest.raises(RuntimeError, match="changed my mind"):
            async with conn.transaction():
                await consent.unsubscribe(
                    conn, tenant_id=shop.tenant_id, subscriber_id=ada, topic_id=shop.news,
                    source="staff",
                )  # fmt: skip
                raise RuntimeError("changed my mind")
        assert lines_of(folder) == [] and [r async for r in probes().journal_heads(conn)] == []

        async with conn.transaction():
            try:
                async with conn.transaction():  # a savepoint, rolled back
                    await consent.unsubscribe(
                        conn, tenant_id=shop.tenant_id, subscriber_id=ada, topic_id=shop.news,
                        source="staff",
                    )  # fmt: skip
                    raise RuntimeError("not this one")
            except RuntimeError:
                pass
            await consent.unsubscribe(
                conn, tenant_id=shop.tenant_id, subscriber_id=ada, topic_id=shop.offers,
                source="preference_centre",
            )  # fmt: skip
        written = lines_of(folder)
        assert [(w["event"], w["topic"], w["seq"]) for w in written] == [
            ("withdraw_topic", shop.offers, 1)
        ]
        heads = [r async for r in probes().journal_heads(conn)]
        assert [(h["file"], h["last_seq"], bytes(h["head_hash"]).hex()) for h in heads] == [
            (target.name, 1, written[0]["hash"])
        ]
        # The committed transaction's token is in the database: the rolled-back ones are not.
        assert await probes().journal_transaction_count(conn) == tokens_before + 1
        assert await probes().journal_transaction_held(conn, token=uuid.UUID(written[0]["txn"]))

        # A COMMIT that fails (a deferred constraint): nothing journalled. Lines are numbered
        # only once their transaction committed, so the file goes on without a gap.
        await probes().make_commit_trap(conn)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            async with conn.transaction():
                await consent.unsubscribe(
                    conn, tenant_id=shop.tenant_id, subscriber_id=ada, topic_id=shop.news,
                    source="staff",
                )  # fmt: skip
                await probes().spring_commit_trap(conn)
        assert len(lines_of(folder)) == 1
        assert await probes().subscription_state(conn, subscriber_id=ada, topic_id=shop.news) == (
            "confirmed"
        )
        await consent.unsubscribe(
            conn, tenant_id=shop.tenant_id, subscriber_id=ada, topic_id=shop.news, source="staff"
        )
        assert [(w["seq"], w["topic"]) for w in lines_of(folder)] == [
            (1, shop.offers),
            (2, shop.news),
        ]
        assert journal.read_file(target.path).problems == []

        # A suppression list of 1,000 addresses: its lines go in one write per transaction.
        synced: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            synced.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        csv = tmp_path / "list.csv"
        csv.write_text("email\n" + "".join(f"gone{i}@example.net\n" for i in range(1000)))
        result = await suppression_lists.import_file(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id, path=csv,
            reason="hard_bounce",
        )  # fmt: skip
        monkeypatch.undo()
        assert result.added == 1000
        new_lines = [w for w in lines_of(folder) if w["event"] == "suppress"]
        assert len(new_lines) == 1000
        batches = -(-1000 // suppression_lists.BATCH_ROWS)
        assert len(synced) == batches  # one per transaction, none per row


async def test_a_restore_is_brought_back_to_every_choice_made_since_the_backup(
    conn, db_dsn, empty_db_dsn, settings, aiohttp_client, tmp_path
):
    """Dump; then a topic unsubscribe (one-click, over HTTP), an unsubscribe from all
    marketing, a partner withdrawal, a suppression lifted by re-confirmation, three erasures
    and two suppressions; restore the dump; `optout journal reapply`: every state is back as it
    was before the restore, the three erased are absent from a new pg_dump, a second run
    changes nothing."""
    folder = tmp_path / "journal"
    shop = await make_shop(conn)
    tenant_key = tenant_hash_key(settings.hash_key, shop.tenant_id)
    with journal.journal_in(folder):
        one_click = await join(conn, settings, shop, "one.click@example.org")
        everything = await join(conn, settings, shop, "all.marketing@example.org")
        partner = await join(conn, settings, shop, "partner@example.org")
        await consent.set_partner_consent(
            conn, tenant_id=shop.tenant_id, subscriber_id=partner, granted=True,
            source="preference_centre",
        )  # fmt: skip
        returning = await join(conn, settings, shop, "returning@example.org", shop.news)
        await consent.unsubscribe_all_marketing(
            conn, tenant_id=shop.tenant_id, subscriber_id=returning, source="one_click"
        )
        erased = {
            n: await join(conn, settings, shop, f"erased{n}@example.org", shop.news)
            for n in range(3)
        }
        bounced = await join(conn, settings, shop, "bounced@example.org")
        bystander = await join(conn, settings, shop, "stays@example.org")
        major = await server_major(conn)
        backup = dump(db_dsn, major, tmp_path / "backup.dump")

        client = await aiohttp_client(create_app(settings))
        token = settings.keyring().sign(
            LinkClaims.issue(Purpose.ONE_CLICK, shop.tenant_id, one_click, shop.news)
        )
        response = await client.post(f"/u/{token}", data=ONE_CLICK)
        assert response.status == 200
        await consent.unsubscribe_all_marketing(
            conn, tenant_id=shop.tenant_id, subscriber_id=everything, source="preference_centre"
        )
        await consent.set_partner_consent(
            conn, tenant_id=shop.tenant_id, subscriber_id=partner, granted=False,
            source="partner_address",
        )  # fmt: skip
        again = await consent.subscribe(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id, topic_id=shop.news,
            email="returning@example.org", age_attested=True, source="web_form",
        )  # fmt: skip
        await consent.confirm(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id,
            subscriber_id=again.subscriber_id, topic_id=shop.news,
        )  # fmt: skip
        for subscriber_id in erased.values():
            await erasure.erase_subscriber(
                conn, tenant_id=shop.tenant_id, subscriber_id=subscriber_id, by="staff"
            )
        await consent.suppress(
            conn, tenant_id=shop.tenant_id,
            address_key=suppression_key(tenant_key, "bounced@example.org"), scope="all",
            reason="hard_bounce", source="bounce", subscriber_id=bounced,
        )  # fmt: skip
        await suppression_lists.suppress_address(
            conn, hash_key=settings.hash_key, tenant_id=shop.tenant_id,
            email="never.seen@example.net", reason="complaint", source="api",
        )  # fmt: skip
        wanted = await state(conn, shop)

    restore(backup, empty_db_dsn, major)
    restored = await connect(empty_db_dsn)
    try:
        assert await state(restored, shop) != wanted  # the restore brought them back

        first = reapply(empty_db_dsn, folder)
        assert first.returncode == 0, first.stderr
        assert first.stderr == ""
        assert counts(first.stdout) == {
            "withdraw_topic": 1 + 3,  # the one-click, and each erased person's one topic
            "withdraw_marketing": 1,
            "withdraw_partner": 1,
            "lift_suppression": 1,
            "suppress": 3 + 2,  # the erasures' suppressions, the bounce, the complaint
            "erase": 3,
        }
        assert await state(restored, shop) == wanted
        audited = [r async for r in probes().audit_of_action(restored, action="journal.reapply")]
        assert [(a["actor"], a["detail"]["changed"]["erase"]) for a in audited] == [("journal", 3)]
        people = {p["id"]: p for p in (await state(restored, shop))[0]}
        assert people[bystander]["topics"] == {
            str(shop.news): "confirmed",
            str(shop.offers): "confirmed",
        }
        assert people[returning]["topics"] == {str(shop.news): "confirmed"}

        text = plain_dump(empty_db_dsn, major, tmp_path / "after.sql")
        for n in range(3):
            assert f"erased{n}@example.org" not in text
            assert f"name of erased{n}@example.org" not in text
        assert "stays@example.org" in text  # the search does find what is there

        second = reapply(empty_db_dsn, folder)
        assert second.returncode == 0, second.stderr
        assert set(counts(second.stdout).values()) == {0}
        assert "total: 0 change(s)" in second.stdout
        assert await state(restored, shop) == wanted
        assert (
            len([r async for r in probes().audit_of_action(restored, action="journal.reapply")])
            == 1
        )
    finally:
        await restored.close()


async def test_an_edited_line_and_a_file_cut_short_are_reported_and_not_applied(
    conn, db_dsn, empty_db_dsn, settings, tmp_path
):
    """An edited line: it and the rest of its file are not applied, and `reapply` says so.
    A file shorter than the head the database recorded: reported as cut short."""
    folder = tmp_path / "journal"
    shop = await make_shop(conn)
    people = [await join(conn, settings, shop, f"p{n}@example.org", shop.news) for n in range(5)]

    async def leave(subscriber_id: int) -> None:
        await consent.unsubscribe(
            conn, tenant_id=shop.tenant_id, subscriber_id=subscriber_id, topic_id=shop.news,
            source="one_click",
        )  # fmt: skip

    with journal.journal_in(folder) as early:
        await leave(people[0])
        await leave(people[1])
    major = await server_major(conn)
    backup = dump(db_dsn, major, tmp_path / "backup.dump")  # records 2 lines of `early`
    with journal.journal_in(folder) as late:
        for subscriber_id in people[2:]:
            await leave(subscriber_id)

    # Cut `early` below what the backup recorded; edit the second line of `late`.
    early_lines = early.path.read_bytes().splitlines(keepends=True)
    early.path.write_bytes(early_lines[0])
    late_lines = late.path.read_text().splitlines(keepends=True)
    edited = json.loads(late_lines[1])
    edited["subscriber"] = people[0]
    late_lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":")) + "\n"
    late.path.write_text("".join(late_lines))

    restore(backup, empty_db_dsn, major)
    (tmp_path / "reapply-journal").mkdir()
    restored = await connect(empty_db_dsn)
    try:
        ran = reapply(empty_db_dsn, tmp_path / "reapply-journal", folder)
        assert ran.returncode == 1
        problems = ran.stderr.splitlines()
        assert any(
            late.name in p
            and "line 2 (seq 2) was edited" in p
            and "2 line(s) from there on were not applied" in p
            for p in problems
        ), problems
        assert any(
            early.name in p and "cut short" in p and "recorded seq 2" in p and "end at seq 1" in p
            for p in problems
        ), problems
        assert counts(ran.stdout)["withdraw_topic"] == 1  # the intact line before the edit
        states = [
            await probes().subscription_state(restored, subscriber_id=s, topic_id=shop.news)
            for s in people
        ]
        assert states == ["unsubscribed", "unsubscribed", "unsubscribed", "confirmed", "confirmed"]
    finally:
        await restored.close()


async def test_concurrent_one_click_opt_outs_are_each_journalled_once_in_one_chain(
    conn, settings, aiohttp_client, tmp_path
):
    """Many one-click POSTs at once through the web face's pool: every acknowledged opt-out
    is on disk in one unbroken chain whose head the database recorded (transactions that
    commit during an fsync share the next one)."""
    folder = tmp_path / "journal"
    shop = await make_shop(conn)
    people = [await join(conn, settings, shop, f"c{n}@example.org", shop.news) for n in range(40)]
    with journal.journal_in(folder) as target:
        client = await aiohttp_client(create_app(settings))
        keyring = settings.keyring()

        async def click(subscriber_id: int) -> int:
            token = keyring.sign(
                LinkClaims.issue(Purpose.ONE_CLICK, shop.tenant_id, subscriber_id, shop.news)
            )
            response = await client.post(f"/u/{token}", data=ONE_CLICK)
            status: int = response.status
            return status

        statuses = await asyncio.gather(*(click(s) for s in people))
        assert set(statuses) == {200}
        check = journal.read_file(target.path)
        # The answers wait for the fsync, not for the head's record, which may lag a little.
        await client.app[ONE_CLICK_BATCHER].idle()
        assert check.problems == []
        assert sorted(e.subscriber_id or 0 for e in check.entries) == sorted(people)
        assert [e.seq for e in check.entries] == list(range(1, len(people) + 1))
        heads = [r async for r in probes().journal_heads(conn)]
        assert [(h["file"], h["last_seq"], bytes(h["head_hash"])) for h in heads] == [
            (target.name, len(people), check.hashes[len(people)])
        ]


async def test_reapply_of_a_missing_folder_is_one_clear_line_and_changes_nothing(
    conn, db_dsn, settings, tmp_path
):
    shop = await make_shop(conn)
    await join(conn, settings, shop, "ada@example.org")
    before = await state(conn, shop)
    (tmp_path / "journal").mkdir()
    ran = reapply(db_dsn, tmp_path / "journal", tmp_path / "nowhere")
    assert ran.returncode == 2
    assert ran.stderr.splitlines() == [f"optout: journal: {tmp_path / 'nowhere'}: no such folder"]
    assert ran.stdout == ""
    assert await state(conn, shop) == before


async def test_lines_of_a_tenant_this_database_does_not_hold_are_reported_not_applied(
    conn, db_dsn, settings, tmp_path
):
    """Another installation's journal mixed in (or a tenant the backup predates)."""
    shop = await make_shop(conn)
    await join(conn, settings, shop, "ada@example.org")
    before = await state(conn, shop)
    folder = tmp_path / "journal"
    stranger = journal.Journal(folder)
    event = journal.JournalEvent(shop.tenant_id + 1000, None, "suppress", (b"k" * 32,), scope="all")
    stranger.write([event], dt.datetime.now(dt.UTC), uuid.uuid4().hex)
    ran = reapply(db_dsn, folder)
    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [
        f"optout journal: {stranger.name}: seq 1-1 name tenant {shop.tenant_id + 1000}, which "
        "this database does not hold; not applied"
    ]
    assert "total: 0 change(s)" in ran.stdout
    assert await state(conn, shop) == before


async def test_a_one_click_batch_is_one_transaction_of_many_lines_and_is_reapplied(
    conn, db_dsn, empty_db_dsn, settings, tmp_path
):
    """A micro-batch of one-clicks (mailer.consent.link_batch) is one journal transaction
    holding a line per opt-out, of two tenants; after a restore of a backup that predates the
    second tenant, `reapply` brings back the first tenant's opt-outs and reports the line of
    the tenant it does not hold (as for any stranger's line); a second run changes nothing
    more."""
    folder = tmp_path / "journal"
    shop = await make_shop(conn)
    people = [await join(conn, settings, shop, f"b{n}@example.org", shop.news) for n in range(5)]
    major = await server_major(conn)
    backup = dump(db_dsn, major, tmp_path / "backup.dump")
    later = await tenants.create_tenant(
        conn, "later", name="Later", sender_address="news@later.example.com",
        postal_address="2 Main Street, Springfield",
    )  # fmt: skip
    later_topic = (
        await tenants.create_topic(conn, later["id"], slug="news", name="news", kind="marketing")
    )["id"]
    joined = await consent.subscribe(
        conn, hash_key=settings.hash_key, tenant_id=later["id"], topic_id=later_topic,
        email="new@example.org", age_attested=True, source="import", confirmed=True,
        lawful_basis="consent",
    )  # fmt: skip
    newcomer = joined.subscriber_id
    asks = [
        consent.LinkOptOut(shop.tenant_id, p, shop.news, "one_click", consent.Evidence())
        for p in people
    ]
    stranger = consent.LinkOptOut(
        later["id"], newcomer, later_topic, "one_click", consent.Evidence()
    )
    asks.insert(2, stranger)
    pool = await create_pool(db_dsn, min_size=0)
    try:
        with journal.journal_in(folder) as target:
            answers = await consent.unsubscribe_from_links_pooled(
                lambda: pool_connection(pool), asks
            )
    finally:
        await pool.close()
    assert [a is not None and a["changed"] for a in answers] == [True] * 6
    check = journal.read_file(target.path)
    assert check.problems == []
    assert len({e.txn for e in check.entries}) == 1 and len(check.entries) == 6
    wanted = await state(conn, shop)

    restore(backup, empty_db_dsn, major)
    restored = await connect(empty_db_dsn)
    try:
        assert await state(restored, shop) != wanted
        first = reapply(empty_db_dsn, folder)
        assert first.returncode == 1
        assert first.stderr.splitlines() == [
            f"optout journal: {target.name}: seq 3-3 name tenant {later['id']}, which this "
            "database does not hold; not applied"
        ]
        assert counts(first.stdout)["withdraw_topic"] == len(people)
        assert await state(restored, shop) == wanted
        second = reapply(empty_db_dsn, folder)
        assert counts(second.stdout)["withdraw_topic"] == 0
        assert await state(restored, shop) == wanted
    finally:
        await restored.close()
