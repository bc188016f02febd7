"""Streaming writers for results tables: CSV, JSON, JSONL, XLSX and Parquet.

``write_table`` takes the column names and an iterable of row mappings and writes them one by one, so
memory does not grow with the number of rows (Parquet holds one batch of rows at a time, XLSX rows go
through openpyxl's write-only mode, which spools them to a temporary file).

Value handling, the same for every writer unless said otherwise:

- A key missing from a row, or ``None``, is an empty cell (``null`` in JSON, JSONL and Parquet).
- ``datetime``, ``date`` and ``time`` values become ISO 8601 strings (all formats, Parquet included).
- ``dict`` and ``list`` values stay JSON values in JSON and JSONL, and become compact JSON text elsewhere.
- Booleans are ``true`` / ``false`` wherever they are written as text.
- Spreadsheet formula injection: in CSV and XLSX a *string* starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return gets a leading single quote (see ``neutralise_formula``); numbers are never changed, and
  JSON, JSONL and Parquet keep strings as they are.
- XLSX: characters that XML 1.0 forbids (control characters other than tab, line feed and carriage return)
  are removed, strings are cut to Excel's 32,767 characters per cell, and more rows than one sheet holds
  raise ``OutputFormatError`` before anything is saved.

Parquet column types are inferred from the first batch of rows: a column whose non-empty values are all
booleans is ``bool``, all integers ``int64``, integers and floats ``double``, and anything else (text,
dates, JSON, or nothing but empty values) ``string``. When a later batch holds a value that does not fit
(text in an integer column, say), the column is widened (``int64`` to ``double`` for a float, otherwise to
``string``) and the rows already written are rewritten once, streaming, into a file with the wider schema;
a mixed column therefore never fails, and its numbers then appear as their text.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

from .errors import OutputFormatError
from .formats import FileFormat, format_from_name

__all__ = ["OUTPUT_EXTENSIONS", "neutralise_formula", "output_format_from_name", "write_table"]

#: The file extensions a results table can be written to.
OUTPUT_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".xlsx")

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SHEET_NAME = "results"
XLSX_MAX_CELL_CHARS = 32_767
XLSX_MAX_ROWS = 1_048_576  # rows in one Excel sheet, the header included
PARQUET_BATCH_ROWS = 10_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Row = Mapping[str, Any]
PathArg = str | os.PathLike[str]


# --- formats -------------------------------------------------------------------------------------------


def output_format_from_name(name: str) -> FileFormat:
    """The format a results file name announces, or OutputFormatError naming the accepted extensions.

    Stricter than reading: ``.tsv``/``.txt`` (we write commas) and ``.xlsm`` (no macros) are refused.
    """
    shown = PurePosixPath(name.replace("\\", "/")).name
    suffix = PurePosixPath(shown).suffix.lower()
    if suffix not in OUTPUT_EXTENSIONS:
        accepted = ", ".join(OUTPUT_EXTENSIONS)
        raise OutputFormatError(
            f"Cannot write results to {shown!r}: extension {suffix or '(none)'!r} is not supported; "
            f"use one of {accepted}."
        )
    return format_from_name(shown)


# --- values --------------------------------------------------------------------------------------------


def neutralise_formula(value: Any) -> Any:
    """Prefix a string that a spreadsheet would take for a formula with a single quote; return others as is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _json_default(value: Any) -> Any:
    """Make the values json cannot serialise on its own JSON-ready (dates as ISO text, sets as lists)."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _to_text(value: Any) -> str:
    """The text form of a non-empty value, used where a format holds text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return _compact_json(value)
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if _is_number(value):
        return str(value)
    return str(neutralise_formula(_to_text(value)))


def _xlsx_text(text: str) -> str:
    text = ILLEGAL_CHARACTERS_RE.sub("", text)
    return str(neutralise_formula(text))[:XLSX_MAX_CELL_CHARS]


