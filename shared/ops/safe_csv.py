"""CSV that a spreadsheet opens as data: every CSV the service writes goes through
`SafeWriter`.

A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets, whatever the quoting: a student id
`=HYPERLINK("https://attacker.example","open me")` would become a live link in a teacher's
sheet. Such string cells get a leading `'` (OWASP, "CSV Injection"); numbers stay numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a `'` before a string a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """`csv.writer` whose rows are neutralized cell by cell (lines end with `\\n`)."""

    def __init__(self, out: SupportsWrite[str]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(cell) for cell in row])
