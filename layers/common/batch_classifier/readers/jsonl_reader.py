"""JSON Lines (NDJSON): one object per line, decoded a line at a time; blank lines are skipped."""

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
from .json_reader import SUSPECT, json_kind, plain_values
from .table import FirstThenRest, Row, Table


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
    records = _jsonl_rows(lines, label, encoding.codec)
    first = next(records, None)
    if first is None:
        raise EmptyInputError(f"{label!r} has no records: every line is blank.")
    return FirstThenRest(label, FileFormat.JSONL, list(first.values), first=first, rest=records, resources=resources)


def _jsonl_rows(lines: Iterable[bytes | str], label: str, codec: str) -> Iterator[Row]:
    loads = _loads()
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
                    f"{label!r} line {line_number} is a JSON {json_kind(value)}, not an object; "
                    "each line must hold one JSON object."
                )
            number += 1
            yield Row(number, value)
    except UnicodeDecodeError:  # raised while decoding the next line in another encoding
        raise _jsonl_encoding_error(label, codec, line_number + 1) from None


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
