"""The sub-processor register's input checks and its section in the policy text (STANDARDS 41):
whatever people type is either refused with one clear error or kept as one-line cells; the
section is embedded once, replaced in place on the next material change."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mailer.errors import InvalidInput
from mailer.rights import subprocessors
from mailer.rights.subprocessors import Entry

FIELDS = st.fixed_dictionaries(
    {"name": st.text(max_size=220), "purpose": st.text(max_size=520), "location": st.text()}
)


@given(st.lists(FIELDS, max_size=5))
def test_entries_are_one_line_cells_within_their_limits_or_refused(raw):
    """STANDARDS 41: a register row can never break the policy text's table."""
    try:
        entries = subprocessors.check_entries(raw)
    except InvalidInput as exc:
        assert exc.message and "\n" not in exc.message
        return
    for entry in entries:
        for key, limit in subprocessors.LIMITS.items():
            value = getattr(entry, key)
            assert 0 < len(value) <= limit and value == value.strip()
            assert "|" not in value and not any(ord(c) < 32 for c in value)
    assert len({e.name.lower() for e in entries}) == len(entries)


def test_a_company_listed_twice_or_half_filled_is_refused():
    row = {"name": "Relay Co", "purpose": "Sends mail", "location": "EU"}
    with pytest.raises(InvalidInput, match="listed twice"):
        subprocessors.check_entries([row, row | {"name": "relay co"}])
    with pytest.raises(InvalidInput, match="Entry 1 has no location"):
        subprocessors.check_entries([row | {"location": " "}])
    assert subprocessors.check_entries([{"name": "", "purpose": "", "location": ""}]) == []


@given(st.text(max_size=300))
def test_the_register_section_is_embedded_once_and_replaced_in_place(body):
    """STANDARDS 41: a second material change replaces the section, never adds another."""
    first = subprocessors.section([Entry("Host A", "Hosting", "Frankfurt, DE")], [])
    second = subprocessors.section(
        [Entry("Host B", "Hosting", "Paris, FR")], [Entry("Relay", "Mail", "EU")]
    )
    assume(subprocessors.SECTION_TITLE not in body)
    once = subprocessors.embed(body, first)
    twice = subprocessors.embed(once, second)
    assert twice.count(subprocessors.SECTION_TITLE) == 1
    assert "| Host B | Hosting | Paris, FR |" in twice and "| Relay | Mail | EU |" in twice
    assert subprocessors.embed(twice, second) == twice


def test_the_text_after_the_section_is_kept():
    body = (
        "# Policy\n\nIntro.\n\n## Companies that help provide the service\n\nold\n\n"
        "## Rights\n\nAsk us."
    )
    new = subprocessors.embed(body, subprocessors.section([Entry("X", "Y", "Z")], []))
    assert "old" not in new and "| X | Y | Z |" in new
    assert new.index("| X | Y | Z |") < new.index("## Rights") and new.endswith("Ask us.\n")
