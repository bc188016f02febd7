"""The XLSX sink: results sheets split at Excel's row limit, column widths from a sample, review columns with
drop-downs, and sheets of figures (summary, confusion) after the table. The workbook itself is written by
:mod:`.xlsx_file`, a row at a time, each sheet spooled to a temporary file until the sink is closed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from openpyxl.utils import get_column_letter, quote_sheetname

from .errors import OutputFormatError
from .evaluation import REVIEW_COLUMNS, REVIEW_LABEL_COLUMN, VERDICT_COLUMN, ReviewVerdict
from .formats import REVIEW_LISTS_SHEET
from .writer_base import (
    _STREAM_BUFFER,
    SHEET_NAME,
    Row,
    Sheet,
    Styled,
    TableSink,
    Target,
    _xlsx_cell,
    _xlsx_row,
    _xlsx_text,
)
from .xlsx_file import CellStyle, SheetPart, XlsxBook, color_scale, list_validation, style_attribute

XLSX_SHEET_ROWS = 1_048_575  # data rows in one Excel sheet (1,048,576 rows with the header)
XLSX_SAMPLE_ROWS = 100  # rows the column widths are taken from
XLSX_MAX_WIDTH = 60  # characters: a column with wider text gets this width and wrapped cells
XLSX_MIN_WIDTH = 6
XLSX_INLINE_LIST_CHARS = 255  # Excel's limit on a drop-down list written in the validation itself
REVIEW_AFTER = ("class", "rationale")  # the review columns come right after these (the prediction, its reasons)
REVIEW_NOTE_WIDTH = 40


# --- XLSX ----------------------------------------------------------------------------------------------


_BOLD = CellStyle(bold=True)
_WRAPPED = CellStyle(wrap=True)
_REVIEW_HEADER = CellStyle(bold=True, fill="FFF2CC")  # the reviewer's columns
_COMPRESSION = 6  # zlib level of the package: 1 writes 100k rows about a tenth faster, in a file 40% larger


def with_review_columns(columns: Sequence[str]) -> list[str]:
    """``columns`` with the reviewer's columns right after the prediction and its rationale (at the end when
    neither is there); review columns already among ``columns`` are moved there, not repeated."""
    kept = [column for column in columns if column not in REVIEW_COLUMNS]
    anchors = [index for index, column in enumerate(kept) if column in REVIEW_AFTER]
    at = anchors[-1] + 1 if anchors else len(kept)
    return [*kept[:at], *REVIEW_COLUMNS, *kept[at:]]


def _inline_list(values: Sequence[str]) -> str | None:
    """A drop-down list written in the validation itself (``"a,b,c"``), or None when Excel cannot hold it so."""
    text = ",".join(values)
    if len(text) > XLSX_INLINE_LIST_CHARS or any("," in v or '"' in v for v in values):
        return None
    return f'"{text}"'


def _drop_down(formula: str, column: int, prompt: str) -> str:
    """A list validation over every data row a sheet can hold in one column (one element, whatever the rows)."""
    letter = get_column_letter(column)
    return list_validation(
        f"{letter}2:{letter}{XLSX_SHEET_ROWS + 1}",
        formula,
        prompt=prompt,
        error_title="Not in the list",
        error="Choose a value from the drop-down list.",
    )


def _text_width(value: Any) -> int:
    """The width a cell's value needs, in characters: its longest line."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else str(value)
    return max(map(len, text.split("\n"))) if "\n" in text else len(text)


