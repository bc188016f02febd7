"""Streaming readers for the input files: CSV, XLSX, JSON, JSON Lines and Parquet.

``open_table`` opens a file (a path or a binary file object), decides its format from the extension and
confirms it by peeking at the first bytes, and returns a ``Table``: the file's ``columns``, known before any
row is read, and ``rows()``, a single pass over the data rows as ``Row`` objects.

The streaming promise: memory does not grow with the number of rows. Each reader keeps only a fixed-size
buffer plus the row being handed out (Parquet: one record batch), so a million-row file is read in the same
memory as a thousand-row one:

- CSV is decoded line by line and parsed with ``csv.reader``; quoted fields spanning lines stay intact.
- XLSX is read with openpyxl in read-only mode, which parses the sheet XML as it goes. (One exception to
  the promise, inherent to the format and openpyxl: the workbook's shared-strings table, every distinct
  text of the workbook, is loaded at open time.)
- JSON is never loaded whole: ``_JsonScanner`` walks the document over fixed-size text chunks and decodes
  one array element at a time with ``json.JSONDecoder.raw_decode``.
- JSON Lines is decoded one line at a time; Parquet one record batch at a time.

CSV and JSON inputs are read strictly forwards, so a stream that cannot seek (an S3 body) works as is.
XLSX and Parquet need random access: a stream that cannot seek is first copied to a temporary file.

Row numbers count data rows from 1 (the header and blank lines or fully empty rows are not counted), across
the whole file; for XLSX, ``Row.where()`` names the sheet and the row's number within that sheet. Error
messages name the file and the row, line or element that is wrong, and say what to do.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import PurePath
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self, TextIO

from .errors import EmptyInputError, InputEncodingError, InputFormatError, MalformedInputError
from .formats import FileFormat, format_from_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Row", "Table", "detect_format", "open_table"]

# How many bytes are peeked to recognise a file and its text encoding.
_PEEK = 64 * 1024
# Characters read per step by the JSON scanner (tests shrink it to cross chunk boundaries).
_CHUNK = 64 * 1024
# Largest single JSON value (in characters) the scanner will hold; guards against an unterminated string.
_MAX_JSON_VALUE = 64 * 1024 * 1024
# Largest CSV field; csv's default (128 KiB) is too small for long texts, an unbounded one unsafe.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024
# Rows per Parquet record batch, and the data size a batch aims at (wide rows get smaller batches).
_PARQUET_BATCH = 8192
_PARQUET_BATCH_BYTES = 4 * 1024 * 1024

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CSV_DELIMITERS = (",", ";", "\t")
_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")
_JSON_DECODER = json.JSONDecoder()
_DEFAULT_NAME = "input"


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class Row:
    """One data row: its 1-based number across the whole file and its values by column name.

    Empty cells are ``None`` in XLSX and Parquet and ``''`` in CSV. ``sheet`` is the XLSX sheet the row
    comes from, else ``None``.
    """

    number: int
    values: dict[str, Any]
    sheet: str | None = None
    # The row's number within its sheet (XLSX only), so that messages point into the right sheet.
    _sheet_row: int = field(default=0, repr=False, compare=False, kw_only=True)

    def __init__(self, number: int, values: dict[str, Any], sheet: str | None = None, *, _sheet_row: int = 0) -> None:
        # One Row is built per input row: writing the slots directly is about twice as fast as the
        # generated frozen __init__ (which goes through object.__setattr__ for every field).
        _SET_NUMBER(self, number)
        _SET_VALUES(self, values)
        _SET_SHEET(self, sheet)
        _SET_SHEET_ROW(self, _sheet_row)

    def where(self) -> str:
        """Where the row is, for messages: ``row 12`` or ``sheet 'Sheet1', row 12``."""
        if self.sheet is None:
            return f"row {self.number}"
        return f"sheet {self.sheet!r}, row {self._sheet_row or self.number}"


_SET_NUMBER: Any = vars(Row)["number"].__set__
_SET_VALUES: Any = vars(Row)["values"].__set__
_SET_SHEET: Any = vars(Row)["sheet"].__set__
_SET_SHEET_ROW: Any = vars(Row)["_sheet_row"].__set__


class Table(ABC):
    """An opened input file: its name, format and columns, and a single streaming pass over its rows.

    Use it as a context manager (or call ``close``) to release the file. A file object given to
    ``open_table`` is not closed: it belongs to the caller.
    """

    name: str
    format: FileFormat
    columns: list[str]

    def __init__(self, name: str, fmt: FileFormat, columns: list[str], resources: ExitStack) -> None:
        self.name = name
        self.format = fmt
        self.columns = columns
        self._resources = resources
        self._started = False

    def rows(self) -> Iterator[Row]:
        """The data rows in file order; a table can be iterated once."""
        if self._started:
            raise RuntimeError(f"the rows of {self.name!r} have already been read; open the file again")
        self._started = True
        return self._iter_rows()

    @abstractmethod
    def _iter_rows(self) -> Iterator[Row]: ...

    def close(self) -> None:
        """Release the file and anything opened for it (idempotent)."""
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.format.value} columns={self.columns!r}>"


def detect_format(name: str, head: bytes) -> FileFormat:
    """The format of the file called ``name`` whose first bytes are ``head``: its extension, confirmed.

    ``head`` should be the first 64 KiB (or the whole file if shorter). A ``.json`` file holding JSON
    Lines is reported as JSONL. Raises ``InputFormatError`` when the extension is unknown or the content
    does not match it, and ``EmptyInputError`` when there is no content.
    """
    return _confirm(format_from_name(name), name, head, declared=False)


def open_table(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str | None = None,
    fmt: FileFormat | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    records_key: str | None = None,
) -> Table:
    """Open an input file for streaming.

    ``source`` is a path or a binary file object (it need not be seekable). ``name`` is used in messages
    and, unless ``fmt`` is given, for the extension; it defaults to the file's name. The format is always
    confirmed by the content (``InputFormatError`` on a mismatch).

    Options, each used by one format only: ``encoding`` (CSV, JSON, JSON Lines; default UTF-8 with or
    without a BOM, falling back to cp1252 for a CSV that is not UTF-8), ``delimiter`` (CSV: ``,``, ``;``
    or tab, sniffed from the header line unless given; ``.tsv`` means tab), ``sheet`` (XLSX: one sheet by
    name; default all sheets, each with its own header row) and ``records_key`` (JSON: the key of the list
    of records when the top level is an object; default the first key holding a list of objects).

    A file without a header (CSV, XLSX) or without a single record (JSON, JSON Lines, Parquet) raises
    ``EmptyInputError`` here, since its columns cannot be known. A CSV or sheet with a header but no data
    rows opens fine and yields no rows: the caller decides whether that is an error.
    """
    label = name if name is not None else _name_of(source)
    opened = _Source.peek(source)
    kind = _confirm(fmt if fmt is not None else format_from_name(label), label, opened.head, declared=fmt is not None)
    resources = ExitStack()
    try:
        if kind is FileFormat.XLSX:
            return _open_xlsx(opened.random_access(resources), label, sheet, resources)
        if kind is FileFormat.PARQUET:
            return _open_parquet(opened.random_access(resources), label, resources)
        data = opened.forward(resources)
        if kind is FileFormat.CSV:
            return _open_csv(data, opened.head, label, requested=encoding, delimiter=delimiter, resources=resources)
        if kind is FileFormat.JSON:
            return _open_json(data, label, encoding, records_key, resources)
        return _open_jsonl(data, opened.head, label, encoding, resources)
    except BaseException:
        resources.close()
        raise


# --------------------------------------------------------------------------------------------------------
# Sources: names, peeking, forward streams and random access
# --------------------------------------------------------------------------------------------------------


def _name_of(source: str | os.PathLike[str] | IO[bytes]) -> str:
    """The file name of a path or of a file object that knows one."""
    if isinstance(source, (str, os.PathLike)):
        return PurePath(os.fspath(source)).name
    known = getattr(source, "name", None)
    return PurePath(known).name if isinstance(known, str) and known else _DEFAULT_NAME


@dataclass(frozen=True, slots=True)
class _Source:
    """An input whose first bytes were peeked: a path, or the caller's stream and where it started."""

    origin: str | IO[bytes]
    head: bytes
    start: int

    @classmethod
    def peek(cls, source: str | os.PathLike[str] | IO[bytes]) -> _Source:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            with open(path, "rb") as handle:
                return cls(path, _read_head(handle), 0)
        start = source.tell() if _is_seekable(source) else 0
        return cls(source, _read_head(source), start)

    def forward(self, resources: ExitStack) -> IO[bytes]:
        """A buffered binary stream over the whole input, read forwards only (no seeking needed)."""
        if isinstance(self.origin, str):
            return resources.enter_context(open(self.origin, "rb"))
        return resources.enter_context(io.BufferedReader(_Prefixed(self.head, self.origin), buffer_size=_PEEK))

    def random_access(self, resources: ExitStack) -> str | IO[bytes]:
        """The path, the caller's stream rewound, or a temporary copy of a stream that cannot seek."""
        if isinstance(self.origin, str):
            return self.origin
        if _is_seekable(self.origin):
            self.origin.seek(self.start)
            return self.origin
        spool = resources.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - the table closes it
        spool.write(self.head)
        shutil.copyfileobj(self.origin, spool, 1024 * 1024)
        spool.seek(0)
        return spool


