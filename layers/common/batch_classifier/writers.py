"""Streaming writers for results tables: CSV, JSON, JSONL, XLSX and Parquet.

Each format has one sink (:func:`open_sink`): it takes rows one by one and writes them to a :class:`Target`, a
local file or an S3 object, as a stream that is published only when the sink is closed (``abort()`` drops
it, so a failed table never leaves half a file). Memory does not grow with the number of rows: CSV, JSON and
JSONL are written as streams (JSON objects by orjson, CSV records built directly as ``csv.writer`` would
write them), Parquet holds one batch of rows at a time and writes it as a row group, and XLSX rows are
written as SpreadsheetML by :mod:`.xlsx_file`, which spools each sheet to a temporary file until the workbook
is saved into the target at close (the one format that uses local disk). :func:`write_table` writes an
iterable of rows to a local file through the same sinks.

Value handling, the same for every writer unless said otherwise:

- A key missing from a row, or ``None``, is an empty cell (``null`` in JSON, JSONL and Parquet).
- ``datetime``, ``date`` and ``time`` values become ISO 8601 strings (all formats, Parquet included).
- ``dict`` and ``list`` values stay JSON values in JSON and JSONL, and become compact JSON text elsewhere.
  JSON and JSONL objects are written compact (no space after ``:`` and ``,``).
- Booleans are ``true`` / ``false`` wherever they are written as text.
- Spreadsheet formula injection: in CSV and XLSX a *string* starting with ``=``, ``+``, ``-``, ``@``, tab or
  carriage return gets a leading single quote (see ``neutralise_formula``); numbers are never changed, and
  JSON, JSONL and Parquet keep strings as they are.
- XLSX: characters that XML 1.0 forbids (control characters other than tab, line feed and carriage return)
  are removed, strings are cut to Excel's 32,767 characters per cell, and a sheet holds 1,048,575 rows under
  its header: more rows continue on sheets ``results-2``, ``results-3``, ... A sink opened with ``xlsx_max_rows``
  raises ``OutputFormatError`` on the row after that many, before anything is saved.
- XLSX sheets are made to work in: a bold, frozen header row with an autofilter over the sheet's rows, and
  column widths taken from the header and the first ``XLSX_SAMPLE_ROWS`` rows (never from all of them; those
  rows are held until the widths are known, as they decide which columns wrap their cells). A column whose
  sampled text is wider than ``XLSX_MAX_WIDTH`` characters (the text and rationale, typically) gets that width
  and wrapped, top-aligned cells. Sheets of figures (:class:`Sheet`, e.g. a run's summary) can be added to a
  workbook before it is closed (``TableSink.add_sheets``); the other formats have one table and ignore them.
- XLSX review workbooks (``open_sink(..., review_categories=...)``): the reviewer's columns ``review_label``,
  ``verdict`` and ``review_note`` come right after the prediction (``class``) and its ``rationale`` (at the end
  when the table has neither), with a shaded header. ``review_label`` is a drop-down of the task's categories
  and ``verdict`` one of ``correct`` / ``wrong`` / ``unsure`` (Excel data validations; other values are
  refused); ``review_note`` is free text. One validation per column covers every row a sheet can hold, so
  memory does not grow with the rows. A list longer than Excel's 255 characters for a list written in the
  validation itself (or one with a comma or a double quote in a category) is read from a hidden sheet,
  ``review-lists``. The other formats have no drop-downs: a sink opened with review categories for them raises
  ``OutputFormatError``.

Parquet column types are inferred from the first batch of rows: a column whose non-empty values are all
booleans is ``bool``, all integers ``int64``, integers and floats ``double``, and anything else (text,
dates, JSON, or nothing but empty values) ``string``. When a later batch holds a value that does not fit
(text in an integer column, say), the column is widened (``int64`` to ``double`` for a float, otherwise to
``string``) and the rows already written are rewritten once, streaming, into a file with the wider schema;
a mixed column therefore never fails, and its numbers then appear as their text. (For a target in S3 the
narrower file is briefly published and read back.) A sink opened with a ``parquet_schema`` writes exactly
those types: it neither infers nor widens.
"""

from __future__ import annotations

import codecs
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any

import pyarrow as pa

from .errors import OutputFormatError
from .formats import FileFormat, results_sheets
from .parquet_writer import PARQUET_BATCH_ROWS, _ParquetSink
from .writer_base import (
    _STREAM_BUFFER,
    CONTENT_TYPES,
    FORMULA_PREFIXES,
    OUTPUT_EXTENSIONS,
    SHEET_NAME,
    XLSX_MAX_CELL_CHARS,
    LocalTarget,
    PathArg,
    Row,
    S3Target,
    Sheet,
    Styled,
    TableSink,
    Target,
    _csv_line,
    _json_bytes,
    neutralise_formula,
    output_format_from_name,
)
from .xlsx_writer import (
    REVIEW_AFTER,
    REVIEW_NOTE_WIDTH,
    XLSX_INLINE_LIST_CHARS,
    XLSX_MAX_WIDTH,
    XLSX_MIN_WIDTH,
    XLSX_SAMPLE_ROWS,
    XLSX_SHEET_ROWS,
    _XlsxSink,
    with_review_columns,
)