class _XlsxSink(TableSink):
    """Rows spooled sheet by sheet (``XLSX_SHEET_ROWS`` a sheet) by :class:`~.xlsx_file.XlsxBook`, saved into the
    target at close.

    The first ``XLSX_SAMPLE_ROWS`` rows are held until the column widths are known (which columns wrap their cells
    depends on them); from then on each row goes straight to the sheet's spool file.
    """

    def __init__(
        self,
        target: Target,
        columns: Sequence[str],
        max_rows: int | None = None,
        review_categories: Sequence[str] | None = None,
    ) -> None:
        review = review_categories is not None
        super().__init__(target, with_review_columns(columns) if review else columns)
        self._max_rows = max_rows
        self._categories = [_xlsx_text(str(name)) for name in review_categories or ()] if review else None
        self._category_list: str | None = None  # the review_label drop-down's formula, once known
        self._book = XlsxBook()
        self._sheets: list[SheetPart] = []
        self._header = [_xlsx_text(str(column)) for column in self.columns]
        self._sample: list[list[Any]] | None = []  # None once the first sheet is started
        self._widths: list[float] = []
        self._attrs: list[str] = [""] * len(self.columns)  # each column's style attribute (wrapped or not)

    def _size_columns(self) -> None:
        """Widths from the header and the sampled rows; columns of wide text are capped and wrapped."""
        sample = self._sample or []
        wrapped = style_attribute(self._book.style(_WRAPPED))
        for index, header in enumerate(self._header):
            widest = max((_text_width(row[index]) for row in sample), default=0)
            width = max(len(header) + 3, widest + 1, XLSX_MIN_WIDTH)  # + 3: room for the filter button
            if self._categories is not None and header == REVIEW_LABEL_COLUMN:
                width = max([width, *(len(name) + 3 for name in self._categories)])  # + 3: the drop-down arrow
            elif self._categories is not None and header in REVIEW_COLUMNS[2:]:
                width = max(width, REVIEW_NOTE_WIDTH)
            if widest > XLSX_MAX_WIDTH:
                self._attrs[index] = wrapped
            self._widths.append(min(width, XLSX_MAX_WIDTH))

    def _new_sheet(self) -> None:
        self._close_sheet()
        number = len(self._sheets) + 1
        sheet = self._book.add_sheet(SHEET_NAME if number == 1 else f"{SHEET_NAME}-{number}")
        sheet.widths = dict(enumerate(self._widths, start=1))
        sheet.freeze = "A2"
        bold, shaded = self._book.style(_BOLD), self._book.style(_REVIEW_HEADER)
        review = REVIEW_COLUMNS if self._categories is not None else ()
        sheet.append(self._header, [shaded if value in review else bold for value in self._header])
        if self._categories is not None:
            self._add_drop_downs(sheet)
        self._sheets.append(sheet)

    def _add_drop_downs(self, sheet: SheetPart) -> None:
        """The review columns' drop-downs; the first call writes a category list too long to hold inline on a hidden
        sheet, which every results sheet then refers to."""
        categories = self._categories or []
        if self._category_list is None:
            self._category_list = _inline_list(categories)
        if self._category_list is None:
            lists = self._book.add_sheet(REVIEW_LISTS_SHEET, hidden=True)
            for name in categories:
                lists.append([name])
            self._category_list = f"{quote_sheetname(REVIEW_LISTS_SHEET)}!$A$1:$A${max(len(categories), 1)}"
        review_label = self.columns.index(REVIEW_LABEL_COLUMN) + 1
        verdict = self.columns.index(VERDICT_COLUMN) + 1
        verdicts = _inline_list([v.value for v in ReviewVerdict])
        assert verdicts is not None
        sheet.validations.append(
            _drop_down(self._category_list, review_label, "The right category, if not the prediction")
        )
        sheet.validations.append(_drop_down(verdicts, verdict, "Is the prediction correct, wrong, or are you unsure?"))

    def _close_sheet(self) -> None:
        """Set the filter of the sheet being written over its header and rows."""
        if self._sheets and self.columns:
            sheet = self._sheets[-1]
            sheet.auto_filter = f"A1:{get_column_letter(len(self.columns))}{sheet.rows}"

    def _start(self) -> None:
        """Size the columns from the sample, start the first sheet and write the sampled rows to it."""
        self._size_columns()
        sample, self._sample = self._sample or [], None
        self._new_sheet()
        for cells in sample:
            self._append(cells)

    def _append(self, cells: list[Any]) -> None:
        sheet = self._sheets[-1]
        if sheet.rows > XLSX_SHEET_ROWS:  # the header and a full sheet of rows
            self._new_sheet()
            sheet = self._sheets[-1]
        sheet.append_data(cells, self._attrs)

    def write(self, row: Row) -> None:
        if self._max_rows is not None and self.rows >= self._max_rows:
            raise OutputFormatError(
                f"Cannot write {self.target.name!r}: the results have more than {self._max_rows:,} rows, "
                "more than the XLSX output is allowed; write CSV, JSONL or Parquet instead."
            )
        cells = _xlsx_row(row, self.columns)
        self.rows += 1
        if self._sample is None:
            self._append(cells)
            return
        self._sample.append(cells)
        if len(self._sample) >= XLSX_SAMPLE_ROWS:
            self._start()

    def add_sheets(self, sheets: Sequence[Sheet]) -> None:
        if self._sample is not None:
            self._start()
        for spec in sheets:
            _write_sheet(self._book, self._book.add_sheet(spec.title), spec)

    def close(self) -> int:
        upload = self.target.create()
        stream = io.BufferedWriter(upload, buffer_size=_STREAM_BUFFER)
        try:
            if self._sample is not None:
                self._start()
            self._close_sheet()
            self._book.save(stream, compresslevel=_COMPRESSION)  # with data descriptors if it cannot seek (S3)
            stream.close()
        except BaseException:
            upload.abort()
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        self._sample = None
        self._book.discard()


def _write_sheet(book: XlsxBook, sheet: SheetPart, spec: Sheet) -> None:
    """Write a small sheet of figures: widths, frozen panes and a heat map, then its rows."""
    columns = max((len(row) for row in spec.rows), default=0)
    for index in range(columns):
        if index < len(spec.widths):
            width = spec.widths[index]
        else:
            widest = max((_text_width(_plain(row[index])) for row in spec.rows if index < len(row)), default=0)
            width = max(XLSX_MIN_WIDTH, widest + 2)
        sheet.widths[index + 1] = min(width, XLSX_MAX_WIDTH)
    sheet.freeze = spec.freeze
    if spec.heat_map:
        sheet.color_scales.append(color_scale(spec.heat_map, "FFFFFF", "F8696B"))
    for row in spec.rows:
        sheet.append([_xlsx_cell(_plain(value)) for value in row], [_sheet_style(book, value) for value in row])


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Styled) else value


def _sheet_style(book: XlsxBook, value: Any) -> int:
    if not isinstance(value, Styled) or not (value.bold or value.number_format):
        return 0
    return book.style(CellStyle(bold=value.bold, number_format=value.number_format))
