"""Tests for mailer.compose: rendered bytes parse as the message receivers expect."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import secrets
import shutil
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.errors import InvalidAddress, InvalidInput
from mailer.sending import compose
from mailer.sending.compose import (
    HeaderInjection,
    Recipient,
    Sender,
    TemplateError,
    prepare,
    prepare_transactional,
)

POSTAL = "Acme Inc.\n1 Main Street\nSpringfield, IL 62701"
TOKEN_200 = "T" * 100 + "k" * 100
UNSUB = f"https://news.example.com/u/{TOKEN_200}"
PREFS = "https://news.example.com/p/PREFTOKEN123"
MAILTO = "unsubscribe+ab12cd34@news.example.com"

SENDER = Sender(
    from_name="Acme News",
    from_address="news@news.example.com",
    domain="news.example.com",
    postal_address=POSTAL,
    list_id="Acme Newsletter <newsletter.acme.news.example.com>",
    feedback_id="c42:t7:newsletter:optout",
)

NEWSLETTER = {
    "headline": "Spring news & more",
    "intro": ["First paragraph.", "Second paragraph."],
    "blocks": [
        {"title": "A title", "body": "A body.", "link": "https://acme.example.com/a?x=1&y=2"},
        {"title": "No link", "body": ".", "link": ""},
    ],
}

POLICY = {
    "effective_date": "1 June 2026",
    "changes": ["We now name our sub-processors.", "Backups are kept 35 days."],
    "policy_url": "https://acme.example.com/policy",
}


BOB = Recipient(
    to_address="bob@example.org",
    to_name="Bob Example",
    message_id="<c42.s1007@news.example.com>",
    unsubscribe_url=UNSUB,
    mailto_unsubscribe=MAILTO,
    preferences_url=PREFS,
)


def recipient(**changes) -> Recipient:
    return dataclasses.replace(BOB, **changes)


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text is not None and html_part is not None
    # The parser keeps the CRLF line endings of the decoded quoted-printable.
    return (
        text.get_content().replace("\r\n", "\n"),
        html_part.get_content().replace("\r\n", "\n"),
    )


def header_block(raw: bytes, name: bytes) -> bytes:
    """The raw bytes of one header field, folded lines included."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"^" + name + rb":.*?(?=\r\n(?! ))", head, re.M | re.S | re.I)
    assert match
    return match.group(0)


@pytest.fixture(scope="module")
def newsletter() -> bytes:
    return prepare("newsletter", SENDER, "Spring news", NEWSLETTER).render(recipient())


def test_one_of_each_header(newsletter):
    """STANDARDS 1, 7: one List-Unsubscribe, one List-Unsubscribe-Post, one From/Date/Message-ID."""
    message = parse(newsletter)
    for name in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ):
        assert len(message.get_all(name) or []) == 1, name
    assert message["List-Id"] == SENDER.list_id
    assert message["Message-ID"] == "<c42.s1007@news.example.com>"
    assert message["Feedback-ID"] == SENDER.feedback_id


def test_list_unsubscribe_has_one_https_uri_and_the_mailto(newsletter):
    """STANDARDS 2: exactly one https URI, the mailto optional after it."""
    value = str(parse(newsletter)["List-Unsubscribe"])
    uris = re.findall(r"<([^>]*)>", value)
    assert uris == [UNSUB, f"mailto:{MAILTO}"]
    assert sum(uri.startswith("https:") for uri in uris) == 1


