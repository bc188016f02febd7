"""Recognising a file by its first bytes: the format its extension announces, confirmed by its content."""

from __future__ import annotations

import json

from ..errors import EmptyInputError, InputFormatError
from ..formats import FileFormat, format_from_name
from .encoding import UTF8_BOM, UTF16_BOMS

_JSON_DECODER = json.JSONDecoder()

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


def detect_format(name: str, head: bytes) -> FileFormat:
    """The format of the file called ``name`` whose first bytes are ``head``: its extension, confirmed.

    ``head`` should be the first 64 KiB (or the whole file if shorter). A ``.json`` file holding JSON
    Lines is reported as JSONL. Raises ``InputFormatError`` when the extension is unknown or the content
    does not match it, and ``EmptyInputError`` when there is no content.
    """
    return confirm(format_from_name(name), name, head, declared=False)


def confirm(fmt: FileFormat, label: str, head: bytes, *, declared: bool) -> FileFormat:
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
    if head.startswith(UTF16_BOMS):
        return "text"
    text = head.removeprefix(UTF8_BOM).decode("utf-8", errors="replace").lstrip()
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
