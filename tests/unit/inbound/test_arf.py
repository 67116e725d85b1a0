"""Tests for mailer.arf: ARF (RFC 5965) complaint reports in, complaint evidence out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.inbound.arf import ComplaintReport, parse_complaint

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "arf"
DSN_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dsn"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.eml"))
VERP = "bounces+abcdef234567@news.example.com"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# fixture -> expected field values (problems and valid included)
EXPECTED: dict[str, dict[str, object]] = {
    "yahoo_abuse_full.eml": {
        "valid": True,
        "problems": (),
        "feedback_type": "abuse",
        "user_agent": "Yahoo!-Mail-Feedback/2.0",
        "version": "1",
        "original_mail_from": VERP,
        "original_rcpt_to": "rtaylor.fixture@yahoo.com",
        "source_ip": "198.51.100.7",
        "arrival_date": "Tue, 11 Jun 2024 09:12:40 +0000",
        "original_message_id": "<c42.s1030@news.example.com>",
        "original_return_path": VERP,
        "original_to": "rtaylor.fixture@yahoo.com",
        "reported_domain": "news.example.com",
    },
    "redacted_recipient.eml": {
        "valid": True,
        "problems": (),
        "feedback_type": "abuse",
        "original_rcpt_to": "redacted@example-isp.net",
        "original_to": "redacted@example-isp.net",
        "original_message_id": "<c42.s1031@news.example.com>",
        "arrival_date": "Wed, 12 Jun 2024 22:01:07 +0000",
    },
    "headers_only.eml": {
        "valid": True,
        "problems": (),
        "feedback_type": "abuse",
        "original_rcpt_to": None,
        "original_to": None,
        "original_message_id": "<c42.s1032@news.example.com>",
        "original_return_path": VERP,
    },
    "missing_version_user_agent.eml": {
        "valid": False,
        "problems": ("User-Agent missing", "Version missing"),
        "feedback_type": "abuse",
        "user_agent": None,
        "version": None,
        "original_mail_from": VERP,
        "original_rcpt_to": "upton@smallisp.example",
        "source_ip": "198.51.100.7",
        "arrival_date": None,
        "original_message_id": "<c42.s1033@news.example.com>",
    },
    "not_spam.eml": {
        "valid": True,
        "feedback_type": "not-spam",
        "original_message_id": "<c42.s1034@news.example.com>",
    },
}


def test_every_fixture_has_an_expectation():
    assert set(ALL_FIXTURES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_complaint(name):
    """STANDARDS 49: fixture ARF reports parse; missing required fields still yield the rest."""
    report = parse_complaint(load(name))
    assert report.recognised
    for field, expected in EXPECTED[name].items():
        assert getattr(report, field) == expected, field


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_returned_headers_carry_the_unsubscribe_token(name):
    report = parse_complaint(load(name))
    assert report.original_list_unsubscribe is not None
    assert report.original_list_unsubscribe.startswith("<https://news.example.com/u/")
    assert "<mailto:unsubscribe+" in report.original_list_unsubscribe


def _arf(fields: str, third: str = "Content-Type: message/rfc822\n\nMessage-ID: <m@x>\n") -> bytes:
    return (
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nA complaint.\n\n"
        f"--b\nContent-Type: message/feedback-report\n\n{fields}\n"
        f"--b\n{third}\n--b--\n"
    ).encode()


def test_duplicated_required_field_is_a_problem():
    """STANDARDS 49: Feedback-Type, User-Agent and Version MUST appear exactly once."""
    report = parse_complaint(
        _arf("Feedback-Type: abuse\nFeedback-Type: fraud\nUser-Agent: x/1\nVersion: 1\n")
    )
    assert report.recognised
    assert not report.valid
    assert report.problems == ("Feedback-Type appears 2 times",)
    assert report.feedback_type == "abuse"


def test_wrong_version_is_a_problem():
    report = parse_complaint(_arf("Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 0.1\n"))
    assert not report.valid
    assert any("Version" in p for p in report.problems)


def test_missing_returned_message_is_a_problem():
    report = parse_complaint(
        _arf("Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\n", "Content-Type: text/plain\n\nx")
    )
    assert report.recognised
    assert not report.valid
    assert any("returned message" in p for p in report.problems)


def test_null_original_mail_from_is_none():
    report = parse_complaint(
        _arf("Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\nOriginal-Mail-From: <>\n")
    )
    assert report.valid
    assert report.original_mail_from is None
    assert report.original_message_id == "<m@x>"


def test_a_bounce_is_not_a_complaint():
    report = parse_complaint((DSN_FIXTURES / "postfix_5_1_1_user_unknown.eml").read_bytes())
    assert not report.recognised
    assert not report.valid
    assert report.problems == ("no message/feedback-report part",)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"Content-Type: multipart/report; report-type=feedback-report\n\nno boundary",
        b"Content-Type: message/feedback-report\n\n",
        b"Content-Type: message/feedback-report\nContent-Transfer-Encoding: base64\n\n!!!",
        b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/feedback-report"
        b"\n\nFeedback-Type: \xff\xfe\nVersion: \r\n\r\n--b",
    ],
)
def test_garbage_never_raises(raw):
    report = parse_complaint(raw)
    assert isinstance(report, ComplaintReport)
    assert report.valid is False
    assert report.problems


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_truncated_fixture_never_raises(name):
    raw = load(name)
    for cut in range(0, len(raw), max(1, len(raw) // 40)):
        report = parse_complaint(raw[:cut])
        assert isinstance(report, ComplaintReport)
        assert report.valid == (report.recognised and not report.problems)


# --- property tests ---

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER_LINE = re.compile(rb"^([A-Za-z][A-Za-z0-9-]*):[ \t]?(.*)$", re.M)
nasty_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from(["\r", "\n", ";", "<", ">", "=", ":", " "])
    ),
    max_size=80,
)


def replace_header_value(raw: bytes, index: int, value: bytes) -> bytes:
    matches = list(HEADER_LINE.finditer(raw))
    if not matches:
        return raw
    match = matches[index % len(matches)]
    return raw[: match.start(2)] + value + raw[match.end(2) :]


@FUZZ
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(raw):
    report = parse_complaint(raw)
    assert isinstance(report, ComplaintReport)
    assert report.valid or report.problems


@FUZZ
@given(
    name=st.sampled_from(ALL_FIXTURES),
    edits=st.lists(st.tuples(st.integers(min_value=0), nasty_text), max_size=4),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_mutated_fixtures_never_raise(name, edits, cut):
    raw = load(name)
    for index, value in edits:
        raw = replace_header_value(raw, index, value.encode("utf-8"))
    raw = raw[: int(len(raw) * cut)] if cut < 1.0 else raw
    report = parse_complaint(raw)
    assert isinstance(report, ComplaintReport)
    assert report.valid == (report.recognised and not report.problems)
