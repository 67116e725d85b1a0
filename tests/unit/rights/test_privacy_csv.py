"""Every CSV the project writes neutralises spreadsheet formulas (mailer.csv_safe)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from mailer.csv_safe import FORMULA_STARTS, csv_text, safe_cell


def test_cells_that_a_spreadsheet_would_run_get_a_leading_quote():
    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("+33 1 23") == "'+33 1 23"
    assert safe_cell("-2") == "'-2"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("\tx") == "'\tx"
    assert safe_cell("\rx") == "'\rx"
    assert safe_cell("ada@example.org") == "ada@example.org"
    assert safe_cell(None) == ""
    assert safe_cell(42) == "42"


@given(st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_no_written_cell_starts_a_formula_and_the_rest_round_trips(values):
    columns = [f"c{i}" for i in range(len(values))]
    text = csv_text(columns, [dict(zip(columns, values, strict=True))])
    [header, row] = list(csv.reader(io.StringIO(text, newline="")))
    assert header == columns
    for written, original in zip(row, values, strict=True):
        assert not written.startswith(FORMULA_STARTS)
        assert written == original or written == "'" + original