def _is_seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_head(stream: IO[bytes]) -> bytes:
    """Up to ``_PEEK`` bytes from the stream (several reads if it returns short ones)."""
    parts: list[bytes] = []
    size = 0
    while size < _PEEK:
        data = stream.read(_PEEK - size)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


class _Prefixed(io.RawIOBase):
    """The bytes already peeked from a stream, then the rest of that stream; never closes the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        if len(self._head):
            size = min(len(target), len(self._head))
            target[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        data = self._rest.read(len(target)) or b""
        target[: len(data)] = data
        return len(data)


# --------------------------------------------------------------------------------------------------------
# Recognising content
# --------------------------------------------------------------------------------------------------------

_WHAT_CONTENT = {
    "zip": "a zip archive (such as an .xlsx workbook)",
    "parquet": "a Parquet file",
    "ole": "a legacy Office file (such as an .xls workbook, which is not supported)",
    "gzip": "a gzip-compressed file",
    "binary": "binary data",
    "json-array": "a JSON array",
    "json-object": "a JSON object",
    "jsonl": "JSON Lines",
    "text": "plain text",
}
_ACCEPTS: dict[FileFormat, frozenset[str]] = {
    FileFormat.CSV: frozenset({"binary", "json-array", "json-object", "jsonl", "text"}),
    FileFormat.XLSX: frozenset({"zip"}),
    FileFormat.PARQUET: frozenset({"parquet"}),
    FileFormat.JSON: frozenset({"json-array", "json-object", "jsonl"}),
    FileFormat.JSONL: frozenset({"json-object", "jsonl"}),
}
_FORMAT_TITLES = {
    FileFormat.CSV: "CSV",
    FileFormat.XLSX: "Excel (XLSX)",
    FileFormat.PARQUET: "Parquet",
    FileFormat.JSON: "JSON",
    FileFormat.JSONL: "JSON Lines",
}


def _confirm(fmt: FileFormat, label: str, head: bytes, *, declared: bool) -> FileFormat:
    """``fmt`` if the content matches it (JSON holding JSON Lines becomes JSONL), else InputFormatError."""
    content = _sniff(head)
    if content == "empty":
        raise EmptyInputError(f"{label!r} is empty; there is nothing to read.")
    if content not in _ACCEPTS[fmt]:
        claim = "was declared as" if declared else "is named as"
        raise InputFormatError(
            f"{label!r} {claim} {_FORMAT_TITLES[fmt]} but its content looks like {_WHAT_CONTENT[content]}; "
            "rename it to match its content or convert it."
        )
    if fmt is FileFormat.JSON and content == "jsonl":
        return FileFormat.JSONL
    return fmt


def _sniff(head: bytes) -> str:
    """What the first bytes of a file look like, as a key of ``_WHAT_CONTENT`` (or ``empty``)."""
    if not head:
        return "empty"
    for magic, kind in (
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"PAR1", "parquet"),
        (b"\xd0\xcf\x11\xe0", "ole"),
        (b"\x1f\x8b", "gzip"),
    ):
        if head.startswith(magic):
            return kind
    if head.startswith(_UTF16_BOMS):
        return "text"
    text = head.removeprefix(_UTF8_BOM).decode("utf-8", errors="replace").lstrip()
    if not text:
        return "empty"
    if "\x00" in text[:1024]:
        return "binary"
    if text[0] == "[":
        return "json-array"
    if text[0] == "{":
        return "jsonl" if _looks_like_json_lines(text) else "json-object"
    return "text"


def _looks_like_json_lines(text: str) -> bool:
    """True when the text starts with a complete object followed, on a later line, by another object."""
    try:
        _, end = _JSON_DECODER.raw_decode(text)
    except ValueError:
        return False
    rest = text[end:]
    return rest.lstrip(" \t\r").startswith("\n") and rest.lstrip().startswith("{")


# --------------------------------------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------------------------------------


def _clean_names(raw: Sequence[object]) -> list[str]:
    """Header cells as unique column names: trimmed, ``column_N`` when blank, ``_2``... when repeated."""
    names: list[str] = []
    seen: set[str] = set()
    for position, cell in enumerate(raw, start=1):
        base = "" if cell is None else str(cell).replace("\ufeff", "").strip()
        base = base or f"column_{position}"
        name, suffix = base, 2
        while name in seen:
            name = f"{base}_{suffix}"
            suffix += 1
        seen.add(name)
        names.append(name)
    return names


# --------------------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Encoding:
    """How to decode a text file: the codec, how many BOM bytes to drop first, whether lines split on
    ``\\n`` bytes (true for ASCII-compatible codecs, which can then be decoded line by line)."""

    codec: str
    skip: int
    by_line: bool


def _choose_encoding(head: bytes, requested: str | None, label: str) -> _Encoding:
    """The requested encoding, else UTF-8 (BOM dropped) or UTF-16 by BOM, else UTF-8 if the head decodes,
    else cp1252."""
    bom = len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0
    if requested is not None:
        codec = _lookup_codec(requested, label)
        if codec == "utf-8":
            return _Encoding("utf-8", bom, True)
        return _Encoding(codec, 0, _splits_on_newline_bytes(codec))
    if bom:
        return _Encoding("utf-8", bom, True)
    if head.startswith(_UTF16_BOMS):
        return _Encoding("utf-16", 0, False)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _PEEK)
    except UnicodeDecodeError:
        return _Encoding("cp1252", 0, True)
    return _Encoding("utf-8", 0, True)


def _lookup_codec(requested: str, label: str) -> str:
    """The canonical name of a requested encoding (``utf-8-sig`` counts as ``utf-8``)."""
    try:
        codec = codecs.lookup(requested).name
    except LookupError:
        raise InputEncodingError(
            f"{requested!r}, the encoding given for {label!r}, is not a known encoding; "
            "use a name such as utf-8, cp1252 or latin-1."
        ) from None
    return "utf-8" if codec == "utf-8-sig" else codec


def _splits_on_newline_bytes(codec: str) -> bool:
    """True when the codec encodes ASCII as ASCII, so that a ``\\n`` byte always ends a line."""
    probe = '\r\n\t,;"az09'
    try:
        return probe.encode(codec) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def _sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: the most frequent of comma, semicolon and tab outside quotes
    (comma on a tie or when there is none)."""
    start = 0
    for line in text.splitlines(keepends=True):  # skip the blank lines the reader skips, too
        if line.strip(" \t\r\n,;"):
            break
        start += len(line)
    counts = dict.fromkeys(_CSV_DELIMITERS, 0)
    quoted = False
    for char in text[start:]:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in counts:
            counts[char] += 1
        elif char in "\r\n":
            break
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _choose_delimiter(given: str | None, label: str, head_text: str) -> str:
    if given is not None:
        if given in ("\\t", "tab"):
            return "\t"
        if len(given) != 1 or given in '"\r\n':
            raise InputFormatError(
                f"{given!r}, the delimiter given for {label!r}, is not usable; give one character such as , ; or tab."
            )
        return given
    if label.lower().endswith(".tsv"):
        return "\t"
    return _sniff_delimiter(head_text)


