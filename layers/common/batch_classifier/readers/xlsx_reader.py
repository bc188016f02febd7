"""XLSX: every sheet (or one), each with its own header row, read with python-calamine (``xlsx_native``) or, where
its values would differ, with openpyxl in read-only mode. A results workbook of this product is read from its row
sheets (`results`, `results-2`, ...), without its figure sheets."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import ExitStack
from itertools import islice
from typing import IO, Any

from ..errors import EmptyInputError, InputFormatError, MalformedInputError
from ..formats import FileFormat, data_sheets
from .table import BLOCK_ROWS, Block, Row, Table, clean_names
from .xlsx_native import native_workbook


def open_xlsx(target: str | IO[bytes], label: str, sheet: str | None, resources: ExitStack) -> Table:
    native = native_workbook(target, sheet)
    values: Callable[[str], Generator[Sequence[Any]]]
    if native is not None:
        resources.callback(native.close)
        titles, values = native.titles, native.values
    else:
        book = _load_workbook(target, label)
        resources.callback(book.close)
        worksheets = {ws.title: ws for ws in book.worksheets}
        titles = list(worksheets)
        values = lambda title: _sheet_values(worksheets[title])  # noqa: E731
    if sheet is not None and sheet not in titles:
        listed = ", ".join(repr(title) for title in titles)
        raise InputFormatError(f"{label!r} has no sheet {sheet!r}; its sheets are {listed}.")
    chosen = [sheet] if sheet is not None else data_sheets(titles)  # a results workbook: its rows only
    headers: list[tuple[str, list[str]]] = []
    for title in chosen:
        header = _sheet_header(values(title))
        if header is not None:
            headers.append((title, header))
    if not headers:
        which = f"sheet {sheet!r} of {label!r} has" if sheet is not None else f"{label!r} has"
        raise EmptyInputError(f"{which} no header row; the first row must name the columns.")
    columns = list(dict.fromkeys(name for _, header in headers for name in header))
    return _XlsxTable(label, columns, values, headers, resources)


def _load_workbook(target: str | IO[bytes], label: str) -> Any:
    # Imported here so that only XLSX inputs pay for loading openpyxl.
    import openpyxl  # noqa: PLC0415
    from openpyxl.utils.exceptions import InvalidFileException  # noqa: PLC0415

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it ignores; they do not matter for values.
            warnings.simplefilter("ignore", UserWarning)
            return openpyxl.load_workbook(target, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError) as exc:
        raise InputFormatError(
            f"{label!r} is a zip archive but not a readable Excel workbook ({exc}); save it again as .xlsx."
        ) from None


def _sheet_values(worksheet: Any) -> Generator[Sequence[Any]]:
    """The sheet's rows as value tuples, fully empty rows skipped."""
    # Declared dimensions can be wrong (and would cut rows off); read what is really there.
    worksheet.reset_dimensions()
    for values in worksheet.iter_rows(values_only=True):
        if values.count(None) != len(values):
            yield values


def _sheet_header(values: Generator[Sequence[Any]]) -> list[str] | None:
    """The column names of the sheet's first non-empty row (trailing empty cells trimmed), or None."""
    try:
        first = next(values, None)
    finally:
        values.close()
    if first is None:
        return None
    cells = list(first)
    while cells and cells[-1] is None:
        cells.pop()
    return clean_names(cells)


class _XlsxTable(Table):
    def __init__(
        self,
        name: str,
        columns: list[str],
        values: Callable[[str], Generator[Sequence[Any]]],
        headers: list[tuple[str, list[str]]],
        resources: ExitStack,
    ) -> None:
        super().__init__(name, FileFormat.XLSX, columns, resources)
        self._values = values
        self._headers = headers

    def _iter_rows(self) -> Iterator[Row]:
        number = 0
        for title, header, values in self._sheets():
            # Columns that only other sheets have are None here, so every row has every column.
            keys = header + [name for name in self.columns if name not in header]
            width = len(header)
            padding = (None,) * (len(keys) - width)
            for in_sheet, cells in enumerate(values, start=1):
                fitted = cells if len(cells) == width else self._fit(cells, width, title, in_sheet)
                if padding:
                    fitted = (*fitted, *padding)
                number += 1
                yield Row(number, dict(zip(keys, fitted, strict=False)), title, _sheet_row=in_sheet)

    def _iter_blocks(self) -> Iterator[Block]:
        """Blocks of one sheet's rows each, made column by column from its cells (no :class:`Row` a row)."""
        start = 1
        for title, header, values in self._sheets():
            width = len(header)
            others = [name for name in self.columns if name not in header]
            in_sheet = 1
            while chunk := list(islice(values, BLOCK_ROWS)):
                if {width} != set(map(len, chunk)):
                    chunk = [
                        cells if len(cells) == width else self._fit(cells, width, title, in_sheet + position)
                        for position, cells in enumerate(chunk)
                    ]
                columns = dict(zip(header, map(list, zip(*chunk, strict=True)), strict=True))
                columns.update((name, [None] * len(chunk)) for name in others)
                yield Block(start, len(chunk), columns, sheet=title, sheet_start=in_sheet)
                start += len(chunk)
                in_sheet += len(chunk)

    def _sheets(self) -> Iterator[tuple[str, list[str], Iterator[Sequence[Any]]]]:
        """Each sheet read: its title, its header and its rows after the header."""
        for title, header in self._headers:
            values = self._values(title)
            next(values, None)  # the header row
            yield title, header, values

    def _fit(self, cells: Sequence[Any], width: int, title: str, in_sheet: int) -> Sequence[Any]:
        """A row of the wrong length: padded with None when short; trimmed when the extra cells are
        empty, else an error (a value without a column name)."""
        if len(cells) < width:
            return tuple(cells) + (None,) * (width - len(cells))
        extra = next((i for i in range(width, len(cells)) if cells[i] is not None), None)
        if extra is None:
            return cells[:width]
        from openpyxl.utils import get_column_letter  # noqa: PLC0415

        raise MalformedInputError(
            f"{self.name!r} sheet {title!r}, row {in_sheet} has a value in column {get_column_letter(extra + 1)}, "
            "which has no header; name that column in the header row or clear the cell."
        )
