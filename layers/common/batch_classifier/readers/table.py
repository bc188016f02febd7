"""What every reader hands out: ``Row`` and ``Table``, the rows of a table whose first row was read to learn its
columns, and header cells made into column names."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import islice, repeat
from types import TracebackType
from typing import Any, Self

from ..formats import FileFormat


@dataclass(frozen=True, slots=True, init=False)
class Row:
    """One data row: its 1-based number across the whole file and its values by column name.

    Empty cells are ``None`` in XLSX and Parquet and ``''`` in CSV. ``sheet`` is the XLSX sheet the row
    comes from, else ``None``.
    """

    number: int
    values: dict[str, Any]
    sheet: str | None = None
    # The row's number within its sheet (XLSX only), so that messages point into the right sheet.
    _sheet_row: int = field(default=0, repr=False, compare=False, kw_only=True)

    def __init__(self, number: int, values: dict[str, Any], sheet: str | None = None, *, _sheet_row: int = 0) -> None:
        # One Row is built per input row: writing the slots directly is about twice as fast as the
        # generated frozen __init__ (which goes through object.__setattr__ for every field).
        _SET_NUMBER(self, number)
        _SET_VALUES(self, values)
        _SET_SHEET(self, sheet)
        _SET_SHEET_ROW(self, _sheet_row)

    def where(self) -> str:
        """Where the row is, for messages: ``row 12`` or ``sheet 'Sheet1', row 12``."""
        if self.sheet is None:
            return f"row {self.number}"
        return f"sheet {self.sheet!r}, row {self._sheet_row or self.number}"


@dataclass(slots=True)
class Block:
    """Consecutive data rows, column by column: ``columns[name][i]`` is the value of row number ``start + i``.

    ``rows``: the rows themselves when the reader made them (an XLSX row's :meth:`Row.where` names its sheet).
    ``sheet``: the XLSX sheet all its rows come from (made without rows), ``sheet_start`` the first one's number in
    that sheet."""

    start: int
    size: int
    columns: dict[str, list[Any]]
    rows: list[Row] | None = None
    sheet: str | None = None
    sheet_start: int = 0

    def where(self, position: int) -> str:
        """Where the ``position``-th row of the block is, for messages (see :meth:`Row.where`)."""
        if self.rows is not None:
            return self.rows[position].where()
        if self.sheet is not None:
            return f"sheet {self.sheet!r}, row {self.sheet_start + position}"
        return f"row {self.start + position}"

    @classmethod
    def of(cls, rows: Sequence[Row], columns: Sequence[str]) -> Block:
        """A block of ``rows`` (consecutive), with the values of ``columns`` (None where a row has none)."""
        block = cls.of_records(rows[0].number, [row.values for row in rows], columns)
        block.rows = list(rows)
        return block

    @classmethod
    def of_records(cls, start: int, records: list[dict[str, Any]], columns: Sequence[str]) -> Block:
        """A block of the rows numbered from ``start`` whose values are ``records`` (None where one has none)."""
        by_column = {column: list(map(dict.get, records, repeat(column))) for column in columns}
        return cls(start, len(records), by_column)


#: Rows a block holds when a reader hands out rows and they are gathered into blocks.
BLOCK_ROWS = 2048


def blocks_of(rows: Iterable[Row], columns: Sequence[str], size: int = BLOCK_ROWS) -> Iterator[Block]:
    """``rows`` gathered into blocks of up to ``size``."""
    rows = iter(rows)
    while chunk := list(islice(rows, size)):
        yield Block.of(chunk, columns)


_SET_NUMBER: Any = vars(Row)["number"].__set__
_SET_VALUES: Any = vars(Row)["values"].__set__
_SET_SHEET: Any = vars(Row)["sheet"].__set__
_SET_SHEET_ROW: Any = vars(Row)["_sheet_row"].__set__


class Table(ABC):
    """An opened input file: its name, format and columns, and a single streaming pass over its rows.

    Use it as a context manager (or call ``close``) to release the file. A file object given to
    ``open_table`` is not closed: it belongs to the caller.
    """

    name: str
    format: FileFormat
    columns: list[str]

    def __init__(self, name: str, fmt: FileFormat, columns: list[str], resources: ExitStack) -> None:
        self.name = name
        self.format = fmt
        self.columns = columns
        self._resources = resources
        self._started = False
        self._fraction: Callable[[], float | None] = lambda: None

    def fraction_read(self) -> float | None:
        """How much of the input the rows read so far took, from 0 to 1, when the table can tell (a file read
        forwards from its path: bytes; Parquet: rows); None otherwise."""
        return self._fraction()

    def track_bytes(self, position: Callable[[], int], size: int) -> None:
        """Measure :meth:`fraction_read` as ``position()``, the bytes read so far, of an input of ``size`` bytes."""
        if size > 0:
            self._fraction = lambda: min(position() / size, 1.0)

    def rows(self) -> Iterator[Row]:
        """The data rows in file order; a table can be iterated once (by rows or by blocks)."""
        self._start()
        return self._iter_rows()

    def blocks(self) -> Iterator[Block]:
        """The data rows in file order, a block of consecutive rows at a time (see :class:`Block`)."""
        self._start()
        return self._iter_blocks()

    def _start(self) -> None:
        if self._started:
            raise RuntimeError(f"the rows of {self.name!r} have already been read; open the file again")
        self._started = True

    @abstractmethod
    def _iter_rows(self) -> Iterator[Row]: ...

    def _iter_blocks(self) -> Iterator[Block]:
        """Blocks gathered from the rows; a reader that parses whole blocks hands them out directly instead."""
        return blocks_of(self._iter_rows(), self.columns)

    def close(self) -> None:
        """Release the file and anything opened for it (idempotent)."""
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.format.value} columns={self.columns!r}>"


def clean_names(raw: Sequence[object]) -> list[str]:
    """Header cells as unique column names: trimmed, ``column_N`` when blank, ``_2``... when repeated."""
    names: list[str] = []
    seen: set[str] = set()
    for position, cell in enumerate(raw, start=1):
        base = "" if cell is None else str(cell).replace("\ufeff", "").strip()
        base = base or f"column_{position}"
        name, suffix = base, 2
        while name in seen:
            name = f"{base}_{suffix}"
            suffix += 1
        seen.add(name)
        names.append(name)
    return names


#: Blocks from a table's first row on, given the first row and the columns (a reader's own block path).
BlockReader = Callable[[Row, list[str]], Iterator[Block]]


class FirstThenRest(Table):
    """A table whose first row was read at open time (its keys are the columns) and whose rest follows, as rows or,
    when the reader has a path of its own for them (``blocks``), as blocks."""

    def __init__(
        self,
        name: str,
        fmt: FileFormat,
        first: Row,
        rest: Iterator[Row],
        resources: ExitStack,
        blocks: BlockReader | None = None,
    ) -> None:
        super().__init__(name, fmt, list(first.values), resources)
        self._first = first
        self._rest = rest
        self._blocks = blocks

    def _iter_rows(self) -> Iterator[Row]:
        yield self._first
        yield from self._rest

    def _iter_blocks(self) -> Iterator[Block]:
        if self._blocks is None:
            return super()._iter_blocks()
        return self._blocks(self._first, self.columns)