def _text_lines(stream: IO[bytes], encoding: _Encoding) -> Iterable[str]:
    """The stream's lines as text, line endings kept (as ``newline=''`` does)."""
    if encoding.skip:
        stream.read(encoding.skip)
    if encoding.by_line:
        # Decoding each line on its own pins a decoding error to the row being parsed.
        return map(bytes.decode, stream, repeat(encoding.codec))
    return io.TextIOWrapper(stream, encoding=encoding.codec, newline="")


def _open_csv(
    stream: IO[bytes],
    head: bytes,
    label: str,
    *,
    requested: str | None,
    delimiter: str | None,
    resources: ExitStack,
) -> Table:
    encoding = _choose_encoding(head, requested, label)
    head_text = codecs.getincrementaldecoder(encoding.codec)(errors="replace").decode(head[encoding.skip :])
    sep = _choose_delimiter(delimiter, label, head_text)
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(_text_lines(stream, encoding), delimiter=sep)
    try:
        header = next((fields for fields in reader if not _is_blank(fields)), None)
    except UnicodeDecodeError:
        raise _csv_decoding_error(label, encoding, "in its header row") from None
    except csv.Error as exc:
        raise MalformedInputError(f"{label!r} has a header row that cannot be parsed as CSV ({exc}).") from None
    if header is None:
        raise EmptyInputError(f"{label!r} has no header row; the first line must name the columns.")
    return _CsvTable(label, _clean_names(header), reader, encoding=encoding, delimiter=sep, resources=resources)


