"""JSON, streamed: an array of objects, or an object holding one, walked over fixed-size text chunks and decoded
one element at a time."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from itertools import chain
from typing import IO, Any, TextIO

from ..errors import EmptyInputError, InputEncodingError, InputFormatError, MalformedInputError
from ..formats import FileFormat
from .encoding import UTF8_BOM, lookup_codec
from .sources import PEEK, Prefixed
from .table import Block, FirstThenRest, Row, Table, blocks_of

# Characters read per step by the JSON scanner (tests shrink it to cross chunk boundaries).
_CHUNK = 64 * 1024
# Largest single JSON value (in characters) the scanner will hold; guards against an unterminated string.
_MAX_JSON_VALUE = 64 * 1024 * 1024
_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")
_JSON_DECODER = json.JSONDecoder()
_WS_BYTES = b" \t\r\n"
# Bytes of lines decoded at once as blocks (tests shrink it); a chunk is completed to its line's end.
CHUNK = 1 << 20
# Longest line the line-at-a-time path takes in one piece; a longer one goes to the scanner.
_MAX_LINE = 1024 * 1024
# Value types after which a record orjson decoded is looked at: a float may be a widened integer, and a nested
# value may hold one.
SUSPECT = frozenset((float, dict, list))
# orjson reads integers outside [-2**63, 2**64) as floats; json keeps them exact.
_WIDENED = float(2**63)


def json_kind(value: object) -> str:
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

    def __init__(self, text: TextIO, label: str, chunk: int, *, lines_before: int = 0) -> None:
        self._text = text
        self._label = label
        self._chunk = chunk
        self._buffer = ""
        self._pos = 0
        self._eof = False
        self._lines_dropped = lines_before  # lines in the text already discarded from the buffer, for messages
        self._line_start = True  # whether the buffer starts a line (it does until something is dropped)

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
        self._line_start = self._line_start and not self._pos
        self._buffer = self._buffer[self._pos :] + data
        self._pos = 0
        return True

    def _where(self, pos: int) -> str:
        """``line L, column C`` of a position in the buffer (the column only when the line starts in it)."""
        line = self._lines_dropped + self._buffer.count("\n", 0, pos) + 1
        start = self._buffer.rfind("\n", 0, pos)
        if start < 0 and self._lines_dropped and not self._line_start:
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

    def items(self, state: str = "open") -> Iterator[Any]:
        """The values of the array whose ``[`` was just consumed, through its closing ``]``.

        ``state`` resumes an array read partly by other means: ``"comma"`` after the ``,`` that follows an
        element (a value must come), ``"value"`` after an element (a ``,`` or ``]`` must come).
        """
        if state == "value" and self._separator() == "]":
            return
        if state == "open" and self.peek() == "]":
            self.advance()
            return
        self.peek()
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


def open_json(
    stream: IO[bytes], label: str, requested: str | None, records_key: str | None, resources: ExitStack
) -> Table:
    codec = "utf-8" if requested is None else lookup_codec(requested, label)
    by_line: _ArrayByLine | None = None
    if codec == "utf-8":
        opening = stream.readline()
        if opening.startswith(UTF8_BOM):
            opening = opening[len(UTF8_BOM) :]
        if opening.strip(_WS_BYTES) == b"[":
            # An array opened on a line of its own: its elements are read a line at a time while each fills one.
            where = "the top-level list"
            by_line = _ArrayByLine(stream, label, where)
            records = by_line.rows
        else:
            scanner = _JsonScanner(_text_from(opening, stream, "utf-8"), label, _CHUNK)
            items, where = _json_records(scanner, label, records_key)
            records = _json_rows(items, label, where)
    else:
        scanner = _JsonScanner(io.TextIOWrapper(stream, encoding=codec), label, _CHUNK)
        items, where = _json_records(scanner, label, records_key)
        records = _json_rows(items, label, where)
    first = next(records, None)
    if first is None:
        raise EmptyInputError(f"{label!r} has no records: {where} is empty.")
    return FirstThenRest(
        label, FileFormat.JSON, first, records, resources, by_line.blocks if by_line is not None else None
    )


def _text_from(pending: bytes, stream: IO[bytes], codec: str) -> TextIO:
    """The text of ``pending`` and then the rest of ``stream``."""
    return io.TextIOWrapper(io.BufferedReader(Prefixed(pending, stream), buffer_size=PEEK), encoding=codec)


class _ArrayByLine:
    """The elements of a top-level array whose ``[`` line was read, while each is an object that fills its line
    (``{...},``, or ``{...}]`` or ``{...}`` for the last), decoded with orjson, several times faster than
    ``raw_decode``; from the first line that is anything else, the scanner reads the rest, exactly as it reads a
    whole file. orjson accepts a subset of what ``json`` does and gives the same values, except that it makes an
    integer beyond 64 bits a float: a record that holds such a float, or a nested value (not looked into), is left
    to the scanner as well.

    As blocks, a chunk of lines that ends with a comma is decoded at once, as an array of its own: the elements it
    holds are those the scanner would read. The first chunk that is anything else (the array's end, a carriage
    return, a value orjson reads otherwise) goes back to be read line by line, as the rows are."""

    def __init__(self, stream: IO[bytes], label: str, where: str) -> None:
        import orjson  # noqa: PLC0415 - loaded only when a JSON file is read

        self._orjson = orjson
        self.stream = stream
        self.label = label
        self.where = where
        self.line_number = 1  # lines read so far
        self.number = 0  # records given
        self.state = "open"  # then "comma" or "value" after an element, "end", or "scanner" once it reads the rest
        self.rows = self._rows()

    def _rows(self) -> Iterator[Row]:
        loads, failed = self._orjson.loads, self._orjson.JSONDecodeError
        while line := self.stream.readline(_MAX_LINE):
            body = line.rstrip(_WS_BYTES)
            end = body[-1:]
            if (len(line) == _MAX_LINE and not line.endswith(b"\n")) or b"\r" in body:
                break  # a line too long to hold whole, or a carriage return the scanner would count as a line end
            if end == b",":
                body, after = body[:-1], "comma"
            elif end == b"}":
                after = "value"
            elif end == b"]":
                body, after = body[:-1], "end"
            elif not body:
                self.line_number += 1
                continue
            else:
                break
            try:
                value = loads(body)  # surrounding whitespace is allowed
            except failed:
                break
            if type(value) is not dict or (
                not SUSPECT.isdisjoint(map(type, value.values())) and not plain_values(value)
            ):
                break
            self.line_number += 1
            self.number += 1
            self.state = after
            yield Row(self.number, value)
            if after == "end":
                return  # the array's end: like the scanner, nothing after it is read
        state, self.state = self.state, "scanner"
        scanner = _JsonScanner(
            _text_from(line, self.stream, "utf-8"), self.label, _CHUNK, lines_before=self.line_number
        )
        yield from _json_rows(scanner.items(state), self.label, self.where, start=self.number + 1)

    def blocks(self, first: Row, columns: list[str]) -> Iterator[Block]:
        loads, failed = self._orjson.loads, self._orjson.JSONDecodeError
        pending = [first]
        while self.state in ("open", "comma") and (chunk := self.stream.read(CHUNK)):
            if not chunk.endswith(b"\n"):
                chunk += self.stream.readline(_MAX_LINE)
            body = chunk.rstrip(b" \t\n")
            values = None
            if body.endswith(b",") and b"\r" not in chunk:
                with suppress(failed):
                    values = loads(b"[" + body[:-1] + b"]")
            if not values or not plain_records(values):
                self.stream = io.BufferedReader(Prefixed(chunk, self.stream))
                break
            start = self.number + 1 - len(pending)
            self.line_number += chunk.count(b"\n")
            self.number += len(values)
            self.state = "comma"
            yield Block.of_records(start, [row.values for row in pending] + values, columns)
            pending = []
        yield from blocks_of(chain(pending, self.rows), columns)


def plain_records(values: list[Any]) -> bool:
    """True when each of ``values`` is an object that decoding it alone would give as it is (:func:`plain_values`)."""
    if not {dict}.issuperset(map(type, values)):
        return False
    if SUSPECT.isdisjoint(map(type, chain.from_iterable(map(dict.values, values)))):
        return True
    return all(map(plain_values, values))


def plain_values(record: dict[str, Any]) -> bool:
    """True when no float in the record could be an integer orjson widened, and it holds no nested value."""
    for value in record.values():
        if type(value) is float:
            if abs(value) >= _WIDENED:
                return False
        elif type(value) in (dict, list):
            return False
    return True


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
                kind = json_kind(scanner.value())
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


def _json_rows(items: Iterator[Any], label: str, where: str, start: int = 1) -> Iterator[Row]:
    for number, value in enumerate(items, start=start):
        if type(value) is not dict:
            raise MalformedInputError(
                f"{label!r} element {number} of {where} is a JSON {json_kind(value)}, not an object; "
                "every record must be an object."
            )
        yield Row(number, value)