def test_list_unsubscribe_post_is_exact(newsletter):
    """STANDARDS 3: the single key/value pair."""
    assert parse(newsletter)["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_long_token_is_neither_folded_nor_encoded_inside_brackets(newsletter):
    """STANDARDS 4: a 200-character token keeps <https://...> whole and free of =?."""
    raw = header_block(newsletter, b"List-Unsubscribe")
    assert b"<https://" in raw
    assert b"=?" not in raw
    assert f"<{UNSUB}>".encode() in raw


def test_unsubscribe_header_folds_only_between_uris_when_too_long():
    """STANDARDS 4: past 998 octets the header folds at the comma, never inside <...>."""
    long_url = "https://news.example.com/u/" + "x" * 940
    raw = prepare("newsletter", SENDER, "S", NEWSLETTER).render(recipient(unsubscribe_url=long_url))
    block = header_block(raw, b"List-Unsubscribe")
    assert block == f"List-Unsubscribe: <{long_url}>,\r\n <mailto:{MAILTO}>".encode()
    assert re.findall(r"<([^>]*)>", str(parse(raw)["List-Unsubscribe"])) == [
        long_url,
        f"mailto:{MAILTO}",
    ]


def test_seven_bit_and_short_lines(newsletter):
    """STANDARDS 7, 57: every byte is 7-bit, no line over 998 octets, CRLF only."""
    assert max(newsletter) < 128
    lines = newsletter.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert b"\n" not in newsletter.replace(b"\r\n", b"")
    assert b"\r" not in newsletter.replace(b"\r\n", b"")
    body = newsletter.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def test_multipart_alternative_text_first_then_html(newsletter):
    message = parse(newsletter)
    assert message.get_content_type() == "multipart/alternative"
    subparts = list(message.iter_parts())
    assert [p.get_content_type() for p in subparts] == ["text/plain", "text/html"]
    for part in subparts:
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"


def test_both_parts_carry_address_and_links(newsletter):
    """STANDARDS 18, 26, 32: postal address, unsubscribe and preference links in both parts."""
    text, html_body = parts(parse(newsletter))
    for body in (text, html_body):
        for line in POSTAL.splitlines():
            assert line in body
        assert PREFS in body
    assert UNSUB in text
    assert f'href="{UNSUB}"' in html_body
    assert f'href="{PREFS}"' in html_body


def test_name_is_escaped_in_html_and_plain_in_text():
    raw = prepare("newsletter", SENDER, "S", NEWSLETTER).render(
        recipient(to_name="<script>alert(1)</script>")
    )
    message = parse(raw)
    text, html_body = parts(message)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_body
    assert "<script>" not in html_body
    assert "Hello <script>alert(1)</script>," in text
    assert message["To"].addresses[0].display_name == "<script>alert(1)</script>"


def test_campaign_values_are_escaped_in_html(newsletter):
    _, html_body = parts(parse(newsletter))
    assert "Spring news &amp; more" in html_body
    assert 'href="https://acme.example.com/a?x=1&amp;y=2"' in html_body


def test_non_ascii_subject_and_names_round_trip():
    sender = Sender(
        from_name="Ĺéa's Bücher",
        from_address="news@news.example.com",
        domain="news.example.com",
        postal_address=POSTAL,
        list_id="Bücher-Brief <buecher.news.example.com>",
        feedback_id="",
    )
    subject = "Grüße aus Zürich — 春のお知らせ " * 5
    raw = prepare("newsletter", sender, subject.strip(), NEWSLETTER).render(
        recipient(to_name="Zoë Ŝmith-Øre, Jr.")
    )
    assert max(raw) < 128
    message = parse(raw)
    assert message["Subject"] == subject.strip()
    assert message["From"].addresses[0].display_name == "Ĺéa's Bücher"
    assert message["To"].addresses[0].display_name == "Zoë Ŝmith-Øre, Jr."
    assert message["To"].addresses[0].addr_spec == "bob@example.org"
    assert message["List-Id"] == "Bücher-Brief <buecher.news.example.com>"
    assert "Feedback-ID" not in message
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n") if b"List-Unsubscribe:" not in line) <= 78


def test_body_line_with_a_single_dot_survives(newsletter):
    """STANDARDS 57: a "." line is kept intact by the quoted-printable body."""
    text, html_body = parts(parse(newsletter))
    assert "\n.\n" in text
    assert "<p>.</p>" in html_body or ">.</p>" in html_body
    assert b"\r\n.\r\n" not in newsletter  # encoded as =2E, harmless even before dot-stuffing


@pytest.mark.parametrize("nameless", [None, "", "   "])
def test_without_a_name_the_to_header_is_the_bare_address_and_the_greeting_has_no_gap(nameless):
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    raw = prepared.render(recipient(to_name=nameless))
    message = parse(raw)
    assert header_block(raw, b"To") == b"To: bob@example.org"
    text, html_body = parts(message)
    assert "\nHello,\n" in text and "Hello ," not in text and "bob@example.org," not in text
    assert re.search(r'class="greeting"[^>]*>Hello,\s*<', html_body)
    # The prepared message still greets the next named person by name.
    assert "Hello Bob Example," in parts(parse(prepared.render(recipient())))[0]


def test_per_recipient_values_differ_and_shared_parts_do_not():
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    one = parse(prepared.render(recipient(date="Mon, 01 Jun 2026 10:00:00 +0000")))
    two = parse(
        prepared.render(
            recipient(
                to_address="eve@example.net",
                to_name="Eve",
                message_id="<c42.s9@news.example.com>",
                unsubscribe_url="https://news.example.com/u/EVE",
                preferences_url="https://news.example.com/p/EVE",
            )
        )
    )
    assert one["Date"] == "Mon, 01 Jun 2026 10:00:00 +0000"
    assert two["Date"].datetime is not None
    assert two["To"].addresses[0].addr_spec == "eve@example.net"
    assert "https://news.example.com/u/EVE" in parts(two)[0]
    assert UNSUB not in parts(two)[1]
    assert one.get_boundary() == two.get_boundary()


def test_css_is_inlined(newsletter):
    _, html_body = parts(parse(newsletter))
    assert "<style" not in html_body
    assert re.search(r'<h1 style="[^"]*font-size: 24px', html_body)
    assert re.search(r'class="greeting" style="[^"]*font-weight: bold', html_body)


def test_missing_variable_names_template_and_line():
    values = {k: v for k, v in NEWSLETTER.items() if k != "headline"}
    with pytest.raises(TemplateError) as info:
        prepare("newsletter", SENDER, "S", values)
    # The text part renders first; its first line prints the headline.
    assert info.value.message == "newsletter.txt line 1: 'headline' is undefined"


def test_missing_variable_in_html_names_its_line():
    path = compose.TEMPLATE_DIR / "newsletter.html"
    line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if "{{ headline }}" in text
    )
    with pytest.raises(TemplateError, match=rf"^newsletter\.html line {line}: 'headline'"):
        compose._render("newsletter.html", {"subject": "S", "sender": SENDER, "recipient": {}})


