"""Reading a client's removal list: a CSV file whose header names an ``email`` column (other
columns are ignored), each row's address turned into its keyed hash at once, so the address
itself is never kept. Pure: no database, no clock."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any, TextIO

from mailer.addresses import parse_address, suppression_key
from mailer.errors import InvalidAddress, InvalidInput


def read_removal_list(file: TextIO, tenant_key: bytes) -> Iterator[tuple[int, bytes | None]]:
    """(line number, keyed hash) for each data row; None for a row without a valid address
    (bad CSV, too few fields, not an address). Empty lines are skipped. InvalidInput when the
    header has no single ``email`` column."""
    reader = csv.reader(file, strict=True)
    column = _email_column(reader)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield reader.line_num, None
            continue
        if not row:
            continue
        try:
            if len(row) <= column:
                raise InvalidAddress()
            yield reader.line_num, suppression_key(tenant_key, parse_address(row[column]))
        except InvalidAddress:
            yield reader.line_num, None


def _email_column(reader: Any) -> int:
    try:
        names = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        raise InvalidInput("The file is empty.", field="file") from None
    except csv.Error as exc:
        raise InvalidInput(f"Line 1 is not valid CSV: {exc}.", field="file") from None
    if names.count("email") != 1:
        raise InvalidInput("The first line must be a header with one 'email' column.", field="file")
    return names.index("email")
