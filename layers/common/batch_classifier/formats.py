"""The file formats the product reads and writes, named once."""

from __future__ import annotations

from enum import StrEnum
from pathlib import PurePosixPath

from .errors import InputFormatError


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    JSON = "json"
    JSONL = "jsonl"
    PARQUET = "parquet"


_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": FileFormat.CSV,
    ".tsv": FileFormat.CSV,
    ".txt": FileFormat.CSV,
    ".xlsx": FileFormat.XLSX,
    ".xlsm": FileFormat.XLSX,
    ".json": FileFormat.JSON,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
}


def format_from_name(name: str) -> FileFormat:
    """The format a file name's extension announces, or InputFormatError naming the accepted ones."""
    suffix = PurePosixPath(name).suffix.lower()
    try:
        return _EXTENSIONS[suffix]
    except KeyError:
        accepted = ", ".join(sorted(_EXTENSIONS))
        raise InputFormatError(
            f"{PurePosixPath(name).name!r} has an unsupported extension {suffix or '(none)'!r}; use one of {accepted}."
        ) from None