def test_syntax_error_names_template_and_line(tmp_path, monkeypatch):
    shutil.copytree(compose.TEMPLATE_DIR, tmp_path / "email")
    (tmp_path / "email" / "broken.txt").write_text("fine\n{% if x %}\nno endif\n")
    (tmp_path / "email" / "broken.html").write_text("<p>x</p>\n")
    monkeypatch.setattr(compose, "TEMPLATE_DIR", tmp_path / "email")
    compose._environment.cache_clear()
    try:
        with pytest.raises(TemplateError, match=r"^broken\.txt line \d+: "):
            prepare("broken", SENDER, "S", {})
    finally:
        compose._environment.cache_clear()


def test_unknown_template():
    with pytest.raises(TemplateError, match="no email template"):
        prepare("nope", SENDER, "S", {})
    with pytest.raises(TemplateError, match="no email template"):
        prepare("../etc/passwd", SENDER, "S", {})


def test_missing_postal_address_is_refused():
    """STANDARDS 32: rendering fails without a configured postal address."""
    sender = Sender(
        "Acme", "news@news.example.com", "news.example.com", "  ", "L <l.example.com>", ""
    )
    with pytest.raises(TemplateError, match="postal address"):
        prepare("newsletter", sender, "S", NEWSLETTER)


def test_template_without_footer_is_refused(tmp_path, monkeypatch):
    """STANDARDS 26: a list-mail template must render the footer links in both parts."""
    shutil.copytree(compose.TEMPLATE_DIR, tmp_path / "email")
    (tmp_path / "email" / "bare.txt").write_text("{% include '_footer.txt' %}\n")
    (tmp_path / "email" / "bare.html").write_text("<p>{{ sender.postal_address }}</p>\n")
    monkeypatch.setattr(compose, "TEMPLATE_DIR", tmp_path / "email")
    compose._environment.cache_clear()
    try:
        with pytest.raises(TemplateError, match=r"bare\.html lacks the required footer"):
            prepare("bare", SENDER, "S", {})
    finally:
        compose._environment.cache_clear()


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: x@evil.example", "Hi\nthere", "a\x00b", "x" * 256])
def test_bad_subject_is_header_injection(subject):
    """G6: CR/LF, control characters and over-long subjects are refused."""
    with pytest.raises(HeaderInjection):
        prepare("newsletter", SENDER, subject, NEWSLETTER)


