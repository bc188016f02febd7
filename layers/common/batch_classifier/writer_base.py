"""The pieces every table format shares: output formats, cell values, targets (local file or S3), the sink interface,
and the sheets of figures an XLSX workbook can carry. The sinks themselves are in :mod:`.writers`,
:mod:`.xlsx_writer` and :mod:`.parquet_writer`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import orjson
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from .errors import OutputFormatError
from .formats import RESULTS_SHEET, FileFormat, format_from_name
from .storage import Upload, UploadFile, open_seekable

#: The file extensions a results table can be written to.
OUTPUT_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".ndjson", ".parquet", ".pq", ".xlsx")

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
SHEET_NAME = RESULTS_SHEET
XLSX_MAX_CELL_CHARS = 32_767


_STREAM_BUFFER = 256 * 1024


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


# The rows of a table go through the functions below, a hundred thousand and more a run: each takes the common
# values (text, numbers, None) as they are and leaves the others to the cell functions above.


def _csv_line(row: Row, columns: Sequence[str]) -> str:
    """``columns`` of ``row`` as one CSV record, as ``csv.writer`` writes it (commas, minimal quoting with doubled
    quotes, CRLF), built directly: a row at a time, the csv module is the slower part of writing a CSV file."""
    fields: list[str] = []
    append = fields.append
    values: Iterator[Any] = map(row.get, columns)
    for value in values:
        kind = value.__class__
        if kind is str:
            text = "'" + value if value.startswith(FORMULA_PREFIXES) else value
        elif value is None:
            append("")
            continue
        elif kind is bool:
            append("true" if value else "false")
            continue
        elif kind is int:
            append(str(value))
            continue
        else:
            text = _csv_cell(value)
        if "," in text or '"' in text or "\n" in text or "\r" in text:
            text = '"' + text.replace('"', '""') + '"'
        append(text)
    if len(fields) == 1 and not fields[0]:
        return '""\r\n'  # a lone empty field is quoted, or the record would be an empty line
    return ",".join(fields) + "\r\n"


def _xlsx_row(row: Row, columns: Sequence[str]) -> list[Any]:
    """``columns`` of ``row`` as XLSX cell values (see :func:`_xlsx_cell`)."""
    cells: list[Any] = [row.get(column) for column in columns]
    for index, value in enumerate(cells):
        kind = type(value)
        if kind is str:
            cells[index] = _xlsx_str(value)
        elif kind is float:
            if not math.isfinite(value):
                cells[index] = _xlsx_cell(value)
        elif value is not None and kind is not int and kind is not bool:
            cells[index] = _xlsx_cell(value)
    return cells


def _xlsx_str(value: str) -> str:
    """:func:`_xlsx_text`, quicker for the common text (printable: no character XML forbids)."""
    text = value if value.isprintable() else ILLEGAL_CHARACTERS_RE.sub("", value)
    if text.startswith(FORMULA_PREFIXES):
        text = "'" + text
    return text[:XLSX_MAX_CELL_CHARS] if len(text) > XLSX_MAX_CELL_CHARS else text


_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _json_bytes(columns: Sequence[str], row: Row) -> bytes:
    """``columns`` of ``row`` as a JSON object. orjson writes it (NaN and infinities as null); what orjson refuses (an
    integer beyond 64 bits, a mapping with keys that are not text) is written by the json module instead."""
    record = {column: row.get(column) for column in columns}
    try:
        return orjson.dumps(record, default=_json_default, option=_ORJSON_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        record = {column: _json_cell(value) for column, value in record.items()}
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()


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
