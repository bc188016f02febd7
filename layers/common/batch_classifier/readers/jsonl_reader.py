"""JSON Lines (NDJSON): one object per line; blank lines are skipped.

Rows are decoded a line at a time. Blocks (what ``prepare`` and ``ConvertInput`` read) are decoded a chunk of
lines at a time in UTF-8: orjson decodes every line of the chunk in one pass, and a chunk where that is not
plainly the same as decoding line by line (a blank or bad line, a value that is not an object, a float or a
nested value, bytes that are not UTF-8) is decoded line by line instead, with the same values and errors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from itertools import repeat
from typing import IO, Any

from ..errors import EmptyInputError, InputEncodingError, MalformedInputError
from ..formats import FileFormat
from .encoding import choose_encoding
from .json_reader import SUSPECT, json_kind, plain_records, plain_values
from .table import Block, FirstThenRest, Row, Table

# Bytes read per chunk of lines by the block path (tests shrink it); a chunk is completed to its line's end.
CHUNK = 1 << 20


def open_jsonl(stream: IO[bytes], head: bytes, label: str, requested: str | None, resources: ExitStack) -> Table:
    encoding = choose_encoding(head, requested or "utf-8", label)
    if encoding.skip:
        stream.read(encoding.skip)
    lines: Iterable[bytes | str] = stream
    if encoding.codec != "utf-8":
        if not encoding.by_line:
            lines = io.TextIOWrapper(stream, encoding=encoding.codec)
        else:
            lines = map(bytes.decode, stream, repeat(encoding.codec))
    reader = _JsonLines(label, encoding.codec, stream if encoding.codec == "utf-8" else None)
    records = reader.rows(lines)
    first = next(records, None)
    if first is None:
        raise EmptyInputError(f"{label!r} has no records: every line is blank.")
    return FirstThenRest(
        label, FileFormat.JSONL, first, records, resources, reader.blocks if reader.stream is not None else None
    )


class _JsonLines:
    """Decodes lines into rows, counting lines (for messages) and records (the rows' numbers) across both paths.

    ``stream``: the UTF-8 bytes, read a chunk at a time for blocks; None when the file is in another encoding."""

    def __init__(self, label: str, codec: str, stream: IO[bytes] | None) -> None:
        self.label = label
        self.codec = codec
        self.stream = stream
        self.line_number = 0  # lines read so far
        self.number = 0  # records given so far
        self._loads = _loads()

    def rows(self, lines: Iterable[bytes | str]) -> Iterator[Row]:
        """The rows of ``lines``, decoded one at a time (blank lines skipped, a bad line a named error)."""
        loads, label = self._loads, self.label
        try:
            for line in lines:
                self.line_number += 1
                try:
                    value = loads(line)
                except UnicodeDecodeError:  # raised here when json decodes the bytes of a UTF-8 line itself
                    raise _jsonl_encoding_error(label, self.codec, self.line_number) from None
                except json.JSONDecodeError as exc:
                    if not line.strip():
                        continue
                    raise MalformedInputError(
                        f"{label!r} line {self.line_number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                        "each line must hold one JSON object."
                    ) from None
                if type(value) is not dict:
                    raise MalformedInputError(
                        f"{label!r} line {self.line_number} is a JSON {json_kind(value)}, not an object; "
                        "each line must hold one JSON object."
                    )
                self.number += 1
                yield Row(self.number, value)
        except UnicodeDecodeError:  # raised while decoding the next line in another encoding
            raise _jsonl_encoding_error(label, self.codec, self.line_number + 1) from None

    def blocks(self, first: Row, columns: list[str]) -> Iterator[Block]:
        """``first``, then the rest of the stream, a chunk of lines at a time (:data:`CHUNK` bytes and the rest of
        the last line); a block holds the records of one chunk."""
        import orjson  # noqa: PLC0415 - loaded only when a JSON Lines file is read

        assert self.stream is not None
        stream, loads, failed = self.stream, orjson.loads, orjson.JSONDecodeError
        records: list[dict[str, Any]] = [first.values]
        start = first.number
        while chunk := stream.read(CHUNK):
            if not chunk.endswith(b"\n"):
                chunk += stream.readline()
            lines = chunk.split(b"\n")
            if chunk.endswith(b"\n"):
                lines.pop()
            try:
                values = list(map(loads, lines))
            except failed:  # a blank line, or one orjson cannot read: line by line, as rows are read
                values = []
            if values and plain_records(values):
                self.line_number += len(lines)
                self.number += len(values)
                records += values
            else:
                records += [row.values for row in self.rows(lines)]
            if records:
                yield Block.of_records(start, records, columns)
                start += len(records)
                records = []
        if records:
            yield Block.of_records(start, records, columns)


def _loads() -> Callable[[bytes | str], Any]:
    """``json.loads``, sped up by orjson where it gives the same value.

    orjson accepts a subset of what ``json`` does (not NaN, a lone surrogate, or invalid UTF-8, all left to
    ``json``, which also raises the errors as ever) and gives the same values, except that it makes an integer
    beyond 64 bits a float: a record holding a float that large, or a nested value, is decoded again by ``json``.
    """
    import orjson  # noqa: PLC0415 - loaded only when a JSON Lines file is read

    fast, failed, plain = orjson.loads, orjson.JSONDecodeError, json.loads

    def loads(line: bytes | str) -> Any:
        try:
            value = fast(line)
        except failed:
            return plain(line)
        if type(value) is dict and not SUSPECT.isdisjoint(map(type, value.values())) and not plain_values(value):
            return plain(line)
        return value

    return loads


def _jsonl_encoding_error(label: str, codec: str, line_number: int) -> InputEncodingError:
    return InputEncodingError(
        f"{label!r} is not valid {codec} at line {line_number}; "
        "pass the file's encoding explicitly (for example cp1252)."
    )
