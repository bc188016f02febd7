"""The fast path of the CSV reader: UTF-8 data rows parsed a block at a time by pyarrow's CSV parser.

The bytes after the header are read in blocks cut after a line end where the count of quote characters since the
block's start is even (a line end outside quotes in a well-formed file). pyarrow parses each block into string
columns, and the rows are handed out as ``csv.reader`` would have produced them. Memory stays at a few blocks.

pyarrow's parse agrees with ``csv.reader``'s (non-strict, doubled quotes, quotes only at a field's start) for
every block it accepts, except on a carriage return that does not end a ``\\r\\n``, which the line-by-line
decoding rejects and pyarrow accepts; such a block is left to ``csv.reader``. Anything else unusual stops the
fast path for the rest of the file, from the start of the block where it was seen, and hands those bytes back
so that ``csv.reader`` reads them exactly as it always did: short rows (padded), blank lines with spaces, a row
with too many fields or bytes that are not UTF-8 (named errors with the row number), a field longer than a block
can hold, or a quote inside an unquoted field that made the cut fall inside a quoted field. That last case is
caught by a sentinel row appended to the block: if the block ended inside a quoted field the sentinel merges
into it and no longer comes back on its own.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from itertools import repeat
from typing import IO

from .table import Row

# Bytes read per step; a block grows (to a limit well below csv's field limit) until it holds a whole row.
BLOCK = 1 << 20
MAX_BLOCK = 8 << 20
# pyarrow's own block: larger than any block given to it, so that each is parsed in one piece.
_PARSE_BLOCK = 64 << 20
# Characters no real row holds alone: every field of the sentinel row is this one control character.
_SENTINEL_VALUE = "\x01"
FAST_DELIMITERS = (",", ";", "\t", "|")
_LONE_CR = re.compile(rb"\r(?!\n)")


def row_end(block: bytes) -> int:
    """The index just after the last ``\\n`` preceded by an even number of quote characters in ``block``,
    or -1 when there is none."""
    total = block.count(b'"')
    after = 0
    end = len(block)
    line_end = block.rfind(b"\n")
    while line_end >= 0:
        after += block.count(b'"', line_end, end)
        end = line_end
        if (total - after) % 2 == 0:
            return line_end + 1
        line_end = block.rfind(b"\n", 0, line_end)
    return -1


class NativeCsv:
    """Parses the data rows of a UTF-8 CSV with pyarrow until something needs ``csv.reader``."""

    def __init__(self, stream: IO[bytes], columns: list[str], delimiter: str) -> None:
        import pyarrow as pa  # noqa: PLC0415 - loaded only when a CSV is read
        import pyarrow.csv as pa_csv  # noqa: PLC0415

        self._pa = pa
        self._pa_csv = pa_csv
        self.stream = stream
        self._keys = list(columns)
        self._block = BLOCK
        names = [f"f{position}" for position in range(len(columns))]
        self._read = pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=_PARSE_BLOCK)
        self._parse = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=True)
        self._convert = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=True,
        )
        sentinel_field = f'"{_SENTINEL_VALUE}"'.encode()
        self._sentinel = delimiter.encode().join([sentinel_field] * len(columns)) + b"\n"

    def rows(self, number: int) -> Generator[Row, None, tuple[int, bytes]]:
        """Rows numbered from ``number + 1``; returns what :meth:`blocks` returns."""
        blocks = self.blocks(number)
        while True:
            try:
                start, values = next(blocks)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            # The rows are made by map and zip, without a Python loop of their own.
            records = map(dict, map(zip, repeat(self._keys), zip(*values, strict=True)))
            yield from map(Row, range(start, start + len(values[0])), records)

    def blocks(self, number: int) -> Generator[tuple[int, list[list[str]]], None, tuple[int, bytes]]:
        """``(number of the first row, the columns' values)`` for each block parsed, rows numbered from ``number + 1``;
        returns the last number given and the bytes left to ``csv.reader`` (from the start of the block it could not
        take up to a line end; empty when the file is done)."""
        carry = b""
        while True:
            data = self.stream.read(self._block)
            final = not data
            pending = carry + data if carry else data
            if final:
                cut = len(pending)
            else:
                cut = row_end(pending)
                if cut < 0:
                    if len(pending) > MAX_BLOCK:
                        return number, pending + self.stream.readline()
                    carry = pending
                    continue
            block, carry = pending[:cut], pending[cut:]
            values = self._parse_block(block, final=final)
            if values is None:
                return number, block + carry + (b"" if final else self.stream.readline())
            if values[0]:
                yield number + 1, values
                number += len(values[0])
            if final:
                return number, b""

    def _parse_block(self, block: bytes, *, final: bool) -> list[list[str]] | None:
        """The block's columns as lists of strings, or None when ``csv.reader`` must read it."""
        if not block:
            return [[] for _ in self._keys]
        if b"\r" in block and _LONE_CR.search(block):
            return None  # a lone carriage return: the line-by-line reader's own error (or quoted text) decides
        if final and not block.endswith(b"\n"):
            block += b"\n"  # the file's last row without a line end; the sentinel needs a line of its own
        pa = self._pa
        try:
            table = self._pa_csv.read_csv(
                pa.BufferReader(block + self._sentinel),
                read_options=self._read,
                parse_options=self._parse,
                convert_options=self._convert,
            )
        except pa.ArrowException:
            return None
        if table.num_rows == 0:
            return None
        columns = [column.to_pylist() for column in table.columns]
        if any(column[-1] != _SENTINEL_VALUE for column in columns):
            return None  # the block ended inside a quoted field
        for column in columns:
            column.pop()
        return columns
