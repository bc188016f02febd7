"""JSON Lines (NDJSON): one object per line, decoded a line at a time; blank lines are skipped."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import repeat
from typing import IO

from ..errors import EmptyInputError, InputEncodingError, MalformedInputError
from ..formats import FileFormat
from .encoding import choose_encoding
from .json_reader import json_kind
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
                    f"{label!r} line {line_number} is a JSON {json_kind(value)}, not an object; "
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
