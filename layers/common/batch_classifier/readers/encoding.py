"""Choosing how to decode a text input (CSV, JSON, JSON Lines): the encoding asked for, else what the first bytes
show (a BOM, valid UTF-8), else cp1252."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from ..errors import InputEncodingError
from .sources import PEEK

UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True, slots=True)
class Encoding:
    """How to decode a text file: the codec, how many BOM bytes to drop first, whether lines split on
    ``\\n`` bytes (true for ASCII-compatible codecs, which can then be decoded line by line)."""

    codec: str
    skip: int
    by_line: bool


def choose_encoding(head: bytes, requested: str | None, label: str) -> Encoding:
    """The requested encoding, else UTF-8 (BOM dropped) or UTF-16 by BOM, else UTF-8 if the head decodes,
    else cp1252."""
    bom = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
    if requested is not None:
        codec = lookup_codec(requested, label)
        if codec == "utf-8":
            return Encoding("utf-8", bom, True)
        return Encoding(codec, 0, _splits_on_newline_bytes(codec))
    if bom:
        return Encoding("utf-8", bom, True)
    if head.startswith(UTF16_BOMS):
        return Encoding("utf-16", 0, False)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < PEEK)
    except UnicodeDecodeError:
        return Encoding("cp1252", 0, True)
    return Encoding("utf-8", 0, True)


def lookup_codec(requested: str, label: str) -> str:
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
