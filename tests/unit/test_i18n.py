"""The catalogs and the choice of language (issue 19): every shipped language translates every
string the code and templates use, with no fuzzy entry, its placeholders intact, and its
compiled .mo up to date; Accept-Language is read as RFC 9110 says."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from mailer.i18n import LANGUAGES, SOURCE_LANGUAGE, choose, negotiate, supported, translations
from mailer.resources import LOCALE_DIR
from mailer.sending import compose
from mailer.sending.compose import one_stop

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def used_messages() -> set[str]:
    """Every msgid in code and templates, extracted as `./dev translations` does."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    keywords = dict(DEFAULT_KEYWORDS) | {"N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


@pytest.fixture(scope="module")
def messages() -> set[str]:
    found = used_messages()
    assert len(found) > 100, "the extraction found almost nothing: is babel.cfg read?"
    return found


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_used_string_is_translated_and_not_fuzzy(language, messages):
    """STANDARDS 62 (3.1.1): a page in a shipped language has no English left in Optout's own
    words; a new string without its translation fails here."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po)
    missing = sorted(m for m in messages if m not in catalog or not catalog[m].string)
    assert not missing, f"{path} lacks {missing}"
    fuzzy = sorted(m.id for m in catalog if m.id and m.fuzzy)
    assert not fuzzy, f"{path} has fuzzy entries {fuzzy}"
    for message in catalog:
        if message.id:
            assert set(PLACEHOLDER.findall(str(message.string))) == set(
                PLACEHOLDER.findall(str(message.id))
            ), f"{language}: placeholders differ in {message.id!r}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_matches_its_source(language):
    """The .mo files are committed (the wheel build needs no Babel); one older than its .po
    ships stale words. `./dev` recompiles it; this test catches a commit that forgot to."""
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as po:
        source = {m.id: m.string for m in read_po(po) if m.id and not m.fuzzy}
    with (folder / "messages.mo").open("rb") as mo:
        compiled = {m.id: m.string for m in read_mo(mo) if m.id}
    assert compiled == source, f"{folder}/messages.mo is stale: run ./dev translations"
    assert translations(language).gettext("Unsubscribe") == source["Unsubscribe"]


@given(st.text(max_size=200))
def test_any_accept_language_header_gives_a_shipped_language_or_none(header):
    assert negotiate(header) in (*LANGUAGES, None)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["de", "fr-CA", "es-419", "en-GB", "it", "pt-BR", "*"]),
            st.integers(min_value=0, max_value=1000),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda item: item[0],
    )
)
def test_the_highest_quality_shipped_language_wins(ranges):
    """RFC 9110 12.5.4: the q value orders the ranges; q=0 means "not this one"."""
    header = ", ".join(f"{tag};q={q / 1000:.3f}" for tag, q in ranges)
    shipped = [(q, -i, supported(tag)) for i, (tag, q) in enumerate(ranges) if supported(tag)]
    wanted = [item for item in shipped if item[0] > 0]
    expected = max(wanted)[2] if wanted else None
    assert negotiate(header) == expected


def test_choose_takes_the_first_shipped_language_then_english():
    assert choose("de-AT", "fr") == "de"
    assert choose(None, "it", "FR") == "fr"
    assert choose("xx", None) == SOURCE_LANGUAGE
    assert negotiate("it, pt;q=0.8") is None
    assert negotiate("fr;q=0, es;q=0.1") == "es"


@given(st.text(max_size=60))
def test_a_sentence_never_ends_with_two_periods(name):
    sentence = one_stop(f"You receive this because you subscribed to {name}.")
    assert not sentence.endswith("..") or name.endswith("..")
    assert sentence.rstrip(".") == f"You receive this because you subscribed to {name}".rstrip(".")


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "You receive this because you subscribed to Demo Newsletter Co."),
        ("de", "Sie erhalten diese Nachricht, weil Sie Demo Newsletter Co. abonniert haben."),
    ],
)
def test_the_footer_of_a_name_ending_in_a_period_reads_right(language, expected):
    """The demo tenant "Demo Newsletter Co." got "Co.." in its footer; now one period, in every
    language, with the message's Content-Language and its HTML part's lang."""
    sender = compose.Sender(
        from_name="Demo Newsletter Co.",
        from_address="news@demo.example",
        domain="demo.example",
        postal_address="1 Road, Town",
        list_id="News <news.demo.example>",
        feedback_id="1:1:1:optout",
    )
    prepared = compose.prepare(
        "newsletter",
        sender,
        "News",
        {"headline": "News", "intro": "Hi.", "blocks": []},
        language=language,
    )
    raw = prepared.render(
        compose.Recipient(
            to_address="ada@example.org",
            to_name="Ada",
            message_id="<c1.s1@demo.example>",
            unsubscribe_url="https://optout.test/u/T",
            mailto_unsubscribe="unsubscribe+abc@demo.example",
            preferences_url="https://optout.test/p/P",
        )
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Content-Language"] == language
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert expected in text.get_content()
    assert "Co.." not in text.get_content() and "Co.." not in html.get_content()
    assert f'<html lang="{language}">' in html.get_content()


def test_the_error_defaults_a_subscriber_may_see_are_the_errors_own_words():
    """The stand-ins for untranslated error messages are each kind's docstring (its default
    message), so the catalogs translate what the code would say."""
    from unsubscribe_web.errors import ERROR_DEFAULTS

    for kind, words in ERROR_DEFAULTS.items():
        assert (kind.__doc__ or "").strip() == words, kind