def _is_blank(fields: list[str]) -> bool:
    """True for the record of a blank (or whitespace-only) line."""
    return not any(field.strip() for field in fields)


def _csv_decoding_error(label: str, encoding: _Encoding, where: str) -> InputEncodingError:
    return InputEncodingError(
        f"{label!r} is not valid {encoding.codec} {where}; "
        "pass the file's encoding explicitly (for example utf-8, cp1252 or latin-1)."
    )


class _CsvTable(Table):
    def __init__(
        self,
        name: str,
        columns: list[str],
        reader: Iterator[list[str]],
        *,
        encoding: _Encoding,
        delimiter: str,
        resources: ExitStack,
    ) -> None:
        super().__init__(name, FileFormat.CSV, columns, resources)
        self._reader = reader
        self._encoding = encoding
        self._delimiter = delimiter

    def _iter_rows(self) -> Iterator[Row]:
        keys = list(self.columns)
        width = len(keys)
        number = 0
        try:
            for fields in self._reader:
                if len(fields) == width:
                    number += 1
                    yield Row(number, dict(zip(keys, fields, strict=False)))
                    continue
                fitted = self._fit(fields, width, number + 1)
                if fitted is not None:
                    number += 1
                    yield Row(number, dict(zip(keys, fitted, strict=False)))
        except UnicodeDecodeError:
            where = f"at row {number + 1}" if self._encoding.by_line else f"at or after row {number + 1}"
            raise _csv_decoding_error(self.name, self._encoding, where) from None
        except csv.Error as exc:
            raise MalformedInputError(f"{self.name!r} row {number + 1} cannot be parsed as CSV ({exc}).") from None

    def _fit(self, fields: list[str], width: int, number: int) -> list[str] | None:
        """A row of the wrong length: None for a blank line, padded with '' when short, else an error."""
        if len(fields) <= 1 and _is_blank(fields):
            return None
        if len(fields) < width:
            return fields + [""] * (width - len(fields))
        raise MalformedInputError(
            f"{self.name!r} row {number} has {len(fields)} fields but the header has {width}; "
            f"quote values that contain the delimiter {self._delimiter!r}."
        )


