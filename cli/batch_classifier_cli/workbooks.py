"""Which sheets of a workbook the commands read rows from."""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook

from batch_classifier.formats import results_sheets


def row_sheets(path: Path) -> list[str | None]:
    """The sheets holding a results workbook's rows (``results``, ``results-2``, ...), not its figures or the hidden
    list of a review workbook; any other file as a whole (``None``)."""
    if path.suffix.lower() != ".xlsx":
        return [None]
    try:
        book = load_workbook(path, read_only=True)
        names = list(book.sheetnames)
        book.close()
    except Exception:  # not a workbook: open_table says what is wrong with it
        return [None]
    return list(results_sheets(names)) or [None]
