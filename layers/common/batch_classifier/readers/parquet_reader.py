"""Parquet: read one record batch at a time with pyarrow, batches sized to stay near a MiB (the size of a CSV block)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

from ..errors import EmptyInputError, MalformedInputError
from ..formats import FileFormat
from .table import Block, Row, Table, clean_names

# Rows per Parquet record batch, and the data size a batch aims at (wide rows get smaller batches).
_PARQUET_BATCH = 4096
_PARQUET_BATCH_BYTES = 1024 * 1024


def open_parquet(target: str | IO[bytes], label: str, resources: ExitStack) -> Table:
    # Imported here so that only Parquet inputs pay for loading pyarrow.
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    # The system allocator hands freed batches back to the OS; Arrow's default pool keeps them (tens of MB).
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        # A buffered, not pre-buffered, read keeps memory to about one batch even for huge row groups.
        parquet = pq.ParquetFile(target, buffer_size=1024 * 1024, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise MalformedInputError(f"{label!r} starts like a Parquet file but cannot be read ({exc}).") from None
    resources.callback(parquet.close)
    names = list(parquet.schema_arrow.names)
    if not names or parquet.metadata.num_rows == 0:
        raise EmptyInputError(f"{label!r} has no records.")
    return _ParquetTable(label, clean_names(names), parquet, resources)


class _ParquetTable(Table):
    def __init__(self, name: str, columns: list[str], parquet: Any, resources: ExitStack) -> None:
        super().__init__(name, FileFormat.PARQUET, columns, resources)
        self._parquet = parquet
        self._number = 0
        self._fraction = lambda: self._number / parquet.metadata.num_rows

    def _iter_rows(self) -> Iterator[Row]:
        keys = list(self.columns)
        for batch in self._batches():
            for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                self._number += 1
                yield Row(self._number, dict(zip(keys, values, strict=False)))

    def _iter_blocks(self) -> Iterator[Block]:
        keys = list(self.columns)
        for batch in self._batches():
            if batch.num_rows:
                start, self._number = self._number + 1, self._number + batch.num_rows
                columns = dict(zip(keys, (column.to_pylist() for column in batch.columns), strict=True))
                yield Block(start, batch.num_rows, columns)

    def _batches(self) -> Iterator[Any]:
        return self._parquet.iter_batches(  # type: ignore[no-any-return]
            batch_size=_parquet_batch_rows(self._parquet.metadata), use_threads=False
        )


def _parquet_batch_rows(metadata: Any) -> int:
    """Rows per batch: ``_PARQUET_BATCH``, fewer when rows are wide, so a batch stays near a MiB."""
    if metadata.num_row_groups == 0:
        return _PARQUET_BATCH
    group = metadata.row_group(0)
    row_bytes = group.total_byte_size / max(group.num_rows, 1)
    return max(1, min(_PARQUET_BATCH, int(_PARQUET_BATCH_BYTES / max(row_bytes, 1.0))))