# --------------------------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------------------------


def _open_xlsx(target: str | IO[bytes], label: str, sheet: str | None, resources: ExitStack) -> Table:
    book = _load_workbook(target, label)
    resources.callback(book.close)
    worksheets = {ws.title: ws for ws in book.worksheets}
    if sheet is not None and sheet not in worksheets:
        listed = ", ".join(repr(title) for title in worksheets)
        raise InputFormatError(f"{label!r} has no sheet {sheet!r}; its sheets are {listed}.")
    chosen = [sheet] if sheet is not None else list(worksheets)
    headers: list[tuple[str, list[str]]] = []
    for title in chosen:
        header = _sheet_header(worksheets[title])
        if header is not None:
            headers.append((title, header))
    if not headers:
        which = f"sheet {sheet!r} of {label!r} has" if sheet is not None else f"{label!r} has"
        raise EmptyInputError(f"{which} no header row; the first row must name the columns.")
    columns = list(dict.fromkeys(name for _, header in headers for name in header))
    return _XlsxTable(label, columns, worksheets, headers, resources)


def _load_workbook(target: str | IO[bytes], label: str) -> Any:
    # Imported here so that only XLSX inputs pay for loading openpyxl.
    import openpyxl  # noqa: PLC0415
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it ignores; they do not matter for values.
            warnings.simplefilter("ignore", UserWarning)
            return openpyxl.load_workbook(target, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError) as exc:
        raise InputFormatError(
            f"{label!r} is a zip archive but not a readable Excel workbook ({exc}); save it again as .xlsx."
        ) from None


def _sheet_values(worksheet: Any) -> Generator[Sequence[Any]]:
    """The sheet's rows as value tuples, fully empty rows skipped."""
    # Declared dimensions can be wrong (and would cut rows off); read what is really there.
    worksheet.reset_dimensions()
    for values in worksheet.iter_rows(values_only=True):
        if values.count(None) != len(values):
            yield values


def _sheet_header(worksheet: Any) -> list[str] | None:
    """The column names of the sheet's first non-empty row (trailing empty cells trimmed), or None."""
    values = _sheet_values(worksheet)
    try:
        first = next(values, None)
    finally:
        values.close()
    if first is None:
        return None
    cells = list(first)
    while cells and cells[-1] is None:
        cells.pop()
    return _clean_names(cells)


