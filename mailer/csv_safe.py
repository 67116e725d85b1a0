"""The one CSV writer of the project: every cell that a spreadsheet would run as a formula is
neutralised with a leading single quote (OWASP "CSV injection").

Cells starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return are prefixed with
``'``; everything else is written as it is. Use ``write_csv`` or ``csv_text`` for every export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The text of one cell, neutralised when a spreadsheet would read it as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(out: TextIO, columns: Sequence[str], records: Iterable[Mapping[str, Any]]) -> int:
    """Write a header and one row per record (by column name); returns the number of rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in columns])
    count = 0
    for record in records:
        writer.writerow([safe_cell(record.get(c)) for c in columns])
        count += 1
    return count


def csv_text(columns: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    write_csv(out, columns, records)
    return out.getvalue()
