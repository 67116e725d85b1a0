"""Bounces from every family of mail server (issue 23): each fixture's failed recipient,
status, whether the status was given or derived from the words, and whether it is final."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.inbound.bounce_parse import parse_bounce
from mailer.inbound.bounces.derive import derive_status

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bounces"

# fixture -> (reader, first recipient, status, derived, permanent); every one here is final.
# "" as recipient: the notice names nobody, the VERP address names the delivery.
FAMILIES: dict[str, tuple[str, str, str, bool, bool]] = {
    "flufl/aol_01.eml": ("flufl", "screenname@aol.com", "5.7.1", True, True),
    "flufl/dsn_02.eml": ("dsn", "/S=zzzzz/OU=example/PRMD=UK.AC/ADMD=", "4.4.7", False, False),
    "flufl/dsn_12.eml": ("dsn", "userx@example.jp", "5.1.1", False, True),
    "flufl/dumbass_01.eml": ("notice", "", "4.4.7", True, False),
    "flufl/exim_01.eml": ("flufl", "userx@its.example.nl", "5.1.1", False, True),
    "flufl/groupwise_01.eml": ("exchange", "userx@example.EDU", "5.1.1", True, True),
    "flufl/hotpop_01.eml": ("flufl", "userx@example.com", "5.2.2", True, True),
    "flufl/microsoft_01.eml": ("exchange", "userx@example.COM", "5.1.1", True, True),
    "flufl/microsoft_02.eml": ("exchange", "userx@example.COM", "5.1.1", True, True),
    "flufl/newmailru_01.eml": ("flufl", "zzzzz@newmail.ru", "5.2.2", True, True),
    "flufl/postfix_01.eml": ("flufl", "xxxxx@local.ie", "5.1.1", False, True),
    "flufl/postfix_04.eml": ("flufl", "userx@mail1.example.com", "5.2.2", True, True),
    "flufl/postfix_05.eml": ("flufl", "userx@example.net", "5.0.0", True, True),
    "flufl/qmail_01.eml": ("flufl", "userx@example.de", "5.0.0", True, True),
    "flufl/qmail_03.eml": ("flufl", "userx@example.jp", "5.1.1", False, True),
    "flufl/qmail_05.eml": ("flufl", "userx@example.com", "5.1.1", True, True),
    "flufl/qmail_06.eml": ("flufl", "ntl@xxx.com", "5.2.2", True, True),
    "flufl/sendmail_01.eml": ("flufl", "zzzzz@nfg.nl", "5.0.0", True, True),
    "flufl/simple_11.eml": ("lotus_notes", "userx@example.com", "5.1.1", True, True),
    "flufl/simple_34.eml": ("exchange", "roland@example.com", "5.1.1", False, True),
    "flufl/simple_41.eml": ("exchange", "userx@example.com", "5.1.1", True, True),
    # Status: 5.0.0 made specific by Gmail's own "550-5.7.1" in the Diagnostic-Code.
    "flufl/simple_42.eml": ("dsn", "david...@gmail.com", "5.7.1", False, True),
    "flufl/simple_43.eml": ("notice", "", "5.1.1", True, True),
    "flufl/smtp32_06.eml": ("flufl", "Absolute_garbage_addr@example.net", "5.3.0", False, True),
    "flufl/yahoo_02.eml": ("flufl", "userx@example.es", "5.2.2", True, True),
    "flufl/yahoo_03.eml": ("flufl", "userx@example.com", "5.1.1", True, True),
    "flufl/yahoo_11.eml": ("flufl", "bad_user@aol.com", "5.1.1", False, True),
    # Mail::DeliveryStatus::BounceParser 1.543's t/corpus (Debian's source package).
    "bounceparser/domino.unknown.eml": (
        "lotus_notes", "recipient@example.net", "5.1.1", True, True,
    ),
    "bounceparser/exchange.unknown.eml": ("exchange", "RECIPIENT@EXAMPLE.NET", "5.1.1", True, True),
    # Gmail's own reply, relayed by Sendmail 8.13: "550 5.7.1 No such user"; the given code wins.
    "bounceparser/gmail-via-sendmail.unknown.eml": (
        "dsn", "recipient@example.net", "5.7.1", False, True,
    ),
    "bounceparser/hotmail-via-sendmail.unknown.eml": (
        "dsn", "recipient@example.net", "5.1.1", False, True,
    ),
    # Status 5.0.0 is the MTA's placeholder when the remote's reply has no code: the reply's
    # words give the cause ("mailbox unavailable", "account has been disabled", "refused by").
    "bounceparser/iis-multiple-bounce.eml": ("dsn", "bounced1@example.net", "5.1.1", True, True),
    "bounceparser/message-too-large.eml": ("dsn", "john.smith@eu.a.b.c", "5.2.3", False, True),
    "bounceparser/sendmail-host-unknown.eml": (
        "dsn", "recipient@#example.net", "5.1.2", False, True,
    ),
    "bounceparser/spam-rejection33.eml": ("dsn", "john.smith@sample.ac.uk", "5.7.1", True, True),
    "bounceparser/yahoo-via-sendmail.unknown.eml": (
        "dsn", "recipient@example.net", "5.1.1", True, True,
    ),
    # bounced 0.3.0's copy of the bounce_email test set (PyPI).
    # Exchange 5.5's MTA names the recipient by display name only: the VERP names the delivery.
    "bounced/tt_bounce_11.eml": ("exchange", "", "5.0.0", True, True),
    "bounced/tt_bounce_13.eml": ("dsn", "ilzeB@lvaei.lv", "5.2.2", False, True),
    "bounced/tt_bounce_15.eml": ("dsn", "info@rimibaltic.com", "5.0.0", False, True),
    # Gmail (2005): "Delivery to the following recipient failed permanently", no reason given.
    "bounced/tt_bounce_21.eml": ("flufl", "kasparsramins@gmail.com", "5.0.0", True, True),
    "bounced/tt_bounce_22.eml": ("flufl", "flughafentransfer@loackertours.at", "5.7.1", True, True),
    "bounced/tt_bounce_24.eml": (
        "dsn", "customer.testemail@test-receive-domain.se", "5.1.1", False, True,
    ),
    "bounced/undeliverable_gmail.eml": ("flufl", "undeliverable@coupa.com", "5.0.0", True, True),
    "synthetic/amazon_ses_sendbounce_mailbox_full.eml": (
        "dsn", "mailbox-full-fixture@ses-fixture.example", "5.2.2", False, True,
    ),
    "synthetic/james_remote_delivery_unknown_user.eml": (
        "apache_james", "jdoe-fixture@james-fixture.example", "5.1.1", False, True,
    ),
    "synthetic/softbank_iso2022jp_unknown_user.eml": (
        "japanese_carrier", "jiro-fixture@softbank.ne.jp", "5.1.1", True, True,
    ),
    "synthetic/au_iso2022jp_mailbox_full.eml": (
        "japanese_carrier", "taro-fixture@ezweb.ne.jp", "5.2.2", True, True,
    ),
    "synthetic/docomo_iso2022jp_unknown_user.eml": (
        "japanese_carrier", "hanako-fixture@docomo.ne.jp", "5.1.1", True, True,
    ),
    "synthetic/opensmtpd_550_unknown_user.eml": (
        "opensmtpd", "mwhite@example.net", "5.1.1", True, True,
    ),
}  # fmt: skip
# Captured from the MTAs themselves (capture/capture.sh; MTA and version in the name). Exim
# and OpenSMTPD write "Status: 5.0.0": the remote's code is read from their own reply text.
# Sendmail and Courier write the remote's code in the Status field or the Diagnostic-Code.
for _mta in (
    "courier-1.0.16",
    "exim-4.96",
    "opensmtpd-6.8.0p2",
    "postfix-3.7.11",
    "sendmail-8.17.1.9",
):
    for _case, _status in (("unknown", "5.1.1"), ("full", "5.2.2"), ("refused", "5.7.1")):
        FAMILIES[f"captured/{_mta}-{_case}.eml"] = (
            "dsn", f"{_case}@example.net", _status, False, True,
        )  # fmt: skip
    # The same MTAs carrying large providers' replies as those publish them (final_hop.py):
    # Gmail's multi-line 550-5.1.1; Exchange Online's 5.1.10 (Sendmail puts its own "550 5.1.1
    # ... User unknown" in the Status field); GMX's codeless 554 block list, read from words.
    FAMILIES[f"captured/{_mta}-gmail-unknown.eml"] = (
        "dsn", "gmail-unknown@example.net", "5.1.1", False, True,
    )  # fmt: skip
    FAMILIES[f"captured/{_mta}-office365-unknown.eml"] = (
        "dsn", "office365-unknown@example.net",
        "5.1.1" if _mta.startswith("sendmail") else "5.1.10", False, True,
    )  # fmt: skip
    FAMILIES[f"captured/{_mta}-gmx-blocked.eml"] = (
        "dsn", "gmx-blocked@example.net", "5.7.1", True, True,
    )  # fmt: skip


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_family_fixture_has_an_expectation():
    assert set(FAMILIES) == {str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.eml")}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_fixture_gives_recipient_status_and_finality(name):
    """Issue 23 items 1-2: recipient, status (given or derived, with its phrase), final."""
    reader, recipient, status, derived, permanent = FAMILIES[name]
    report = parse_bounce(load(name))
    assert (report.recognised, report.kind) == (True, reader)
    first = report.recipients[0]
    assert (first.recipient, first.status, first.derived) == (recipient, status, derived)
    assert first.final and first.permanent is permanent
    assert (first.phrase is not None) is derived


@pytest.mark.parametrize(
    "text, status, final",
    [
        ("Sorry, no mailbox here by that name.", "5.1.1", False),
        ("The user's mailbox is full", "5.2.2", False),
        ("Message size exceeds fixed maximum message size", "5.3.4", False),
        ("Rejected for policy reasons", "5.7.1", False),
        ("Message expired after 5 days in the queue", "4.4.7", True),
        ("450 user unknown", "4.1.1", False),  # a 4xx reply keeps its class: a soft bounce
        ("Postfach voll", "5.2.2", False),
        ("宛先不明", "5.1.1", False),
        ("Thank you for your message", None, None),
    ],
)
def test_derived_statuses_follow_the_stated_rules(text, status, final):
    """Issue 23 item 2: unknown user 5.1.1, mailbox full 5.2.2, too big 5.3.4, policy 5.7.1,
    expired 4.4.7 final; a temporary reply keeps its class."""
    derived = derive_status(text)
    assert (derived and derived.status, derived and derived.final) == (status, final)


def test_a_final_failure_with_a_temporary_status_is_soft_even_saying_user_unknown():
    """Issue 23: Postfix's "450 4.1.1 User unknown" in a final report is soft, not hard."""
    raw = (
        (FIXTURES / "synthetic" / "opensmtpd_550_unknown_user.eml")
        .read_bytes()
        .replace(b"550 sorry, no mailbox here by that name", b"450 4.1.1 User unknown, giving up")
    )
    [recipient] = parse_bounce(raw).recipients
    assert (recipient.status, recipient.derived, recipient.final) == ("4.1.1", False, True)
    assert recipient.permanent is False