class _XlsxTable(Table):
    def __init__(
        self,
        name: str,
        columns: list[str],
        worksheets: dict[str, Any],
        headers: list[tuple[str, list[str]]],
        resources: ExitStack,
    ) -> None:
        super().__init__(name, FileFormat.XLSX, columns, resources)
        self._worksheets = worksheets
        self._headers = headers

    def _iter_rows(self) -> Iterator[Row]:
        number = 0
        for title, header in self._headers:
            # Columns that only other sheets have are None here, so every row has every column.
            keys = header + [name for name in self.columns if name not in header]
            width = len(header)
            padding = (None,) * (len(keys) - width)
            values = _sheet_values(self._worksheets[title])
            next(values, None)  # the header row
            for in_sheet, cells in enumerate(values, start=1):
                fitted = cells if len(cells) == width else self._fit(cells, width, title, in_sheet)
                if padding:
                    fitted = (*fitted, *padding)
                number += 1
                yield Row(number, dict(zip(keys, fitted, strict=False)), title, _sheet_row=in_sheet)

    def _fit(self, cells: Sequence[Any], width: int, title: str, in_sheet: int) -> Sequence[Any]:
        """A row of the wrong length: padded with None when short; trimmed when the extra cells are
        empty, else an error (a value without a column name)."""
        if len(cells) < width:
            return tuple(cells) + (None,) * (width - len(cells))
        extra = next((i for i in range(width, len(cells)) if cells[i] is not None), None)
        if extra is None:
            return cells[:width]
        from openpyxl.utils import get_column_letter  # noqa: PLC0415

        raise MalformedInputError(
            f"{self.name!r} sheet {title!r}, row {in_sheet} has a value in column {get_column_letter(extra + 1)}, "
            "which has no header; name that column in the header row or clear the cell."
        )


# --------------------------------------------------------------------------------------------------------
# JSON (streamed)
# --------------------------------------------------------------------------------------------------------


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "object"


class _JsonScanner:
    """Walks a JSON document in a text stream, holding only a chunk-sized buffer and the current value.

    ``peek`` looks at the next significant character, ``advance`` consumes it, ``value`` decodes one
    complete value with ``raw_decode`` (reading more text only while the value is incomplete), and
    ``items`` streams the values of an array whose ``[`` was just consumed.
    """

    def __init__(self, text: TextIO, label: str, chunk: int) -> None:
        self._text = text
        self._label = label
        self._chunk = chunk
        self._buffer = ""
        self._pos = 0
        self._eof = False
        self._lines_dropped = 0  # lines in the text already discarded from the buffer, for messages

    def _more(self, at_least: int) -> bool:
        """Append the next chunk (at least ``at_least`` characters) to the unread rest; False at the end."""
        try:
            data = self._text.read(max(self._chunk, at_least))
        except UnicodeDecodeError:
            raise InputEncodingError(
                f"{self._label!r} is not valid text in its encoding near {self._where(len(self._buffer))}; "
                "pass the file's encoding explicitly (for example utf-8 or cp1252)."
            ) from None
        if not data:
            self._eof = True
            return False
        self._lines_dropped += self._buffer.count("\n", 0, self._pos)
        self._buffer = self._buffer[self._pos :] + data
        self._pos = 0
        return True

    def _where(self, pos: int) -> str:
        """``line L, column C`` of a position in the buffer (the column only when the line starts in it)."""
        line = self._lines_dropped + self._buffer.count("\n", 0, pos) + 1
        start = self._buffer.rfind("\n", 0, pos)
        if start < 0 and self._lines_dropped:
            return f"line {line}"
        return f"line {line}, column {pos - start}"

    def here(self) -> str:
        """Where the scanner is, for messages."""
        return self._where(self._pos)

    def peek(self) -> str:
        """The next non-whitespace character, not consumed ('' at the end of the text)."""
        while True:
            match = _JSON_WS.match(self._buffer, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buffer):
                return self._buffer[self._pos]
            if not self._more(0):
                return ""

    def advance(self) -> None:
        """Consume the character ``peek`` returned."""
        self._pos += 1

    def value(self) -> Any:
        """Decode the complete JSON value starting at the next significant character."""
        self.peek()
        while True:
            try:
                value, end = _JSON_DECODER.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                if self._eof or not self._maybe_cut(exc):
                    raise self.error(f"{exc.msg} at {self._where(exc.pos)}") from None
            else:
                # A value reaching the end of the buffer may continue in the next chunk (a number).
                if end < len(self._buffer) or self._eof:
                    self._pos = end
                    return value
            pending = len(self._buffer) - self._pos
            if pending > _MAX_JSON_VALUE:
                raise self.error(
                    f"the value starting at {self.here()} is longer than {_MAX_JSON_VALUE:,} characters or never ends"
                )
            self._more(pending)  # at least doubles what is held, so large values decode in linear time

    def _maybe_cut(self, exc: json.JSONDecodeError) -> bool:
        """Whether a decoding error may only mean that the value continues beyond the buffer."""
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(self._buffer) - 6

    def items(self) -> Iterator[Any]:
        """The values of the array whose ``[`` was just consumed, through its closing ``]``."""
        if self.peek() == "]":
            self.advance()
            return
        decode = _JSON_DECODER.raw_decode
        separator = _JSON_SEPARATOR.match
        while True:
            # Fast path: the value and the separator after it are both inside the buffer.
            buffer = self._buffer
            try:
                value, end = decode(buffer, self._pos)
                after = separator(buffer, end)
            except json.JSONDecodeError:
                after = None
            if after is not None and after.end() < len(buffer):
                self._pos = after.end()
                yield value
                if after.group(1) == "]":
                    return
                continue
            # Slow path: near the end of the buffer (read more), or broken JSON (report it).
            yield self.value()
            if self._separator() == "]":
                return

    def _separator(self) -> str:
        """Consume the ``,`` or ``]`` after a list element and the whitespace after it."""
        char = self.peek()
        if char not in (",", "]"):
            found = repr(char) if char else "the end of the file"
            raise self.error(f"expected ',' or ']' after a list element at {self.here()} but found {found}")
        self.advance()
        if char == ",":
            self.peek()
        return char

    def expect(self, wanted: str, context: str) -> None:
        """Consume ``wanted`` as the next significant character, else MalformedInputError."""
        char = self.peek()
        if char != wanted:
            found = repr(char) if char else "the end of the file"
            raise self.error(f"expected {wanted!r} {context} at {self.here()} but found {found}")
        self.advance()

    def error(self, detail: str) -> MalformedInputError:
        """The error for broken JSON; ``detail`` says what is wrong and where."""
        return MalformedInputError(f"{self._label!r} is not valid JSON: {detail}.")


