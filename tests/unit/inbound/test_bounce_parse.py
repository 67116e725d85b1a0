"""Tests for mailer.bounce_parse: real-world-shaped bounces in, bounce evidence out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailer.inbound.bounce_parse import BounceReport, parse_bounce, status_class, status_in_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dsn"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.eml"))
VERP = "bounces+abcdef234567@news.example.com"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# fixture -> (recognised, kind, [(recipient, action, status, permanent)], original Message-ID)
EXPECTED: dict[str, tuple[bool, str, list[tuple[str, str, str | None, bool]], str | None]] = {
    "postfix_5_1_1_user_unknown.eml": (
        True, "dsn", [("jdoe@example.net", "failed", "5.1.1", True)],
        "<c42.s1007@news.example.com>",
    ),
    "postfix_4_4_1_delayed.eml": (
        True, "dsn", [("asmith@slow.example", "delayed", "4.4.1", False)],
        "<c42.s1008@news.example.com>",
    ),
    "postfix_5_7_1_policy.eml": (
        True, "dsn", [("bwong@strict.example", "failed", "5.7.1", True)],
        "<c42.s1009@news.example.com>",
    ),
    "exim_dsn_5_1_1.eml": (
        True, "dsn", [("cjones@example.co.uk", "failed", "5.1.1", True)],
        "<c42.s1010@news.example.com>",
    ),
    "exim_classic_plain.eml": (
        True, "flufl", [("dkhan@oldisp.example", "failed", "5.1.1", True)],
        "<c42.s1011@news.example.com>",
    ),
    "office365_5_1_10_recipient_not_found.eml": (
        True, "dsn", [("evans@contoso.com", "failed", "5.1.10", True)],
        "<c42.s1012@news.example.com>",
    ),
    "exchange_5_4_1_access_denied.eml": (
        True, "dsn", [("fgarcia@fabrikam.com", "failed", "5.4.1", True)],
        "<c42.s1013@news.example.com>",
    ),
    "gmail_5_1_1_no_such_user.eml": (
        True, "dsn", [("grace.hopper.fixture@gmail.com", "failed", "5.1.1", True)],
        "<c42.s1014@news.example.com>",
    ),
    "gmail_4_2_2_over_quota_delayed.eml": (
        True, "dsn", [("hlamarr.fixture@gmail.com", "delayed", "4.2.2", False)],
        "<c42.s1015@news.example.com>",
    ),
    "yahoo_5_7_9_policy.eml": (
        True, "dsn", [("ilee@aol.com", "failed", "5.7.9", True)],
        "<c42.s1016@news.example.com>",
    ),
    # The classic Yahoo text carries only a basic 554 reply: no enhanced code to keep.
    "yahoo_plain_dd_no_account.eml": (
        True, "flufl", [("jmorris.fixture@yahoo.com", "failed", "5.1.1", True)],
        "<c42.s1017@news.example.com>",
    ),
    "qmail_plain.eml": (
        True, "flufl", [("knguyen@qmail.example", "failed", "5.1.1", True)],
        "<c42.s1018@news.example.com>",
    ),
    "sendmail_5_1_1_user_unknown.eml": (
        True, "dsn", [("lmartin@sendmail.example", "failed", "5.1.1", True)],
        "<c42.s1019@news.example.com>",
    ),
    "sendmail_4h_warning_delayed.eml": (
        True, "dsn", [("lmartin@sendmail.example", "delayed", "4.4.1", False)],
        "<c42.s1020@news.example.com>",
    ),
    "two_recipients_failed_and_delayed.eml": (
        True, "dsn",
        [
            ("mpatel@example.org", "failed", "5.1.1", True),
            ("nrossi@example.org", "delayed", "4.2.2", False),
        ],
        "<c42.s1021@news.example.com>",
    ),
    "eight_bit_header.eml": (
        True, "dsn", [("jürgen.fixture@example.de", "failed", "5.1.1", True)],
        "<c42.s1022@news.example.com>",
    ),
    "exchange_legacy_plain.eml": (
        True, "exchange", [("pwilson@legacy.example", "failed", "5.1.1", True)],
        "<c42.s1025@news.example.com>",
    ),
    # Issue 14: a version number is not a status ("Mailman v2.0.13", "2.0.12"); a final
    # failure with a 4.x.x cause is final (a soft bounce), not a delay.
    "dsn_no_status_mailman_version.eml": (
        True, "dsn", [("announce@lists.example.net", "failed", "5.0.0", True)],
        "<c42.s1026@news.example.com>",
    ),
    "exim_version_number_in_text.eml": (
        True, "flufl", [("ops@legacy-list.example", "failed", "5.0.0", True)],
        "<c42.s1027@news.example.com>",
    ),
    "postfix_failed_4_4_1_expired.eml": (
        True, "dsn", [("asmith@slow.example", "failed", "4.4.1", False)],
        "<c42.s1028@news.example.com>",
    ),
    "qmail_gave_up_4_4_2.eml": (
        True, "flufl", [("ovega@down.example", "failed", "4.4.2", False)],
        "<c42.s1029@news.example.com>",
    ),
    "no_delivery_status_part.eml": (False, "unrecognised", [], "<c42.s1023@news.example.com>"),
    "delivered_success.eml": (
        True, "dsn", [("qchen@example.net", "delivered", "2.0.0", False)],
        "<c42.s1024@news.example.com>",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "name, reply", [("dsn_no_status_mailman_version.eml", "550"),
                    ("exim_version_number_in_text.eml", "554")],
)  # fmt: skip
def test_a_version_number_is_never_a_status_but_the_reply_code_gives_a_class(name, reply):
    """STANDARDS 59 and issue 23: with no enhanced code, the bare reply code's class is the
    status (X.0.0), derived and saying so; "2.0.13" in the text never is."""
    [recipient] = parse_bounce(load(name)).recipients
    assert (recipient.status, recipient.derived, recipient.phrase) == ("5.0.0", True, reply)


def test_every_fixture_has_an_expectation():
    assert set(ALL_FIXTURES) == set(EXPECTED)
    assert len(ALL_FIXTURES) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_expected_evidence(name):
    """STANDARDS 47: Postfix, Exchange, Gmail (and more) DSNs parse to recipient, action, status."""
    recognised, kind, recipients, message_id = EXPECTED[name]
    report = parse_bounce(load(name))
    assert report.recognised is recognised
    assert report.kind == kind
    got = [(r.recipient, r.action, r.status, r.permanent) for r in report.recipients]
    assert got == recipients
    assert report.original_message_id == message_id
    if recognised:
        assert report.reason is None
    else:
        assert report.reason


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_delayed_or_4xx_is_never_permanent(name):
    """STANDARDS 48: a delayed action or a 4.x.x status never counts as a permanent failure."""
    for recipient in parse_bounce(load(name)).recipients:
        if recipient.action == "delayed" or status_class(recipient.status) == 4:
            assert not recipient.permanent
        if recipient.permanent:
            assert recipient.action == "failed"
            assert status_class(recipient.status) in (5, None)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_returned_message_maps_back_to_what_we_sent(name):
    report = parse_bounce(load(name))
    assert report.original_list_unsubscribe is not None
    assert report.original_list_unsubscribe.startswith("<https://news.example.com/u/")
    assert "<mailto:unsubscribe+" in report.original_list_unsubscribe
    assert report.original_return_path in (VERP, None)


def test_return_path_is_bare_verp_address_when_the_mta_returns_it():
    report = parse_bounce(load("postfix_5_1_1_user_unknown.eml"))
    assert report.original_return_path == VERP
    assert report.original_from == "news@news.example.com"
    assert report.reporting_mta == "mail.example.org"


def test_dsn_fields_lose_their_type_prefixes():
    recipient = parse_bounce(load("postfix_5_1_1_user_unknown.eml")).recipients[0]
    assert recipient.remote_mta == "mx.example.net"
    assert recipient.diagnostic == (
        "550 5.1.1 <jdoe@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )


def test_eight_bit_header_values_are_decoded_as_utf8():
    report = parse_bounce(load("eight_bit_header.eml"))
    assert report.recipients[0].diagnostic is not None
    assert "Empfänger" in report.recipients[0].diagnostic


def test_status_is_kept_exactly_even_when_three_digits():
    report = parse_bounce(load("office365_5_1_10_recipient_not_found.eml"))
    assert report.recipients[0].status == "5.1.10"
    assert report.recipients[0].remote_mta == "contoso-com.mail.protection.outlook.com"


def test_plain_text_bounce_keeps_its_explanation_as_diagnostic():
    recipient = parse_bounce(load("qmail_plain.eml")).recipients[0]
    assert recipient.diagnostic == (
        "<knguyen@qmail.example>: Sorry, no mailbox here by that name. (#5.1.1)"
    )


def test_plain_text_bounce_with_4xx_near_the_address_is_final_but_not_permanent():
    """STANDARDS 48: a 4.x.x code in a plain-text bounce is never permanent; but qmail sends
    this notice only once it has given up, so the failure is final (a soft bounce, issue 14),
    not a delay."""
    raw = (
        b"From: MAILER-DAEMON@q.example\nSubject: failure notice\n\n"
        b"Hi. This is the qmail-send program at q.example.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        b"<full@q.example>:\nRemote host said: 452 4.2.2 Mailbox full\n\n"
        b"--- Below this line is a copy of the message.\n\n"
        b"Message-ID: <c42.s1099@news.example.com>\n"
    )
    report = parse_bounce(raw)
    assert report.kind == "flufl"
    recipient = report.recipients[0]
    assert (recipient.action, recipient.status, recipient.permanent) == ("failed", "4.2.2", False)
    assert recipient.final
    assert report.original_message_id == "<c42.s1099@news.example.com>"


def test_plain_text_bounce_with_8bit_from_is_still_recognised():
    raw = load("yahoo_plain_dd_no_account.eml").replace(
        b"From: MAILER-DAEMON@yahoo.com",
        "From: Zustellsystem für Fehler <MAILER-DAEMON@yahoo.com>".encode(),
    )
    report = parse_bounce(raw)
    assert report.kind == "flufl"
    assert [r.recipient for r in report.recipients] == ["jmorris.fixture@yahoo.com"]


@pytest.mark.parametrize("raw", [b"Subject: hi\n\nhello", b"From: \xff\xfe\n\nhello", b""])
def test_non_bounce_is_reported_as_unknown_format_not_as_a_detector_crash(raw):
    report = parse_bounce(raw)
    assert not report.recognised
    assert report.reason is not None
    assert "no known bounce format" in report.reason


def test_dsn_without_delivery_status_says_why():
    report = parse_bounce(load("no_delivery_status_part.eml"))
    assert report.reason is not None
    assert "delivery-status" in report.reason
    assert report.original_return_path == VERP


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.1.1", 5),
        ("4.2.2", 4),
        ("2.0.0", 2),
        ("5.1.10", 5),
        ("5.100.999", 5),
        (" 4.4.1 (timeout)", 4),
        ("3.1.1", None),
        ("5.1", None),
        ("5.1.1000", None),
        ("550", None),
        ("", None),
        (None, None),
    ],
)
def test_status_class(status, expected):
    assert status_class(status) == expected


def _dsn(
    recipient_block: str, status_type: str = "message/delivery-status", cte: str = ""
) -> bytes:
    return (
        "From: MAILER-DAEMON@mta.example\n"
        "To: bounces+abcdef234567@news.example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nIt failed.\n\n"
        f"--b\nContent-Type: {status_type}\n{cte}\n"
        f"Reporting-MTA: dns; mta.example\n\n{recipient_block}\n"
        "--b--\n"
    ).encode()


def test_action_failed_with_4xx_status_is_not_permanent():
    """STANDARDS 48: a 4.x.x status is transient whatever the Action says."""
    report = parse_bounce(
        _dsn("Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 4.7.0\n")
    )
    assert report.recipients[0].action == "failed"
    assert report.recipients[0].permanent is False


def test_missing_action_is_inferred_from_status_and_missing_status_from_diagnostic():
    report = parse_bounce(
        _dsn(
            "Final-Recipient: rfc822; a@x.example\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"
        )
    )
    assert report.recognised
    recipient = report.recipients[0]
    assert (recipient.action, recipient.status, recipient.permanent) == ("failed", "5.1.1", True)


def test_opensmtpd_action_error_means_failed():
    report = parse_bounce(
        _dsn("Final-Recipient: rfc822;a@x.example\nAction: error\nStatus: 5.0.0\n")
    )
    assert report.recipients[0].action == "failed"


def test_global_delivery_status_is_read():
    block = "Final-Recipient: utf-8; ü@x.example\nAction: failed\nStatus: 5.1.1\n"
    report = parse_bounce(_dsn(block, status_type="message/global-delivery-status"))
    assert report.kind == "dsn"
    assert report.recipients[0].recipient == "ü@x.example"
    assert report.reporting_mta == "mta.example"


def test_base64_encoded_delivery_status_is_read():
    import base64

    body = "Reporting-MTA: dns; mta.example\n\nFinal-Recipient: rfc822; b@x.example\n"
    body += "Action: delayed\nStatus: 4.4.7\n"
    encoded = base64.encodebytes(body.encode()).decode()
    raw = (
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        f"{encoded}\n--b--\n"
    ).encode()
    report = parse_bounce(raw)
    assert [(r.recipient, r.action, r.status) for r in report.recipients] == [
        ("b@x.example", "delayed", "4.4.7")
    ]


def test_delivery_status_without_recipients_is_unrecognised_with_reason():
    report = parse_bounce(_dsn("Action: failed\nStatus: 5.1.1\n"))
    assert not report.recognised
    assert report.reason is not None
    assert "per-recipient" in report.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"just some text without headers\n\n\n",
        b"Content-Type: multipart/report; boundary=\n\n--\n--\n",
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all",
        b"Subject: \xe9\xe8\xff\nFrom: \xc3\x28 <@>\n\nbody",
        b"Content-Type: message/delivery-status\n\n" + b"Final-Recipient: rfc822\n" * 3,
        b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n" * 50,
    ],
)
def test_garbage_is_unrecognised_not_an_exception(raw):
    report = parse_bounce(raw)
    assert isinstance(report, BounceReport)
    if not report.recognised:
        assert report.kind == "unrecognised"
        assert report.reason


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_truncated_fixture_never_raises(name):
    raw = load(name)
    for cut in range(0, len(raw), max(1, len(raw) // 40)):
        assert isinstance(parse_bounce(raw[:cut]), BounceReport)


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
    report = parse_bounce(raw)
    assert isinstance(report, BounceReport)
    assert report.recognised or report.reason


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
    report = parse_bounce(raw)
    assert isinstance(report, BounceReport)
    for recipient in report.recipients:
        if status_class(recipient.status) == 4 or recipient.action == "delayed":
            assert not recipient.permanent


@FUZZ
@given(
    name=st.sampled_from(ALL_FIXTURES),
    offset=st.integers(min_value=0),
    junk=st.binary(min_size=1, max_size=64),
)
def test_fixtures_with_spliced_bytes_never_raise(name, offset, junk):
    raw = load(name)
    at = offset % (len(raw) + 1)
    assert isinstance(parse_bounce(raw[:at] + junk + raw[at:]), BounceReport)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_failed_is_final_and_delayed_is_not(name):
    """A final failure is final even when its cause is temporary; a delay never is."""
    for recipient in parse_bounce(load(name)).recipients:
        assert recipient.final is (recipient.action == "failed")
        if recipient.permanent:
            assert recipient.final


@pytest.mark.parametrize("name", ["postfix_failed_4_4_1_expired.eml", "qmail_gave_up_4_4_2.eml"])
def test_a_failure_given_up_on_with_a_4xx_cause_is_a_soft_final_failure(name):
    recipient = parse_bounce(load(name)).recipients[0]
    assert (recipient.action, recipient.final, recipient.permanent) == ("failed", True, False)
    assert status_class(recipient.status) == 4


@pytest.mark.parametrize(
    "text, status",
    [
        ("host mx said: 550 5.1.1 <a@b.example>: no such user", "5.1.1"),
        ("said: 550-5.7.1 blocked", "5.7.1"),
        ("Sorry, no mailbox here by that name. (#5.1.1)", "5.1.1"),
        ("<EXCH01.legacy.example #5.1.1>", "5.1.1"),
        ("GNU Mailman v2.0.13 delivery agent", None),
        ("upgraded to 2.0.12 last week", None),
        ("550 2.0.0 mismatched class is no status", None),
        ("version 5.1.1.2 of the agent", None),
        ("listening on 192.0.2.55", None),
    ],
)
def test_status_read_only_where_rfc_3463_puts_it(text, status):
    assert status_in_text(text) == status


# Prose around a dotted number: words, punctuation and the separators seen in real bounces.
_PROSE = st.lists(
    st.sampled_from([*"abcdefghij ABC.,;:()[]<>/-_#v\n", "Mailman ", "version ", "said: 550 "]),
    max_size=12,
).map("".join)
_DOTTED = st.builds(
    lambda parts: ".".join(str(p) for p in parts),
    st.lists(st.integers(0, 999), min_size=3, max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PROSE, _DOTTED, _PROSE)
def test_random_dotted_numbers_in_prose_are_never_a_status(before, dotted, after):
    """Issue 14: a dotted number in prose is never taken as an enhanced status code, in a
    Diagnostic-Code or a plain-text bounce; only one after a reply code of its class, or
    qmail's and Exchange's "#X.Y.Z", is."""
    text = before + dotted + after
    # The two places a status may sit: excluded from the prose on purpose.
    # (The DSN below puts the text after "550 ", as a Diagnostic-Code's reply code.)
    reply_context = re.search(r"(?<![\w.])[245]\d\d[ -]" + re.escape(dotted), "550 " + text)
    hash_context = "#" + dotted in text
    if reply_context or hash_context:
        return
    assert status_in_text(text) is None
    raw = (
        b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n"
        b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;"
        b" boundary=B\n\n--B\nContent-Type: text/plain\n\nfailed\n\n--B\n"
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        b"Final-Recipient: rfc822; who@example.org\nAction: failed\n"
        b"Diagnostic-Code: smtp; 550 " + text.replace("\n", " ").encode() + b"\n\n--B--\n"
    )
    recipient = parse_bounce(raw).recipients[0]
    assert recipient.permanent
    # Issue 23: a status may now be derived from the words or the reply code, never from the
    # dotted number, and it says it was derived.
    assert recipient.status is None or (
        recipient.derived and dotted not in (recipient.phrase or "")
    )
