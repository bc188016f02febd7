"""Streaming readers for the input files: CSV, XLSX, JSON, JSON Lines and Parquet.

``open_table`` opens a file (a path or a binary file object), decides its format from the extension and
confirms it by peeking at the first bytes, and returns a ``Table``: the file's ``columns``, known before any
row is read, and ``rows()``, a single pass over the data rows as ``Row`` objects.

The streaming promise: memory does not grow with the number of rows. Each reader keeps only a fixed-size
buffer plus the row being handed out (Parquet: one record batch), so a million-row file is read in the same
memory as a thousand-row one:

- CSV in UTF-8 is parsed by pyarrow a block of whole rows (about 1 MiB) at a time (``csv_native``); any other
  encoding, and any block pyarrow would not read exactly as ``csv.reader`` does, is decoded line by line and
  parsed with ``csv.reader``. Quoted fields spanning lines stay intact either way.
- XLSX is read with python-calamine (``xlsx_native``), which loads one sheet's cells at a time, or, for a
  workbook whose values calamine would read differently or whose sheets are very large, with openpyxl in
  read-only mode, which parses the sheet XML as it goes. (The exception to the promise, inherent to the
  format: the workbook's shared-strings table, every distinct text of the workbook, is loaded at open time,
  and with calamine the sheet being read.)
- JSON is never loaded whole: an array opened on a line of its own is read a line at a time while each line
  holds one record (decoded with orjson; as blocks, a megabyte of such lines at once); otherwise a scanner
  walks the document over fixed-size text chunks and decodes one array element at a time with
  ``json.JSONDecoder.raw_decode``.
- JSON Lines is decoded one line at a time (as blocks, a megabyte of lines at once with orjson, line by line
  where that could differ); Parquet one record batch at a time.

CSV and JSON inputs are read strictly forwards, so a stream that cannot seek (an S3 body) works as is.
XLSX and Parquet need random access: a stream that cannot seek is first copied to a temporary file.

Row numbers count data rows from 1 (the header and blank lines or fully empty rows are not counted), across
the whole file; for XLSX, ``Row.where()`` names the sheet and the row's number within that sheet. Error
messages name the file and the row, line or element that is wrong, and say what to do.

Modules: ``table`` (``Row``, ``Table``, column names), ``sources`` (peeking, forward streams, random access),
``detect`` (recognising a format by its content), ``encoding`` (choosing a text encoding), and one reader per
format: ``csv_reader`` (with its pyarrow fast path ``csv_native``), ``xlsx_reader`` (with its calamine fast path
``xlsx_native``), ``json_reader``, ``jsonl_reader``, ``parquet_reader``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import IO

from ..formats import FileFormat, format_from_name
from .csv_reader import open_csv
from .detect import confirm, detect_format
from .json_reader import open_json
from .jsonl_reader import open_jsonl
from .parquet_reader import open_parquet
from .sources import Source, name_of
from .table import Row, Table
from .xlsx_reader import open_xlsx

__all__ = ["Row", "Table", "detect_format", "open_table"]


def open_table(
    source: str | os.PathLike[str] | IO[bytes],
    *,
    name: str | None = None,
    fmt: FileFormat | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    records_key: str | None = None,
    size: int | None = None,
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

    ``size``: the bytes of a ``source`` stream, when its caller knows them, so that the table can tell how much of
    it has been read (:meth:`.Table.fraction_read`; a path's size is its file's).

    A file without a header (CSV, XLSX) or without a single record (JSON, JSON Lines, Parquet) raises
    ``EmptyInputError`` here, since its columns cannot be known. A CSV or sheet with a header but no data
    rows opens fine and yields no rows: the caller decides whether that is an error.
    """
    label = name if name is not None else name_of(source)
    opened = Source.peek(source)
    kind = confirm(fmt if fmt is not None else format_from_name(label), label, opened.head, declared=fmt is not None)
    resources = ExitStack()
    try:
        if kind is FileFormat.XLSX:
            return open_xlsx(opened.random_access(resources), label, sheet, resources)
        if kind is FileFormat.PARQUET:
            return open_parquet(opened.random_access(resources), label, resources)
        data, position = opened.forward(resources)
        if kind is FileFormat.CSV:
            table = open_csv(data, opened.head, label, requested=encoding, delimiter=delimiter, resources=resources)
        elif kind is FileFormat.JSON:
            table = open_json(data, label, encoding, records_key, resources)
        else:
            table = open_jsonl(data, opened.head, label, encoding, resources)
        total = opened.size(size)
        if total:
            table.track_bytes(position, total)
        return table
    except BaseException:
        resources.close()
        raise
