"""Streaming writers for results tables: CSV, JSON, JSONL, XLSX and Parquet.

Each format has one sink (:func:`open_sink`): it takes rows one by one and writes them to a :class:`Target`, a
local file or an S3 object, as a stream that is published only when the sink is closed (``abort()`` drops
it, so a failed table never leaves half a file). Memory does not grow with the number of rows: CSV, JSON and
JSONL are written as text streams, Parquet holds one batch of rows at a time and writes it as a row group,
and XLSX rows go through openpyxl's write-only mode, which spools each sheet to a temporary file until the
workbook is saved into the target at close (the one format that uses local disk). :func:`write_table` writes
an iterable of rows to a local file through the same sinks.

Value handling, the same for every writer unless said otherwise:

- A key missing from a row, or ``None``, is an empty cell (``null`` in JSON, JSONL and Parquet).
- ``datetime``, ``date`` and ``time`` values become ISO 8601 strings (all formats, Parquet included).
- ``dict`` and ``list`` values stay JSON values in JSON and JSONL, and become compact JSON text elsewhere.
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
  rows are held until the widths are known, as openpyxl writes widths before the first row). A column whose
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

import csv
import datetime as dt
import io
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.formatting.rule import ColorScaleRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

from .errors import OutputFormatError
from .evaluation import REVIEW_COLUMNS, REVIEW_LABEL_COLUMN, VERDICT_COLUMN, ReviewVerdict
from .formats import RESULTS_SHEET, REVIEW_LISTS_SHEET, FileFormat, format_from_name, results_sheets
from .storage import Upload, UploadFile, open_seekable

__all__ = [
    "CONTENT_TYPES",
    "OUTPUT_EXTENSIONS",
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

#: The file extensions a results table can be written to.
OUTPUT_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".xlsx")

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SHEET_NAME = RESULTS_SHEET
XLSX_MAX_CELL_CHARS = 32_767
XLSX_SHEET_ROWS = 1_048_575  # data rows in one Excel sheet (1,048,576 rows with the header)
XLSX_SAMPLE_ROWS = 100  # rows the column widths are taken from
XLSX_MAX_WIDTH = 60  # characters: a column with wider text gets this width and wrapped cells
XLSX_MIN_WIDTH = 6
XLSX_INLINE_LIST_CHARS = 255  # Excel's limit on a drop-down list written in the validation itself
REVIEW_AFTER = ("class", "rationale")  # the review columns come right after these (the prediction, its reasons)
REVIEW_NOTE_WIDTH = 40
PARQUET_BATCH_ROWS = 10_000
_STREAM_BUFFER = 256 * 1024
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


# --- targets -------------------------------------------------------------------------------------------


class Target(ABC):
    """Where a table is written: a local file or an object, written as a stream published when closed."""

    name: str

    @abstractmethod
    def create(self) -> Upload:
        """A new stream; closing it replaces what the target holds, aborting it leaves the target as it was."""

    @abstractmethod
    def read_back(self) -> IO[bytes]:
        """A seekable read of what the target holds now (the Parquet sink reads back a file it widens)."""

    @abstractmethod
    def remove(self) -> None:
        """Delete what the target holds (a sink that published early and is then aborted)."""


class _LocalFile(Upload):
    """A local file written beside its path and moved there by ``close()``; ``abort()`` deletes it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self._partial = path.with_name(f".{path.name}.partial")
        self._file = self._partial.open("wb")

    def write(self, data: Any) -> int:
        return self._file.write(data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        if self.closed:
            return
        self._file.close()
        os.replace(self._partial, self._path)
        super().close()

    def abort(self) -> None:
        if self.closed:
            return
        self._file.close()
        self._partial.unlink(missing_ok=True)
        super().close()


class LocalTarget(Target):
    """A file on local disk."""

    def __init__(self, path: PathArg) -> None:
        self.path = Path(path)
        self.name = self.path.name

    def create(self) -> Upload:
        return _LocalFile(self.path)

    def read_back(self) -> IO[bytes]:
        return self.path.open("rb")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


#: The content type of each format's objects in S3.
CONTENT_TYPES: dict[FileFormat, str] = {
    FileFormat.CSV: "text/csv; charset=utf-8",
    FileFormat.JSON: "application/json",
    FileFormat.JSONL: "application/x-ndjson",
    FileFormat.PARQUET: "application/vnd.apache.parquet",
    FileFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class S3Target(Target):
    """An S3 object, written as a multipart upload (see :class:`~batch_classifier.storage.UploadFile`)."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str | None = None) -> None:
        self._s3, self.bucket, self.key, self._content_type = s3, bucket, key, content_type
        self.name = PurePosixPath(key).name

    def create(self) -> Upload:
        return UploadFile(self._s3, self.bucket, self.key, self._content_type)

    def read_back(self) -> IO[bytes]:
        return open_seekable(self._s3, self.bucket, self.key)

    def remove(self) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self.key)


# --- sinks ---------------------------------------------------------------------------------------------


class TableSink(ABC):
    """One table being written row by row, in one format: ``write`` each row, then ``close`` (publish) or
    ``abort`` (drop). ``rows`` counts the rows written."""

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        self.target = target
        self.columns = list(columns)
        self.rows = 0

    @abstractmethod
    def write(self, row: Row) -> None: ...

    @abstractmethod
    def close(self) -> int:
        """Finish the table and publish it; the number of rows."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the table; never raises."""

    def add_sheets(self, sheets: Sequence[Sheet]) -> None:  # noqa: B027 (a hook: only XLSX has sheets)
        """Add sheets of figures after the table (XLSX); formats that hold one table ignore them."""


class _TextSink(TableSink):
    """A table written as text to a stream (CSV, JSON, JSONL)."""

    encoding = "utf-8"
    newline: str | None = "\n"

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._upload = target.create()
        buffered = io.BufferedWriter(self._upload, buffer_size=_STREAM_BUFFER)
        self._text = io.TextIOWrapper(buffered, encoding=self.encoding, newline=self.newline)

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
    encoding = "utf-8-sig"
    newline = ""

    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._writer = csv.writer(self._text, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self._writer.writerow([_csv_cell(column) for column in self.columns])

    def write(self, row: Row) -> None:
        self._writer.writerow(_project(row, self.columns, _csv_cell))
        self.rows += 1


def _json_object(columns: Sequence[str], row: Row) -> str:
    record = {column: _json_cell(row.get(column)) for column in columns}
    return json.dumps(record, ensure_ascii=False, default=_json_default)


class _JsonSink(_TextSink):
    def __init__(self, target: Target, columns: Sequence[str]) -> None:
        super().__init__(target, columns)
        self._text.write("[")

    def write(self, row: Row) -> None:
        self._text.write(",\n" if self.rows else "\n")
        self._text.write(_json_object(self.columns, row))
        self.rows += 1

    def _finish(self) -> None:
        self._text.write("\n]\n" if self.rows else "]\n")


class _JsonlSink(_TextSink):
    def write(self, row: Row) -> None:
        self._text.write(_json_object(self.columns, row) + "\n")
        self.rows += 1


# --- XLSX ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Styled:
    """A cell of a :class:`Sheet` with a style: bold, and/or an Excel number format (``"0.0%"``)."""

    value: Any
    bold: bool = False
    number_format: str | None = None


@dataclass(frozen=True)
class Sheet:
    """A small sheet of figures added to a workbook after its table (a run's summary, a confusion matrix).

    ``rows`` hold plain values or :class:`Styled` cells; ``widths`` are column widths in characters (the rest are
    sized from the values); ``freeze`` is the first cell that scrolls (``"B2"``: the first row and column stay);
    ``heat_map`` is a range (``"B2:K11"``) shaded from white (0) to red (its largest value)."""

    title: str
    rows: Sequence[Sequence[Any]]
    widths: Sequence[float] = ()
    freeze: str | None = None
    heat_map: str | None = None


_BOLD = Font(bold=True)
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_REVIEW_FILL = PatternFill(fill_type="solid", start_color="FFF2CC", end_color="FFF2CC")  # the reviewer's columns


def with_review_columns(columns: Sequence[str]) -> list[str]:
    """``columns`` with the reviewer's columns right after the prediction and its rationale (at the end when
    neither is there); review columns already among ``columns`` are moved there, not repeated."""
    kept = [column for column in columns if column not in REVIEW_COLUMNS]
    anchors = [index for index, column in enumerate(kept) if column in REVIEW_AFTER]
    at = anchors[-1] + 1 if anchors else len(kept)
    return [*kept[:at], *REVIEW_COLUMNS, *kept[at:]]


def _inline_list(values: Sequence[str]) -> str | None:
    """A drop-down list written in the validation itself (``"a,b,c"``), or None when Excel cannot hold it so."""
    text = ",".join(values)
    if len(text) > XLSX_INLINE_LIST_CHARS or any("," in v or '"' in v for v in values):
        return None
    return f'"{text}"'


def _drop_down(formula: str, column: int, prompt: str) -> DataValidation:
    """A list validation over every data row a sheet can hold in one column (one object, whatever the rows)."""
    letter = get_column_letter(column)
    validation = DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        showDropDown=False,  # False shows the arrow (the attribute means "hide the drop-down" in the file format)
        showErrorMessage=True,
        errorTitle="Not in the list",
        error="Choose a value from the drop-down list.",
        showInputMessage=True,
        prompt=prompt,
    )
    validation.add(f"{letter}2:{letter}{XLSX_SHEET_ROWS + 1}")
    return validation


def _text_width(value: Any) -> int:
    """The width a cell's value needs, in characters: its longest line."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else str(value)
    return max(map(len, text.split("\n"))) if "\n" in text else len(text)


class _XlsxSink(TableSink):
    """Rows spooled by openpyxl's write-only sheets (``XLSX_SHEET_ROWS`` a sheet), saved into the target at close.

    The first ``XLSX_SAMPLE_ROWS`` rows are held until the column widths are known (openpyxl writes them before
    the first row); from then on each row goes straight to the sheet's spool file.
    """

    def __init__(
        self,
        target: Target,
        columns: Sequence[str],
        max_rows: int | None = None,
        review_categories: Sequence[str] | None = None,
    ) -> None:
        review = review_categories is not None
        super().__init__(target, with_review_columns(columns) if review else columns)
        self._max_rows = max_rows
        self._categories = [_xlsx_text(str(name)) for name in review_categories or ()] if review else None
        self._category_list: str | None = None  # the review_label drop-down's formula, once known
        self._workbook = Workbook(write_only=True)
        self._sheets: list[Any] = []
        self._sheet_rows = 0
        self._header = [_xlsx_text(str(column)) for column in self.columns]
        self._sample: list[list[Any]] | None = []  # None once the first sheet is started
        self._widths: list[float] = []
        self._wrapped: list[int] = []  # indexes of the columns with wrapped cells
        self._wrap_cells: list[WriteOnlyCell] = []

    def _size_columns(self) -> None:
        """Widths from the header and the sampled rows; columns of wide text are capped and wrapped."""
        sample = self._sample or []
        for index, header in enumerate(self._header):
            widest = max((_text_width(row[index]) for row in sample), default=0)
            width = max(len(header) + 3, widest + 1, XLSX_MIN_WIDTH)  # + 3: room for the filter button
            if self._categories is not None and header == REVIEW_LABEL_COLUMN:
                width = max([width, *(len(name) + 3 for name in self._categories)])  # + 3: the drop-down arrow
            elif self._categories is not None and header in REVIEW_COLUMNS[2:]:
                width = max(width, REVIEW_NOTE_WIDTH)
            if widest > XLSX_MAX_WIDTH:
                self._wrapped.append(index)
            self._widths.append(min(width, XLSX_MAX_WIDTH))

    def _new_sheet(self) -> None:
        self._close_sheet()
        number = len(self._sheets) + 1
        sheet = self._workbook.create_sheet(SHEET_NAME if number == 1 else f"{SHEET_NAME}-{number}")
        for index, width in enumerate(self._widths, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        header = []
        for value in self._header:
            cell = WriteOnlyCell(sheet, value=value)
            cell.font = _BOLD
            if self._categories is not None and value in REVIEW_COLUMNS:
                cell.fill = _REVIEW_FILL
            header.append(cell)
        sheet.append(header)
        if self._categories is not None:
            self._add_drop_downs(sheet)
        # One styled cell per wrapped column, given each row's value in turn: openpyxl writes a row's cells as it
        # is appended, so the cell can be reused (a new styled cell per value would cost a style lookup each).
        self._wrap_cells = []
        for _ in self._wrapped:
            cell = WriteOnlyCell(sheet)
            cell.alignment = _WRAPPED
            self._wrap_cells.append(cell)
        self._sheets.append(sheet)
        self._sheet_rows = 0

    def _add_drop_downs(self, sheet: Any) -> None:
        """The review columns' drop-downs (written when the sheet is saved); the first call writes a category list
        too long to hold inline on a hidden sheet, which every results sheet then refers to."""
        categories = self._categories or []
        if self._category_list is None:
            self._category_list = _inline_list(categories)
        if self._category_list is None:
            lists = self._workbook.create_sheet(REVIEW_LISTS_SHEET)
            lists.sheet_state = "hidden"
            for name in categories:
                lists.append([name])
            self._category_list = f"{quote_sheetname(REVIEW_LISTS_SHEET)}!$A$1:$A${max(len(categories), 1)}"
        review_label = self.columns.index(REVIEW_LABEL_COLUMN) + 1
        verdict = self.columns.index(VERDICT_COLUMN) + 1
        verdicts = _inline_list([v.value for v in ReviewVerdict])
        assert verdicts is not None
        # A write-only sheet has the list of validations (written with the sheet's tail) but not the method adding one.
        sheet.data_validations.append(
            _drop_down(self._category_list, review_label, "The right category, if not the prediction")
        )
        sheet.data_validations.append(
            _drop_down(verdicts, verdict, "Is the prediction correct, wrong, or are you unsure?")
        )

    def _close_sheet(self) -> None:
        """Set the filter of the sheet being written over its header and rows (written when it is saved)."""
        if self._sheets and self.columns:
            last = get_column_letter(len(self.columns))
            self._sheets[-1].auto_filter.ref = f"A1:{last}{self._sheet_rows + 1}"

    def _start(self) -> None:
        """Size the columns from the sample, start the first sheet and write the sampled rows to it."""
        self._size_columns()
        sample, self._sample = self._sample or [], None
        self._new_sheet()
        for cells in sample:
            self._append(cells)

    def _append(self, cells: list[Any]) -> None:
        if self._sheet_rows >= XLSX_SHEET_ROWS:
            self._new_sheet()
        for index, cell in zip(self._wrapped, self._wrap_cells, strict=True):
            value = cells[index]
            if value is not None:
                cell.value = value
                cells[index] = cell
        self._sheets[-1].append(cells)
        self._sheet_rows += 1

    def write(self, row: Row) -> None:
        if self._max_rows is not None and self.rows >= self._max_rows:
            raise OutputFormatError(
                f"Cannot write {self.target.name!r}: the results have more than {self._max_rows:,} rows, "
                "more than the XLSX output is allowed; write CSV, JSONL or Parquet instead."
            )
        cells = _project(row, self.columns, _xlsx_cell)
        self.rows += 1
        if self._sample is None:
            self._append(cells)
            return
        self._sample.append(cells)
        if len(self._sample) >= XLSX_SAMPLE_ROWS:
            self._start()

    def add_sheets(self, sheets: Sequence[Sheet]) -> None:
        if self._sample is not None:
            self._start()
        for spec in sheets:
            _write_sheet(self._workbook.create_sheet(spec.title), spec)

    def close(self) -> int:
        upload = self.target.create()
        stream = io.BufferedWriter(upload, buffer_size=_STREAM_BUFFER)
        try:
            if self._sample is not None:
                self._start()
            self._close_sheet()
            self._workbook.save(stream)  # a zip with data descriptors when the target cannot seek (S3)
            stream.close()
        except BaseException:
            upload.abort()
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        self._sample = None
        for sheet in self._workbook.worksheets:
            _discard_sheet(sheet)


def _write_sheet(sheet: Any, spec: Sheet) -> None:
    """Write a small sheet of figures: widths, frozen panes and a heat map first, then its rows."""
    columns = max((len(row) for row in spec.rows), default=0)
    for index in range(columns):
        if index < len(spec.widths):
            width = spec.widths[index]
        else:
            widest = max((_text_width(_plain(row[index])) for row in spec.rows if index < len(row)), default=0)
            width = max(XLSX_MIN_WIDTH, widest + 2)
        sheet.column_dimensions[get_column_letter(index + 1)].width = min(width, XLSX_MAX_WIDTH)
    if spec.freeze:
        sheet.freeze_panes = spec.freeze
    if spec.heat_map:
        scale = ColorScaleRule(
            start_type="num", start_value=0, start_color="FFFFFF", end_type="max", end_color="F8696B"
        )
        sheet.conditional_formatting.add(spec.heat_map, scale)
    for row in spec.rows:
        sheet.append([_sheet_cell(sheet, value) for value in row])


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Styled) else value


def _sheet_cell(sheet: Any, value: Any) -> Any:
    if not isinstance(value, Styled):
        return _xlsx_cell(value)
    cell = WriteOnlyCell(sheet, value=_xlsx_cell(value.value))
    if value.bold:
        cell.font = _BOLD
    if value.number_format:
        cell.number_format = value.number_format
    return cell


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


_KIND_OF_TYPE: dict[pa.DataType, _Kind] = {arrow: kind for kind, arrow in _ARROW_TYPES.items()}


class _ParquetSink(TableSink):
    """A Parquet file written a batch (row group) at a time. Without a ``schema``, column types are inferred
    and widen when a later value needs it (the rows written so far are then rewritten once, streaming)."""

    def __init__(self, target: Target, columns: Sequence[str], schema: pa.Schema | None = None) -> None:
        super().__init__(target, columns)
        self._fixed = schema is not None
        if schema is not None:
            if schema.names != self.columns:
                raise ValueError(f"the schema's columns {schema.names} are not the table's {self.columns}")
            self._kinds = [_KIND_OF_TYPE[field.type] for field in schema]
        else:
            self._kinds = [_Kind.STRING] * len(self.columns)
        self._batch: list[Row] = []
        self._upload: Upload | None = None
        self._stream: io.BufferedWriter | None = None
        self._writer: pq.ParquetWriter | None = None
        self._published_early = False

    def _schema(self) -> pa.Schema:
        return pa.schema([(c, _ARROW_TYPES[k]) for c, k in zip(self.columns, self._kinds, strict=True)])

    def _open(self, kinds: list[_Kind]) -> pq.ParquetWriter:
        self._kinds = kinds
        self._upload = self.target.create()
        self._stream = io.BufferedWriter(self._upload, buffer_size=_STREAM_BUFFER)
        self._writer = pq.ParquetWriter(self._stream, self._schema())
        return self._writer

    def _publish(self, writer: pq.ParquetWriter) -> None:
        writer.close()
        assert self._stream is not None
        self._stream.close()
        self._writer = self._stream = self._upload = None

    def _kinds_for(self, rows: Sequence[Row]) -> list[_Kind]:
        """The column kinds after seeing ``rows``: inferred on the first batch, widened afterwards."""
        if self._fixed:
            return self._kinds
        started: list[_Kind | None] = list(self._kinds) if self._writer else [None] * len(self.columns)
        kinds = []
        for column, first in zip(self.columns, started, strict=True):
            kind = first
            for row in rows:
                kind = _widen(kind, row.get(column))
            kinds.append(kind or _Kind.STRING)
        return kinds

    def _append(self, writer: pq.ParquetWriter, rows: Sequence[Row]) -> None:
        arrays = [
            pa.array([_parquet_value(row.get(column), kind) for row in rows], type=_ARROW_TYPES[kind])
            for column, kind in zip(self.columns, self._kinds, strict=True)
        ]
        writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema()))

    def _rewrite(self, writer: pq.ParquetWriter, kinds: list[_Kind]) -> pq.ParquetWriter:
        """Publish what is written so far, then copy it into a new file with wider column types, a batch at a
        time; the new file replaces it when the sink is closed."""
        self._publish(writer)
        self._published_early = True
        with self.target.read_back() as previous, pq.ParquetFile(previous) as source:
            new_writer = self._open(kinds)
            for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                self._append(new_writer, batch.to_pylist())
        return new_writer

    def _flush(self) -> None:
        rows, self._batch = self._batch, []
        kinds = self._kinds_for(rows)
        if self._writer is None:
            writer = self._open(kinds)
        elif kinds != self._kinds:
            writer = self._rewrite(self._writer, kinds)
        else:
            writer = self._writer
        self._append(writer, rows)

    def write(self, row: Row) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= PARQUET_BATCH_ROWS:
            self._flush()

    def close(self) -> int:
        try:
            if self._batch:
                self._flush()
            if self._writer is None:  # no rows at all: an empty file that still has the columns
                self._append(self._open(self._kinds), [])
            assert self._writer is not None
            self._publish(self._writer)
        except BaseException:
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        self._batch = []
        if self._upload is not None:
            with suppress(Exception):
                self._upload.abort()
        if self._writer is not None:
            with suppress(Exception):
                self._writer.close()  # its stream is closed: nothing more is written
        self._writer = self._stream = self._upload = None
        if self._published_early:
            with suppress(Exception):
                self.target.remove()


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
