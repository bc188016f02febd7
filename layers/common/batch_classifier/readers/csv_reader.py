"""CSV (and TSV): decoded line by line, parsed with ``csv.reader``; the delimiter is sniffed from the header line
unless given."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import chain, repeat
from typing import IO

from ..errors import EmptyInputError, InputEncodingError, InputFormatError, MalformedInputError
from ..formats import FileFormat
from .csv_native import FAST_DELIMITERS, NativeCsv
from .encoding import Encoding, choose_encoding
from .table import Block, Row, Table, blocks_of, clean_names

# Largest CSV field; csv's default (128 KiB) is too small for long texts, an unbounded one unsafe.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024
_CSV_DELIMITERS = (",", ";", "\t")


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


def _text_lines(stream: IO[bytes], encoding: Encoding) -> Iterable[str]:
    """The stream's lines as text, line endings kept (as ``newline=''`` does)."""
    if encoding.skip:
        stream.read(encoding.skip)
    if encoding.by_line:
        # Decoding each line on its own pins a decoding error to the row being parsed.
        return map(bytes.decode, stream, repeat(encoding.codec))
    return io.TextIOWrapper(stream, encoding=encoding.codec, newline="")


def open_csv(
    stream: IO[bytes],
    head: bytes,
    label: str,
    *,
    requested: str | None,
    delimiter: str | None,
    resources: ExitStack,
) -> Table:
    encoding = choose_encoding(head, requested, label)
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
    columns = clean_names(header)
    # UTF-8 data rows go to pyarrow's parser; csv.reader takes over wherever that would not give the same rows.
    native = NativeCsv(stream, columns, sep) if encoding.codec == "utf-8" and sep in FAST_DELIMITERS else None
    return _CsvTable(label, columns, reader, encoding=encoding, delimiter=sep, resources=resources, native=native)


def _is_blank(fields: list[str]) -> bool:
    """True for the record of a blank (or whitespace-only) line."""
    return not any(field.strip() for field in fields)


def _csv_decoding_error(label: str, encoding: Encoding, where: str) -> InputEncodingError:
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
        encoding: Encoding,
        delimiter: str,
        resources: ExitStack,
        native: NativeCsv | None = None,
    ) -> None:
        super().__init__(name, FileFormat.CSV, columns, resources)
        self._reader = reader
        self._encoding = encoding
        self._delimiter = delimiter
        self._native = native

    def _iter_rows(self) -> Iterator[Row]:
        number = 0
        if self._native is not None:
            number, rest = yield from self._native.rows(number)
            if not rest:
                return
            self._hand_over(rest)
        yield from self._reader_rows(number)

    def _iter_blocks(self) -> Iterator[Block]:
        number = 0
        if self._native is not None:
            blocks = self._native.blocks(number)
            while True:
                try:
                    start, values = next(blocks)
                except StopIteration as done:
                    number, rest = done.value
                    break
                yield Block(start, len(values[0]), dict(zip(self.columns, values, strict=True)))
            if not rest:
                return
            self._hand_over(rest)
        yield from blocks_of(self._reader_rows(number), self.columns)

    def _hand_over(self, rest: bytes) -> None:
        """Go on with ``csv.reader`` (the same options) over the bytes the fast path handed back, then the rest of the
        file."""
        assert self._native is not None
        lines = map(bytes.decode, chain(io.BytesIO(rest), self._native.stream), repeat(self._encoding.codec))
        self._reader = csv.reader(lines, delimiter=self._delimiter)

    def _reader_rows(self, number: int) -> Iterator[Row]:
        """The rows ``csv.reader`` parses, numbered from ``number + 1``."""
        keys = list(self.columns)
        width = len(keys)
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