def _open_json(
    stream: IO[bytes], label: str, requested: str | None, records_key: str | None, resources: ExitStack
) -> Table:
    codec = "utf-8" if requested is None else _lookup_codec(requested, label)
    # utf-8-sig drops a BOM if there is one.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig" if codec == "utf-8" else codec)
    scanner = _JsonScanner(text, label, _CHUNK)
    items, where = _json_records(scanner, label, records_key)
    records = _json_rows(items, label, where)
    first = next(records, None)
    if first is None:
        raise EmptyInputError(f"{label!r} has no records: {where} is empty.")
    return _FirstThenRest(label, FileFormat.JSON, list(first.values), first=first, rest=records, resources=resources)


def _json_records(scanner: _JsonScanner, label: str, records_key: str | None) -> tuple[Iterator[Any], str]:
    """The stream of record values and a phrase saying where they are (for messages)."""
    char = scanner.peek()
    if char == "[":
        scanner.advance()
        return scanner.items(), "the top-level list"
    if char == "{":
        scanner.advance()
        return _records_in_object(scanner, label, records_key)
    raise InputFormatError(f"{label!r} does not start with a JSON array or object.")


def _records_in_object(scanner: _JsonScanner, label: str, records_key: str | None) -> tuple[Iterator[Any], str]:
    """Scan the top-level object's members up to the list of records and return its elements.

    With ``records_key`` that key's list; otherwise the first list whose first element is an object.
    Other members are decoded and dropped (lists element by element).
    """
    keys: list[str] = []
    empty_lists: list[str] = []
    if scanner.peek() == "}":
        scanner.advance()
    else:
        while True:
            if scanner.peek() != '"':
                raise scanner.error(f"expected a key of the top-level object at {scanner.here()}")
            key = scanner.value()
            keys.append(key)
            scanner.expect(":", f"after the key {key!r}")
            wanted = records_key is None or key == records_key
            if scanner.peek() == "[":
                scanner.advance()
                first = scanner.peek()
                if wanted and (first == "{" or records_key is not None):
                    return scanner.items(), f"the list under the key {key!r}"
                if wanted and first == "]":
                    empty_lists.append(key)
                for _ in scanner.items():
                    pass
            elif records_key is not None and key == records_key:
                kind = _json_kind(scanner.value())
                raise MalformedInputError(f"{label!r} has a {kind} under the key {key!r}, not a list of records.")
            else:
                scanner.value()
            if scanner.peek() == "}":
                scanner.advance()
                break
            scanner.expect(",", "between the members of the top-level object")
    return _no_records(label, keys, empty_lists, records_key)


def _no_records(
    label: str, keys: list[str], empty_lists: list[str], records_key: str | None
) -> tuple[Iterator[Any], str]:
    listed = ", ".join(repr(key) for key in keys) or "none"
    if records_key is not None:
        raise MalformedInputError(f"{label!r} has no key {records_key!r} at the top level; its keys are {listed}.")
    if empty_lists:
        raise EmptyInputError(f"{label!r} has no records: the list under the key {empty_lists[0]!r} is empty.")
    raise MalformedInputError(
        f"{label!r} is a JSON object without a list of records under any key (keys: {listed}); "
        "make it an array of objects or name the key that holds them."
    )


def _json_rows(items: Iterator[Any], label: str, where: str) -> Iterator[Row]:
    for number, value in enumerate(items, start=1):
        if type(value) is not dict:
            raise MalformedInputError(
                f"{label!r} element {number} of {where} is a JSON {_json_kind(value)}, not an object; "
                "every record must be an object."
            )
        yield Row(number, value)


