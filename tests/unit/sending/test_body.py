"""Tests for mailer.sending.body through compose: a workspace body (Markdown or HTML) becomes
both MIME parts, merge fields take each recipient's values escaped, and a body without the
unsubscribe link, or with a template error, is refused with its line."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.sending import body, compose
from mailer.sending.compose import Recipient, Sender

SENDER = Sender(
    from_name="Acme News",
    from_address="news@news.example.com",
    domain="news.example.com",
    postal_address="Acme Inc.\n1 Main Street",
    list_id="Acme Newsletter <newsletter.acme.news.example.com>",
    feedback_id="c42:t7:newsletter:optout",
)
UNSUB = "https://news.example.com/u/TOKEN"
PREFS = "https://news.example.com/p/PREFS"
MARKDOWN = "# Hi {{ name }}\n\nNews for *you*.\n\n[Unsubscribe]({{ unsubscribe_url }})\n"


def recipient(name: str | None = "Ada") -> Recipient:
    return Recipient(
        to_address="ada@example.org",
        to_name=name,
        message_id="<c1.s1@news.example.com>",
        unsubscribe_url=UNSUB,
        mailto_unsubscribe="unsubscribe+ab12@news.example.com",
        preferences_url=PREFS,
        date="Mon, 01 Jun 2026 10:00:00 +0000",
    )


def parts(values: dict[str, str], name: str | None = "Ada") -> tuple[str, str]:
    raw = compose.prepare("campaign", SENDER, "Spring", values).render(recipient(name))
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert isinstance(html_part, EmailMessage) and isinstance(text_part, EmailMessage)
    # The parts travel with CRLF line ends; compare as text.
    return html_part.get_content(), text_part.get_content().replace("\r\n", "\n")


def test_markdown_becomes_html_and_a_generated_text_part_with_the_footer():
    """STANDARDS 26, 32: the unsubscribe link (from the body) and the postal address and
    preference link (from the layout) are in both parts."""
    html_text, text = parts({"format": "markdown", "body": MARKDOWN, "preheader": "Soon"})
    assert "<h1" in html_text and "Hi Ada</h1>" in html_text and "<em>you</em>" in html_text
    assert f'href="{UNSUB}"' in html_text and PREFS in html_text and "1 Main Street" in html_text
    assert '<div class="preheader"' in html_text and "Soon" in html_text
    assert text.startswith("Hi Ada\n\nNews for you.\n\n[Unsubscribe](" + UNSUB + ")")
    assert PREFS in text and "1 Main Street" in text


def test_an_edited_text_part_is_used_as_written_with_its_merge_fields():
    values = {"body": MARKDOWN, "text": "Hello {{ name }}, leave: {{ unsubscribe_url }}\n"}
    _, text = parts(values)
    assert text.startswith(f"Hello Ada, leave: {UNSUB}\n")


def test_an_html_body_is_kept_and_its_text_part_generated():
    html_body = '<p>Hi {{ name }}</p><p><a href="{{ unsubscribe_url }}">Leave</a></p>'
    html_text, text = parts({"format": "html", "body": html_body})
    assert "Hi Ada</p>" in html_text
    assert text.startswith(f"Hi Ada\n\n[Leave]({UNSUB})")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"body": "# Hi\n\nNo link.\n"}, "the body has no unsubscribe link"),
        ({"body": MARKDOWN, "text": "No link here.\n"}, "the text part has no unsubscribe link"),
        ({"body": "# Hi\n\n{{ name }\n"}, "body line 3: unexpected '}'"),
        ({"body": "{{ nickname }}\n"}, "body: 'nickname' is undefined; the merge fields are"),
        ({"body": "{{ name.__class__.__mro__ }}"}, "body"),
        ({"body": "", "format": "markdown"}, "the body is empty"),
        ({"body": MARKDOWN, "format": "docx"}, "the body format must be one of"),
    ],
)
def test_refused_bodies_name_what_is_wrong(values, message):
    with pytest.raises(body.BodyError) as refused:
        compose.prepare("campaign", SENDER, "Spring", values)
    assert message in refused.value.message


def test_the_sandbox_refuses_reaching_python_internals():
    """Staff input is untrusted (G9): no attribute walk out of the merge fields."""
    with pytest.raises(body.BodyError):
        compose.prepare(
            "campaign",
            SENDER,
            "Spring",
            {"body": "{{ ''.__class__.__mro__[1].__subclasses__() }}" + MARKDOWN},
        )


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40))
def test_any_name_is_text_in_the_html_part_and_as_given_in_the_text_part(name):
    """A recipient's name never becomes markup: it is escaped in HTML, verbatim in text; a
    blank name is no name, so the merge field is empty."""
    html_text, text = parts({"body": MARKDOWN}, name=name)
    if not name.strip():
        assert "Hi</h1>" in html_text and text.startswith("Hi\n")
        return
    assert f"Hi {_escaped(name)}</h1>" in html_text
    assert text.startswith(f"Hi {name}\n") or text.startswith(f"Hi {name.strip()}")


def _escaped(value: str) -> str:
    import html

    return html.escape(value)


def test_the_generated_text_keeps_merge_fields_for_the_editor():
    assert body.generated_text({"body": body.DEFAULT_BODY}) == (
        "Hello {{ name }}\n\nWrite your news here.\n\n"
        "[Unsubscribe]({{ unsubscribe_url }}) from these emails.\n"
    )
