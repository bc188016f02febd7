"""The Parquet sink: column types inferred from the rows, widened as needed, written in row groups."""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import suppress
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .storage import Upload
from .writer_base import _STREAM_BUFFER, Row, TableSink, Target, _to_text

PARQUET_BATCH_ROWS = 10_000


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --- Parquet -------------------------------------------------------------------------------------------


class _Kind(StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STRING = "string"


_ARROW_TYPES: dict[_Kind, pa.DataType] = {
    _Kind.BOOL: pa.bool_(),
    _Kind.INT: pa.int64(),
    _Kind.FLOAT: pa.float64(),
    _Kind.STRING: pa.string(),
}


def _kind_of(value: Any) -> _Kind:
    if isinstance(value, bool):
        return _Kind.BOOL
    if isinstance(value, int):
        return _Kind.INT if _INT64_MIN <= value <= _INT64_MAX else _Kind.STRING
    if isinstance(value, float):
        return _Kind.FLOAT
    return _Kind.STRING


def _widen(kind: _Kind | None, value: Any) -> _Kind | None:
    """The narrowest kind holding both the values seen so far (``kind``) and ``value``."""
    if value is None or kind is _Kind.STRING:
        return kind
    found = _kind_of(value)
    if kind is None or kind is found:
        return found
    if {kind, found} == {_Kind.INT, _Kind.FLOAT}:
        return _Kind.FLOAT
    return _Kind.STRING


def _parquet_value(value: Any, kind: _Kind) -> Any:
    if value is None:
        return None
    if kind is _Kind.STRING:
        return _to_text(value)
    if kind is _Kind.FLOAT:
        return float(value)
    return value


_KIND_OF_TYPE: dict[pa.DataType, _Kind] = {arrow: kind for kind, arrow in _ARROW_TYPES.items()}


class _ParquetSink(TableSink):
    """A Parquet file written a batch (row group) at a time. Without a ``schema``, column types are inferred
    and widen when a later value needs it (the rows written so far are then rewritten once, streaming)."""

    def __init__(self, target: Target, columns: Sequence[str], schema: pa.Schema | None = None) -> None:
        super().__init__(target, columns)
        self._fixed = schema is not None
        if schema is not None:
            if schema.names != self.columns:
                raise ValueError(f"the schema's columns {schema.names} are not the table's {self.columns}")
            self._kinds = [_KIND_OF_TYPE[field.type] for field in schema]
        else:
            self._kinds = [_Kind.STRING] * len(self.columns)
        self._batch: list[Row] = []
        self._upload: Upload | None = None
        self._stream: io.BufferedWriter | None = None
        self._writer: pq.ParquetWriter | None = None
        self._published_early = False

    def _schema(self) -> pa.Schema:
        return pa.schema([(c, _ARROW_TYPES[k]) for c, k in zip(self.columns, self._kinds, strict=True)])

    def _open(self, kinds: list[_Kind]) -> pq.ParquetWriter:
        self._kinds = kinds
        self._upload = self.target.create()
        self._stream = io.BufferedWriter(self._upload, buffer_size=_STREAM_BUFFER)
        self._writer = pq.ParquetWriter(self._stream, self._schema())
        return self._writer

    def _publish(self, writer: pq.ParquetWriter) -> None:
        writer.close()
        assert self._stream is not None
        self._stream.close()
        self._writer = self._stream = self._upload = None

    def _kinds_for(self, rows: Sequence[Row]) -> list[_Kind]:
        """The column kinds after seeing ``rows``: inferred on the first batch, widened afterwards."""
        if self._fixed:
            return self._kinds
        started: list[_Kind | None] = list(self._kinds) if self._writer else [None] * len(self.columns)
        kinds = []
        for column, first in zip(self.columns, started, strict=True):
            kind = first
            for row in rows:
                kind = _widen(kind, row.get(column))
            kinds.append(kind or _Kind.STRING)
        return kinds

    def _append(self, writer: pq.ParquetWriter, rows: Sequence[Row]) -> None:
        arrays = [
            pa.array([_parquet_value(row.get(column), kind) for row in rows], type=_ARROW_TYPES[kind])
            for column, kind in zip(self.columns, self._kinds, strict=True)
        ]
        writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema()))

    def _rewrite(self, writer: pq.ParquetWriter, kinds: list[_Kind]) -> pq.ParquetWriter:
        """Publish what is written so far, then copy it into a new file with wider column types, a batch at a
        time; the new file replaces it when the sink is closed."""
        self._publish(writer)
        self._published_early = True
        with self.target.read_back() as previous, pq.ParquetFile(previous) as source:
            new_writer = self._open(kinds)
            for batch in source.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                self._append(new_writer, batch.to_pylist())
        return new_writer

    def _flush(self) -> None:
        rows, self._batch = self._batch, []
        kinds = self._kinds_for(rows)
        if self._writer is None:
            writer = self._open(kinds)
        elif kinds != self._kinds:
            writer = self._rewrite(self._writer, kinds)
        else:
            writer = self._writer
        self._append(writer, rows)

    def write(self, row: Row) -> None:
        self._batch.append(row)
        self.rows += 1
        if len(self._batch) >= PARQUET_BATCH_ROWS:
            self._flush()

    def close(self) -> int:
        try:
            if self._batch:
                self._flush()
            if self._writer is None:  # no rows at all: an empty file that still has the columns
                self._append(self._open(self._kinds), [])
            assert self._writer is not None
            self._publish(self._writer)
        except BaseException:
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        self._batch = []
        if self._upload is not None:
            with suppress(Exception):
                self._upload.abort()
        if self._writer is not None:
            with suppress(Exception):
                self._writer.close()  # its stream is closed: nothing more is written
        self._writer = self._stream = self._upload = None
        if self._published_early:
            with suppress(Exception):
                self.target.remove()