__all__ = [
    "CONTENT_TYPES",
    "FORMULA_PREFIXES",
    "OUTPUT_EXTENSIONS",
    "PARQUET_BATCH_ROWS",
    "REVIEW_AFTER",
    "REVIEW_NOTE_WIDTH",
    "SHEET_NAME",
    "XLSX_INLINE_LIST_CHARS",
    "XLSX_MAX_CELL_CHARS",
    "XLSX_MAX_WIDTH",
    "XLSX_MIN_WIDTH",
    "XLSX_SAMPLE_ROWS",
    "XLSX_SHEET_ROWS",
    "LocalTarget",
    "S3Target",
    "Sheet",
    "Styled",
    "TableSink",
    "Target",
    "neutralise_formula",
    "open_sink",
    "output_format_from_name",
    "results_sheets",
    "with_review_columns",
    "write_table",
]


class _TextSink(TableSink):
    """A table written as text to a stream (CSV, JSON, JSONL)."""

    encoding = "utf-8"
    newline: str | None = "\n"

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._upload = target.create()
        self._bytes = io.BufferedWriter(self._upload, buffer_size=_STREAM_BUFFER)
        self._text = io.TextIOWrapper(self._bytes, encoding=self.encoding, newline=self.newline)

    def _finish(self) -> None:
        """Write what ends the table."""

    def close(self) -> int:
        try:
            self._finish()
            self._text.close()
        except BaseException:
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        with suppress(Exception):
            self._upload.abort()  # the text and buffer wrappers over it are closed with it


class _CsvSink(_TextSink):
    """CSV in UTF-8 with a byte order mark (Excel then reads it as UTF-8), records built by ``_csv_line`` and written
    in batches; the mark is written as bytes, as the text stream's "utf-8-sig" encoder would run in Python."""

    encoding = "utf-8"
    newline = ""
    _BATCH = 256  # records joined into one write (fewer when they are long: see _BATCH_CHARS)
    _BATCH_CHARS = 1 << 20

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._bytes.write(codecs.BOM_UTF8)
        self._pending: list[str] = []
        self._pending_chars = 0
        self._text.write(_csv_line(dict(zip(self.columns, self.columns, strict=True)), self.columns))

    def write(self, row: Row) -> None:
        line = _csv_line(row, self.columns)
        self._pending.append(line)
        self._pending_chars += len(line)
        self.rows += 1
        if len(self._pending) >= self._BATCH or self._pending_chars >= self._BATCH_CHARS:
            self._finish()

    def _finish(self) -> None:
        self._text.write("".join(self._pending))
        self._pending.clear()
        self._pending_chars = 0


class _JsonSink(_TextSink):
    """A JSON array of objects, one a line; written as bytes (UTF-8), not through the text stream."""

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._bytes.write(b"[")

    def write(self, row: Row) -> None:
        self._bytes.write(b",\n" if self.rows else b"\n")
        self._bytes.write(_json_bytes(self.columns, row))
        self.rows += 1

    def _finish(self) -> None:
        self._bytes.write(b"\n]\n" if self.rows else b"]\n")


class _JsonlSink(_TextSink):
    """One JSON object a line; written as bytes (UTF-8), not through the text stream."""

    def write(self, row: Row) -> None:
        self._bytes.write(_json_bytes(self.columns, row) + b"\n")
        self.rows += 1


# --- entry points --------------------------------------------------------------------------------------


def open_sink(
    fmt: FileFormat,
    target: Target,
    columns: Sequence[str],
    *,
    xlsx_max_rows: int | None = None,
    parquet_schema: pa.Schema | None = None,
    review_categories: Sequence[str] | None = None,
) -> TableSink:
    """A sink writing ``columns`` of each row to ``target`` in ``fmt``.

    ``xlsx_max_rows``: an XLSX sink refuses (``OutputFormatError``) more rows than this. ``parquet_schema``: a
    Parquet sink writes exactly these column types (its names must be ``columns``) instead of inferring them.
    ``review_categories``: a review workbook, with the reviewer's columns and drop-downs (XLSX only; the sink's
    ``columns`` then include the review columns).
    """
    chosen = FileFormat(fmt)
    if review_categories is not None and chosen is not FileFormat.XLSX:
        raise OutputFormatError(
            f"Cannot write review columns to {target.name!r}: their drop-downs need an .xlsx workbook."
        )
    if chosen is FileFormat.XLSX:
        return _XlsxSink(target, columns, xlsx_max_rows, review_categories)
    if chosen is FileFormat.PARQUET:
        return _ParquetSink(target, columns, parquet_schema)
    text_sinks: dict[FileFormat, Callable[[Target, Sequence[str]], TableSink]] = {
        FileFormat.CSV: _CsvSink,
        FileFormat.JSON: _JsonSink,
        FileFormat.JSONL: _JsonlSink,
    }
    return text_sinks[chosen](target, columns)


def write_table(
    path: PathArg,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    fmt: FileFormat | None = None,
) -> int:
    """Write ``rows`` (only the keys in ``columns``, in that order) to ``path``; return how many rows.

    ``fmt`` defaults to the format the file extension announces (``OutputFormatError`` if unknown). The file
    appears only when complete: if a row or the source fails, nothing is left at ``path``.
    """
    chosen = fmt if fmt is not None else output_format_from_name(os.fspath(path))
    sink = open_sink(chosen, LocalTarget(path), columns)
    try:
        for row in rows:
            sink.write(row)
    except BaseException:
        sink.abort()
        raise
    return sink.close()