def _xlsx_cell(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return _xlsx_text(_to_text(value))


def _json_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or Infinity
    return value


def _project(row: Row, columns: Sequence[str], cell: Callable[[Any], Any]) -> list[Any]:
    return [cell(row.get(column)) for column in columns]


# --- CSV, JSON, JSONL ----------------------------------------------------------------------------------


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow([_csv_cell(column) for column in columns])
        for row in rows:
            writer.writerow(_project(row, columns, _csv_cell))
            count += 1
    return count


def _json_objects(columns: Sequence[str], rows: Iterable[Row]) -> Iterator[str]:
    for row in rows:
        record = {column: _json_cell(row.get(column)) for column in columns}
        yield json.dumps(record, ensure_ascii=False, default=_json_default)


def _write_json(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write("[")
        for text in _json_objects(columns, rows):
            handle.write(",\n" if count else "\n")
            handle.write(text)
            count += 1
        handle.write("\n]\n" if count else "]\n")
    return count


def _write_jsonl(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> int:
    count = 0
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for text in _json_objects(columns, rows):
            handle.write(text + "\n")
            count += 1
    return count


# --- XLSX ----------------------------------------------------------------------------------------------


def _write_xlsx(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> int:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SHEET_NAME)
    bold = Font(bold=True)
    header = []
    for column in columns:
        cell = WriteOnlyCell(sheet, value=_xlsx_text(str(column)))
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    count = 0
    try:
        for row in rows:
            if count + 1 >= XLSX_MAX_ROWS:
                raise OutputFormatError(
                    f"Cannot write {path.name!r}: the results have more than {XLSX_MAX_ROWS - 1:,} rows, "
                    "more than an Excel sheet holds; write CSV, JSONL or Parquet instead."
                )
            sheet.append(_project(row, columns, _xlsx_cell))
            count += 1
    except BaseException:
        _discard_sheet(sheet)
        raise
    workbook.save(path)
    return count


def _discard_sheet(sheet: Any) -> None:
    """Close a write-only sheet that will not be saved and delete the temporary file it spools rows to."""
    with suppress(Exception):
        sheet.close()
    spool = getattr(sheet, "_writer", None)  # openpyxl keeps the spooled rows there until the save
    if spool is not None:
        with suppress(Exception):
            spool.cleanup()


# --- Parquet -------------------------------------------------------------------------------------------


class _Kind(StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"


_ARROW_TYPES: dict[_Kind, pa.DataType] = {
    _Kind.BOOL: pa.bool_(),
    _Kind.INT: pa.int64(),
    _Kind.FLOAT: pa.float64(),
    _Kind.STRING: pa.string(),
}


def _kind_of(value: Any) -> _Kind:
    if isinstance(value, bool):
        return _Kind.BOOL
    if isinstance(value, int):
        return _Kind.INT if _INT64_MIN <= value <= _INT64_MAX else _Kind.STRING
    if isinstance(value, float):
        return _Kind.FLOAT
    return _Kind.STRING


def _widen(kind: _Kind | None, value: Any) -> _Kind | None:
    """The narrowest kind holding both the values seen so far (``kind``) and ``value``."""
    if value is None or kind is _Kind.STRING:
        return kind
    found = _kind_of(value)
    if kind is None or kind is found:
        return found
    if {kind, found} == {_Kind.INT, _Kind.FLOAT}:
        return _Kind.FLOAT
    return _Kind.STRING


def _parquet_value(value: Any, kind: _Kind) -> Any:
    if value is None:
        return None
    if kind is _Kind.STRING:
        return _to_text(value)
    if kind is _Kind.FLOAT:
        return float(value)
    return value


class _ParquetSink:
    """A Parquet file written batch by batch, whose column types widen when a later value needs it."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self._path = path
        self._columns = list(columns)
        self._kinds: list[_Kind] = [_Kind.STRING] * len(self._columns)
        self._writer: pq.ParquetWriter | None = None

    def _schema(self) -> pa.Schema:
        return pa.schema([(c, _ARROW_TYPES[k]) for c, k in zip(self._columns, self._kinds, strict=True)])

    def _open(self, kinds: list[_Kind]) -> pq.ParquetWriter:
        self._kinds = kinds
        self._writer = pq.ParquetWriter(self._path, self._schema())
        return self._writer

    def _kinds_for(self, rows: Sequence[Row]) -> list[_Kind]:
        """The column kinds after seeing ``rows``: inferred on the first batch, widened afterwards."""
        started: list[_Kind | None] = list(self._kinds) if self._writer else [None] * len(self._columns)
        kinds = []
        for column, first in zip(self._columns, started, strict=True):
            kind = first
            for row in rows:
                kind = _widen(kind, row.get(column))
            kinds.append(kind or _Kind.STRING)
        return kinds

    def _append(self, writer: pq.ParquetWriter, rows: Sequence[Row]) -> None:
        arrays = [
            pa.array([_parquet_value(row.get(column), kind) for row in rows], type=_ARROW_TYPES[kind])
            for column, kind in zip(self._columns, self._kinds, strict=True)
        ]
        writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema()))

    def _rewrite(self, writer: pq.ParquetWriter, kinds: list[_Kind]) -> pq.ParquetWriter:
        """Copy what is written so far into a new file with wider column types, one batch at a time."""
        writer.close()
        previous = self._path.with_name(self._path.name + ".widening")
        os.replace(self._path, previous)
        try:
            new_writer = self._open(kinds)
            with pq.ParquetFile(previous) as source:
                for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                    self._append(new_writer, batch.to_pylist())
        finally:
            previous.unlink(missing_ok=True)
        return new_writer

    def write(self, rows: Sequence[Row]) -> None:
        kinds = self._kinds_for(rows)
        if self._writer is None:
            writer = self._open(kinds)
        elif kinds != self._kinds:
            writer = self._rewrite(self._writer, kinds)
        else:
            writer = self._writer
        self._append(writer, rows)

    def close(self) -> None:
        if self._writer is None:  # no rows at all: an empty file that still has the columns
            self._append(self._open(self._kinds), [])
        if self._writer is not None:
            self._writer.close()


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_parquet(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> int:
    sink = _ParquetSink(path, columns)
    count = 0
    try:
        for batch in _batches(rows, PARQUET_BATCH_ROWS):
            sink.write(batch)
            count += len(batch)
    finally:
        sink.close()
    return count


# --- entry point ---------------------------------------------------------------------------------------

_WRITERS: dict[FileFormat, Callable[[Path, Sequence[str], Iterable[Row]], int]] = {
    FileFormat.CSV: _write_csv,
    FileFormat.JSON: _write_json,
    FileFormat.JSONL: _write_jsonl,
    FileFormat.XLSX: _write_xlsx,
    FileFormat.PARQUET: _write_parquet,
}


def write_table(
    path: PathArg,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    fmt: FileFormat | None = None,
) -> int:
    """Write ``rows`` (only the keys in ``columns``, in that order) to ``path``; return how many rows.

    ``fmt`` defaults to the format the file extension announces (``OutputFormatError`` if unknown).
    """
    target = Path(path)
    chosen = fmt if fmt is not None else output_format_from_name(os.fspath(path))
    return _WRITERS[FileFormat(chosen)](target, list(columns), rows)