@pytest.mark.parametrize(
    "changes",
    [
        {"to_name": "Bob\r\nBcc: x@evil.example"},
        {"to_name": "Bob\x85"},
        {"to_address": "bob@example.org\r\nBcc: x@evil.example"},
        {"message_id": "<a@b>\r\nX: y"},
        {"unsubscribe_url": "https://x.example/u/a\nb"},
        {"to_name": "x" * 256},
    ],
)
def test_bad_recipient_values_are_header_injection(changes):
    """G6: per-recipient header values with line breaks are refused at render."""
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    with pytest.raises(HeaderInjection):
        prepared.render(recipient(**changes))


@pytest.mark.parametrize(
    "address", ["bob@example.org, eve@evil.example", "Bob <bob@example.org>", "bob@exämple.org"]
)
def test_to_address_must_be_one_plain_address(address):
    """G6: a second address cannot ride along in To; the domain is in its ASCII form."""
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    with pytest.raises(InvalidAddress):
        prepared.render(recipient(to_address=address))


def test_a_utf8_local_part_stands_in_to_as_stored():
    """STANDARDS 61: never down-converted; the transport sends it only with SMTPUTF8."""
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    raw = prepared.render(recipient(to_address="bö@example.org"))
    assert b"\r\nTo: Bob Example <b\xc3\xb6@example.org>\r\n" in raw


def test_bad_sender_name_is_header_injection():
    sender = Sender(
        "Acme\r\nBcc: x@evil.example",
        "news@news.example.com",
        "news.example.com",
        POSTAL,
        "L <l.example.com>",
        "",
    )
    with pytest.raises(HeaderInjection):
        prepare("newsletter", sender, "S", NEWSLETTER)
    assert issubclass(HeaderInjection, InvalidInput)


def test_non_https_unsubscribe_url_is_refused():
    """STANDARDS 2: the List-Unsubscribe URI must be https."""
    prepared = prepare("newsletter", SENDER, "S", NEWSLETTER)
    with pytest.raises(InvalidInput, match="https"):
        prepared.render(recipient(unsubscribe_url="http://news.example.com/u/x"))


def test_policy_notice_renders_with_its_footer():
    """STANDARDS 34, 26, 32: a notice keeps the List-* headers and the full footer."""
    raw = prepare("policy_notice", SENDER, "Our privacy policy changes", POLICY).render(recipient())
    message = parse(raw)
    text, html_body = parts(message)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for body in (text, html_body):
        assert "1 June 2026" in body
        assert "https://acme.example.com/policy" in body
        assert "Unsubscribe from policy notices" in body
        assert "1 Main Street" in body
        assert PREFS in body


def test_policy_notice_refuses_marketing_blocks():
    """STANDARDS 34: the notice template rejects marketing blocks."""
    with pytest.raises(TemplateError, match="policy notices cannot carry marketing content"):
        prepare("policy_notice", SENDER, "S", {**POLICY, "blocks": []})


