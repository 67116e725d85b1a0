"""The journal file format: lines numbered and chained, read back exactly; any edited byte, any
cut, any rewrite is found, and nothing after the damage is handed out as intact."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer import journal

KEY = st.binary(min_size=32, max_size=32)
EVENT = st.builds(
    journal.JournalEvent,
    tenant_id=st.integers(1, 2**40),
    subscriber_id=st.one_of(st.none(), st.integers(1, 2**40)),
    event=st.sampled_from(sorted(journal.EVENTS)),
    keys=st.lists(KEY, min_size=1, max_size=3).map(tuple),
    topic_id=st.one_of(st.none(), st.integers(1, 10**6)),
    scope=st.sampled_from([None, "marketing", "all"]),
    reason=st.sampled_from([None, "erasure", "hard_bounce", "unsubscribe"]),
    source=st.sampled_from([None, "one_click", "bounce", "erasure"]),
)
TRANSACTIONS = st.lists(st.lists(EVENT, min_size=1, max_size=4), min_size=1, max_size=5)
WHEN = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def written(folder: Path, transactions: list[list[journal.JournalEvent]]) -> journal.Journal:
    target = journal.Journal(folder)
    for number, events in enumerate(transactions):
        target.write(events, WHEN + dt.timedelta(seconds=number), uuid.uuid4().hex)
    return target


@SETTINGS
@given(transactions=TRANSACTIONS)
def test_what_is_written_reads_back_intact_and_in_order(tmp_path_factory, transactions):
    target = written(tmp_path_factory.mktemp("j"), transactions)
    check = journal.read_file(target.path)
    flat = [e for events in transactions for e in events]
    assert check.problems == []
    assert [e.seq for e in check.entries] == list(range(1, len(flat) + 1))
    assert [(e.tenant_id, e.subscriber_id, e.event, set(e.keys)) for e in check.entries] == [
        (e.tenant_id, e.subscriber_id, e.event, set(e.keys)) for e in flat
    ]
    assert check.hashes[check.last_seq] == target.head
    assert journal.compare_with_head(check, target.seq, target.head) is None


@SETTINGS
@given(transactions=TRANSACTIONS, data=st.data())
def test_an_edited_byte_is_found_and_nothing_from_it_on_is_intact(
    tmp_path_factory, transactions, data
):
    target = written(tmp_path_factory.mktemp("j"), transactions)
    raw = bytearray(target.path.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1).filter(lambda i: raw[i] != ord("\n")))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b not in (raw[at], ord("\n"))))
    raw[at] = replacement
    target.path.write_bytes(bytes(raw))
    line = raw[:at].count(b"\n") + 1
    check = journal.read_file(target.path)
    assert len(check.problems) == 1
    assert f"line {line} " in check.problems[0]
    assert "not applied" in check.problems[0]
    assert [e.seq for e in check.entries] == list(range(1, line))


@SETTINGS
@given(transactions=TRANSACTIONS, data=st.data())
def test_a_file_cut_short_is_found_against_the_recorded_head(tmp_path_factory, transactions, data):
    target = written(tmp_path_factory.mktemp("j"), transactions)
    raw = target.path.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    target.path.write_bytes(raw[:cut])
    check = journal.read_file(target.path)
    problem = journal.compare_with_head(check, target.seq, target.head)
    assert problem is not None and "cut short" in problem
    assert f"recorded seq {target.seq}" in problem
    torn = not raw[:cut].endswith(b"\n") and cut > 0
    assert bool(check.problems) == torn  # a torn last line is reported on its own too


def test_a_rewritten_file_with_a_fresh_chain_differs_from_the_recorded_head(tmp_path):
    """Whoever rewrites the whole file, hashes included, cannot match what the database holds."""
    events = [
        journal.JournalEvent(1, n, "withdraw_topic", (bytes([n]) * 32,), topic_id=1)
        for n in (1, 2, 3)
    ]
    original = written(tmp_path, [events])
    recorded = (original.seq, original.head)
    forged = journal.Journal(tmp_path)
    forged.name, forged.path = original.name, original.path
    forged.seq, forged.head = 0, journal.genesis(original.name)
    original.path.unlink()
    forged.write([events[0], events[2], events[2]], WHEN, uuid.uuid4().hex)
    check = journal.read_file(original.path)
    assert check.problems == []  # the chain itself holds
    problem = journal.compare_with_head(check, *recorded)
    assert problem is not None and "rewritten" in problem


def test_lines_hold_ids_times_and_keyed_hashes_only(tmp_path):
    key = bytes(range(32))
    target = written(tmp_path, [[journal.JournalEvent(7, 9, "erase", (key,), reason="erasure")]])
    line = json.loads(target.path.read_text())
    assert set(line) == {
        "v", "seq", "prev", "txn", "time", "tenant", "subscriber", "event", "keys", "topic",
        "scope", "reason", "source", "hash",
    }  # fmt: skip
    assert line["keys"] == [key.hex()] and line["subscriber"] == 9
