"""The file formats the product reads and writes, named once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import PurePosixPath

from .errors import InputFormatError


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"
    JSONL = "jsonl"
    PARQUET = "parquet"


_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": FileFormat.CSV,
    ".tsv": FileFormat.CSV,
    ".txt": FileFormat.CSV,
    ".xlsx": FileFormat.XLSX,
    ".xlsm": FileFormat.XLSX,
    ".json": FileFormat.JSON,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}


def format_from_name(name: str) -> FileFormat:
    """The format a file name's extension announces, or InputFormatError naming the accepted ones."""
    suffix = PurePosixPath(name).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        accepted = ", ".join(sorted(_EXTENSIONS))
        raise InputFormatError(
            f"{PurePosixPath(name).name!r} has an unsupported extension {suffix or '(none)'!r}; use one of {accepted}."
        ) from None


#: The sheet of a results workbook that holds its rows; more rows continue on ``results-2``, ``results-3``, ...
RESULTS_SHEET = "results"
#: The hidden sheet of a review workbook holding a drop-down list too long to write inline.
REVIEW_LISTS_SHEET = "review-lists"
#: The sheets a results workbook adds beside its rows: the run's figures and the review lists, not rows.
FIGURE_SHEETS = frozenset({"summary", "confusion", REVIEW_LISTS_SHEET})


def results_sheets(names: Iterable[str]) -> list[str]:
    """The sheets of a results workbook that hold its rows (``results``, ``results-2``, ...), in workbook order; the
    others (``summary``, ``confusion``) hold the run's figures, not rows to read back."""
    prefix = f"{RESULTS_SHEET}-"
    return [n for n in names if n == RESULTS_SHEET or (n.startswith(prefix) and n.removeprefix(prefix).isdigit())]


def data_sheets(names: Sequence[str]) -> list[str]:
    """The sheets to read when none is named: a results workbook's row sheets (its figure sheets left out), else
    every sheet."""
    rows = results_sheets(names)
    if rows and set(names) - set(rows) <= FIGURE_SHEETS:
        return rows
    return list(names)