def test_apache_james_names_each_failed_address_with_the_one_error_under_them():
    """James 2.x lists the addresses, then one reply for them all (and may skip "Below...")."""
    raw = (
        (FIXTURES / "synthetic" / "james_remote_delivery_unknown_user.eml")
        .read_bytes()
        .replace(
            b"jdoe-fixture@james-fixture.example\n550",
            b"jdoe-fixture@james-fixture.example\nkim-fixture@james-fixture.example\n550",
        )
    )
    report = parse_bounce(raw)
    assert report.kind == "apache_james"
    assert [(r.recipient, r.status, r.derived) for r in report.recipients] == [
        ("jdoe-fixture@james-fixture.example", "5.1.1", False),
        ("kim-fixture@james-fixture.example", "5.1.1", False),
    ]


def test_a_codeless_reply_is_read_from_its_words_never_from_the_address():
    """Issue 23 item 2: Status 5.0.0 over a reply with no code takes the reply's meaning
    (derived, with its phrase); a mailbox named "gmx-blocked" says nothing by its name."""
    raw = (FIXTURES / "captured" / "postfix-3.7.11-gmx-blocked.eml").read_bytes()
    [blocked] = parse_bounce(raw).recipients
    assert (blocked.status, blocked.derived, blocked.phrase) == ("5.7.1", True, "block list")
    silent = re.sub(rb"\s+is\s+block\s+listed", b"", raw)  # "554-IP address." then
    [unexplained] = parse_bounce(silent).recipients
    assert (unexplained.status, unexplained.derived) == ("5.0.0", False)
    assert unexplained.permanent


def test_words_of_the_original_message_quoted_inline_are_not_the_cause():
    """The newsletter's own "not spam" after "Below is a copy of the original message" is
    not why delivery failed: a codeless reply stays X.0.0."""
    raw = (FIXTURES / "captured" / "opensmtpd-6.8.0p2-gmx-blocked.eml").read_bytes()
    raw = re.sub(rb"\s+is\s+block\s+listed", b"", raw)
    raw = raw.replace(
        b"Below is a copy of the original message:",
        b"Below is a copy of the original message:\r\n\r\n"
        b"To: gmx-blocked@example.net\r\nThis is not spam: you subscribed.",
    )
    [recipient] = parse_bounce(raw).recipients
    assert (recipient.status, recipient.derived) == ("5.0.0", False)
