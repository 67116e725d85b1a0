"""A client's removal list is read row by row into keyed hashes: every valid address of the
``email`` column, whatever the other columns hold, and every bad row by its line number."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.addresses import suppression_key, tenant_hash_key
from mailer.errors import InvalidInput
from mailer.rights.removal_lists import read_removal_list
from tests.unit.test_addresses import addresses

KEY = tenant_hash_key(b"k" * 32, 7)
JUNK = st.sampled_from(["not an address", "@example.org", "a@", "a b@example.org", ""])
ROWS = st.lists(st.one_of(addresses.map(lambda a: (a, True)), JUNK.map(lambda j: (j, False))))
OTHER = st.text(alphabet='abc ,"\n', max_size=8)


def written(header: list[str], rows: list[list[str]]) -> io.StringIO:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return io.StringIO(out.getvalue(), newline="")


@settings(max_examples=60, deadline=None)
@given(ROWS, OTHER, st.booleans())
def test_every_valid_address_becomes_its_keyed_hash_and_each_bad_row_its_line(
    rows, other, email_first
):
    header = ["email", "note"] if email_first else ["note", "email"]
    cells = [[value, other] if email_first else [other, value] for value, _ in rows]
    found = list(read_removal_list(written(header, cells), KEY))
    # An empty cell is still a row (it has the other column), and is bad.
    assert len(found) == len(rows)
    assert [key for _, key in found] == [
        suppression_key(KEY, value) if good else None for value, good in rows
    ]
    lines = [line for line, _ in found]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)


@pytest.mark.parametrize(
    "text",
    ["", "name\nann@example.org\n", "email,email\nann@example.org,b@example.org\n"],
)
def test_a_file_without_one_email_column_is_refused(text):
    with pytest.raises(InvalidInput, match=r"email|empty"):
        list(read_removal_list(io.StringIO(text, newline=""), KEY))


def test_short_rows_and_broken_quotes_are_bad_lines():
    text = 'name,email\nann\nbob,bob@example.org\n"cy,cy@example.org\n'
    found = list(read_removal_list(io.StringIO(text, newline=""), KEY))
    assert found[0] == (2, None)
    assert found[1] == (3, suppression_key(KEY, "bob@example.org"))
    assert found[-1][1] is None