class _FirstThenRest(Table):
    """A table whose first row was read at open time (to learn the columns) and whose rest follows."""

    def __init__(
        self,
        name: str,
        fmt: FileFormat,
        columns: list[str],
        *,
        first: Row,
        rest: Iterator[Row],
        resources: ExitStack,
    ) -> None:
        super().__init__(name, fmt, columns, resources)
        self._first = first
        self._rest = rest

    def _iter_rows(self) -> Iterator[Row]:
        yield self._first
        yield from self._rest


# --------------------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------------------


def _open_jsonl(stream: IO[bytes], head: bytes, label: str, requested: str | None, resources: ExitStack) -> Table:
    encoding = _choose_encoding(head, requested or "utf-8", label)
    if encoding.skip:
        stream.read(encoding.skip)
    lines: Iterable[bytes | str] = stream
    if encoding.codec != "utf-8":
        if not encoding.by_line:
            lines = io.TextIOWrapper(stream, encoding=encoding.codec)
        else:
            lines = map(bytes.decode, stream, repeat(encoding.codec))
    records = _jsonl_rows(lines, label, encoding.codec)
    first = next(records, None)
    if first is None:
        raise EmptyInputError(f"{label!r} has no records: every line is blank.")
    return _FirstThenRest(label, FileFormat.JSONL, list(first.values), first=first, rest=records, resources=resources)


def _jsonl_rows(lines: Iterable[bytes | str], label: str, codec: str) -> Iterator[Row]:
    loads = json.loads
    number = 0
    line_number = 0
    try:
        for line in lines:
            line_number += 1
            try:
                value = loads(line)
            except UnicodeDecodeError:  # raised here when json decodes the bytes of a UTF-8 line itself
                raise _jsonl_encoding_error(label, codec, line_number) from None
            except json.JSONDecodeError as exc:
                if not line.strip():
                    continue
                raise MalformedInputError(
                    f"{label!r} line {line_number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    "each line must hold one JSON object."
                ) from None
            if type(value) is not dict:
                raise MalformedInputError(
                    f"{label!r} line {line_number} is a JSON {_json_kind(value)}, not an object; "
                    "each line must hold one JSON object."
                )
            number += 1
            yield Row(number, value)
    except UnicodeDecodeError:  # raised while decoding the next line in another encoding
        raise _jsonl_encoding_error(label, codec, line_number + 1) from None


def _jsonl_encoding_error(label: str, codec: str, line_number: int) -> InputEncodingError:
    return InputEncodingError(
        f"{label!r} is not valid {codec} at line {line_number}; "
        "pass the file's encoding explicitly (for example cp1252)."
    )


# --------------------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------------------


def _open_parquet(target: str | IO[bytes], label: str, resources: ExitStack) -> Table:
    # Imported here so that only Parquet inputs pay for loading pyarrow.
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    # The system allocator hands freed batches back to the OS; Arrow's default pool keeps them (tens of MB).
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        # A buffered, not pre-buffered, read keeps memory to about one batch even for huge row groups.
        parquet = pq.ParquetFile(target, buffer_size=1024 * 1024, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise MalformedInputError(f"{label!r} starts like a Parquet file but cannot be read ({exc}).") from None
    resources.callback(parquet.close)
    names = list(parquet.schema_arrow.names)
    if not names or parquet.metadata.num_rows == 0:
        raise EmptyInputError(f"{label!r} has no records.")
    return _ParquetTable(label, _clean_names(names), parquet, resources)


class _ParquetTable(Table):
    def __init__(self, name: str, columns: list[str], parquet: Any, resources: ExitStack) -> None:
        super().__init__(name, FileFormat.PARQUET, columns, resources)
        self._parquet = parquet

    def _iter_rows(self) -> Iterator[Row]:
        keys = list(self.columns)
        number = 0
        batches = self._parquet.iter_batches(batch_size=_parquet_batch_rows(self._parquet.metadata), use_threads=False)
        for batch in batches:
            for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                number += 1
                yield Row(number, dict(zip(keys, values, strict=False)))


def _parquet_batch_rows(metadata: Any) -> int:
    """Rows per batch: ``_PARQUET_BATCH``, fewer when rows are wide, so a batch stays near a few MiB."""
    if metadata.num_row_groups == 0:
        return _PARQUET_BATCH
    group = metadata.row_group(0)
    row_bytes = group.total_byte_size / max(group.num_rows, 1)
    return max(1, min(_PARQUET_BATCH, int(_PARQUET_BATCH_BYTES / max(row_bytes, 1.0))))
