"""The lawful-basis parser: every input is either one of the closed set or refused with one
line naming the allowed values; spelling variants of a member are that member."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.consent.imports import LAWFUL_BASES, check_lawful_basis
from mailer.errors import InvalidInput


@given(st.text(max_size=40))
def test_any_text_is_a_member_or_refused_in_one_line(text: str) -> None:
    try:
        basis = check_lawful_basis(text)
    except InvalidInput as exc:
        assert "\n" not in exc.message  # the text is quoted with repr: one line
        assert all(name in exc.message for name in LAWFUL_BASES)
        assert exc.field == "lawful_basis"
    else:
        assert basis in LAWFUL_BASES


@given(
    st.sampled_from(LAWFUL_BASES),
    st.sampled_from(["_", " ", "-", "  "]),
    st.booleans(),
    st.text(alphabet=" \t", max_size=3),
)
def test_spellings_of_a_member_are_that_member(
    basis: str, joiner: str, upper: bool, pad: str
) -> None:
    spelled = joiner.join(basis.split("_"))
    spelled = spelled.upper() if upper else spelled
    assert check_lawful_basis(pad + spelled + pad) == basis


@pytest.mark.parametrize("text", ["", "consent!", "legitimate", "vital_interests", "whatever"])
def test_outside_the_set_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="must be one of consent, contract"):
        check_lawful_basis(text)