def test_confirm_is_transactional():
    prepared = prepare_transactional("confirm", SENDER, "Please confirm", {"list_name": "News"})
    assert prepared.extra_slots == ("confirm_url",)
    confirm_url = "https://news.example.com/confirm/CONF&TOKEN"
    raw = prepared.render(
        Recipient(
            to_address="bob@example.org",
            to_name=None,
            message_id="<confirm.1@news.example.com>",
            unsubscribe_url="",
            mailto_unsubscribe="",
            preferences_url="",
            extra={"confirm_url": confirm_url},
        )
    )
    message = parse(raw)
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert name not in message
    text, html_body = parts(message)
    assert confirm_url in text
    assert 'href="https://news.example.com/confirm/CONF&amp;TOKEN"' in html_body
    assert max(raw) < 128


def test_confirm_without_its_link_is_refused():
    prepared = prepare_transactional("confirm", SENDER, "Please confirm", {})
    with pytest.raises(InvalidInput, match="confirm_url"):
        prepared.render(recipient())


def test_render_is_byte_identical_to_encoding_the_whole_part():
    """Line-by-line pre-encoding must equal quoted-printable of the whole rendered part."""
    message = parse(
        prepare("newsletter", SENDER, "S", NEWSLETTER).render(recipient(to_name="Zoë " * 40))
    )
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        reencoded = compose._qp(payload.decode("utf-8") + "\r\n")
        encoded = part.get_payload()
        assert isinstance(encoded, str)
        assert reencoded.rstrip(b"\r\n") == encoded.encode().rstrip(b"\r\n")


HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=255
)


@settings(max_examples=250, deadline=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT)
def test_any_subject_and_name_give_a_parseable_seven_bit_message(subject, name):
    raw = prepare("newsletter", SENDER, subject, NEWSLETTER).render(recipient(to_name=name))
    assert max(raw) < 128
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = parse(raw)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].addr_spec == "bob@example.org"
    # Python's address parser turns the folding between encoded words into a space (RFC 2047
    # decoders drop it) and may collapse runs of spaces, so compare names without whitespace.
    display_name = message["To"].addresses[0].display_name
    assert "".join(display_name.split()) == "".join(name.split())
    if len(name.encode()) <= 42 and "  " not in name and name.strip() == name:
        assert display_name == name
    assert not message.defects


def test_prepared_footer_path_is_the_repo_templates_dir():
    assert Path(compose.TEMPLATE_DIR).name == "email"
    assert (compose.TEMPLATE_DIR / "_footer.html").is_file()


def confirm_to(number: int) -> Recipient:
    return Recipient(
        to_address=f"person{number}@example.org",
        to_name=None,
        message_id=f"<confirm.{number}@news.example.com>",
        unsubscribe_url="",
        mailto_unsubscribe="",
        preferences_url="",
        extra={"confirm_url": f"https://news.example.com/confirm/C{number}"},
    )


def test_a_thousand_messages_leave_the_regex_cache_as_it_was():
    """A confirmation mail is prepared per sign-up, each with its own random slot marker: no
    pattern may be compiled from the marker, or a long-running server's re cache fills up with
    patterns never used again (the soak's RSS rose by that)."""
    prepare_transactional("confirm", SENDER, "Please confirm", {"list_name": "News"})
    cached = set(re._cache)  # type: ignore[attr-defined]
    for number in range(1000):
        prepared = prepare_transactional("confirm", SENDER, "Please confirm", {"list_name": "N"})
        assert f"/confirm/C{number}" in prepared.render(confirm_to(number)).decode()
    assert set(re._cache) - cached == set()  # type: ignore[attr-defined]


def test_content_holding_the_slot_marker_is_rendered_with_another_marker(monkeypatch):
    """The marker is random; if the content happens to hold it, the message is prepared again
    with a new one, and the content comes out as written."""
    clashing = "Q" + "AB" * 10 + "Q"
    markers = iter(["ab" * 10, "cd" * 10])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(markers, "ef" * n))
    values = {**NEWSLETTER, "headline": f"{clashing} {{not a slot}}"}
    text, html_body = parts(parse(prepare("newsletter", SENDER, "S", values).render(recipient())))
    assert f"{clashing} {{not a slot}}" in text
    assert f"{clashing} {{not a slot}}" in html_body
    assert "Bob Example" in text
