"""The XLSX sink: results sheets split at Excel's row limit, column widths from a sample, review columns with
drop-downs, and sheets of figures (summary, confusion) after the table.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.formatting.rule import ColorScaleRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.datavalidation import DataValidation

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
    _project,
    _xlsx_cell,
    _xlsx_text,
)

XLSX_SHEET_ROWS = 1_048_575  # data rows in one Excel sheet (1,048,576 rows with the header)
XLSX_SAMPLE_ROWS = 100  # rows the column widths are taken from
XLSX_MAX_WIDTH = 60  # characters: a column with wider text gets this width and wrapped cells
XLSX_MIN_WIDTH = 6
XLSX_INLINE_LIST_CHARS = 255  # Excel's limit on a drop-down list written in the validation itself
REVIEW_AFTER = ("class", "rationale")  # the review columns come right after these (the prediction, its reasons)
REVIEW_NOTE_WIDTH = 40


# --- XLSX ----------------------------------------------------------------------------------------------


_BOLD = Font(bold=True)
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_REVIEW_FILL = PatternFill(fill_type="solid", start_color="FFF2CC", end_color="FFF2CC")  # the reviewer's columns


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


def _drop_down(formula: str, column: int, prompt: str) -> DataValidation:
    """A list validation over every data row a sheet can hold in one column (one object, whatever the rows)."""
    letter = get_column_letter(column)
    validation = DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        showDropDown=False,  # False shows the arrow (the attribute means "hide the drop-down" in the file format)
        showErrorMessage=True,
        errorTitle="Not in the list",
        error="Choose a value from the drop-down list.",
        showInputMessage=True,
        prompt=prompt,
    )
    validation.add(f"{letter}2:{letter}{XLSX_SHEET_ROWS + 1}")
    return validation


def _text_width(value: Any) -> int:
    """The width a cell's value needs, in characters: its longest line."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else str(value)
    return max(map(len, text.split("\n"))) if "\n" in text else len(text)


class _XlsxSink(TableSink):
    """Rows spooled by openpyxl's write-only sheets (``XLSX_SHEET_ROWS`` a sheet), saved into the target at close.

    The first ``XLSX_SAMPLE_ROWS`` rows are held until the column widths are known (openpyxl writes them before
    the first row); from then on each row goes straight to the sheet's spool file.
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
        self._workbook = Workbook(write_only=True)
        self._sheets: list[Any] = []
        self._sheet_rows = 0
        self._header = [_xlsx_text(str(column)) for column in self.columns]
        self._sample: list[list[Any]] | None = []  # None once the first sheet is started
        self._widths: list[float] = []
        self._wrapped: list[int] = []  # indexes of the columns with wrapped cells
        self._wrap_cells: list[WriteOnlyCell] = []

    def _size_columns(self) -> None:
        """Widths from the header and the sampled rows; columns of wide text are capped and wrapped."""
        sample = self._sample or []
        for index, header in enumerate(self._header):
            widest = max((_text_width(row[index]) for row in sample), default=0)
            width = max(len(header) + 3, widest + 1, XLSX_MIN_WIDTH)  # + 3: room for the filter button
            if self._categories is not None and header == REVIEW_LABEL_COLUMN:
                width = max([width, *(len(name) + 3 for name in self._categories)])  # + 3: the drop-down arrow
            elif self._categories is not None and header in REVIEW_COLUMNS[2:]:
                width = max(width, REVIEW_NOTE_WIDTH)
            if widest > XLSX_MAX_WIDTH:
                self._wrapped.append(index)
            self._widths.append(min(width, XLSX_MAX_WIDTH))

    def _new_sheet(self) -> None:
        self._close_sheet()
        number = len(self._sheets) + 1
        sheet = self._workbook.create_sheet(SHEET_NAME if number == 1 else f"{SHEET_NAME}-{number}")
        for index, width in enumerate(self._widths, start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        header = []
        for value in self._header:
            cell = WriteOnlyCell(sheet, value=value)
            cell.font = _BOLD
            if self._categories is not None and value in REVIEW_COLUMNS:
                cell.fill = _REVIEW_FILL
            header.append(cell)
        sheet.append(header)
        if self._categories is not None:
            self._add_drop_downs(sheet)
        # One styled cell per wrapped column, given each row's value in turn: openpyxl writes a row's cells as it
        # is appended, so the cell can be reused (a new styled cell per value would cost a style lookup each).
        self._wrap_cells = []
        for _ in self._wrapped:
            cell = WriteOnlyCell(sheet)
            cell.alignment = _WRAPPED
            self._wrap_cells.append(cell)
        self._sheets.append(sheet)
        self._sheet_rows = 0

    def _add_drop_downs(self, sheet: Any) -> None:
        """The review columns' drop-downs (written when the sheet is saved); the first call writes a category list
        too long to hold inline on a hidden sheet, which every results sheet then refers to."""
        categories = self._categories or []
        if self._category_list is None:
            self._category_list = _inline_list(categories)
        if self._category_list is None:
            lists = self._workbook.create_sheet(REVIEW_LISTS_SHEET)
            lists.sheet_state = "hidden"
            for name in categories:
                lists.append([name])
            self._category_list = f"{quote_sheetname(REVIEW_LISTS_SHEET)}!$A$1:$A${max(len(categories), 1)}"
        review_label = self.columns.index(REVIEW_LABEL_COLUMN) + 1
        verdict = self.columns.index(VERDICT_COLUMN) + 1
        verdicts = _inline_list([v.value for v in ReviewVerdict])
        assert verdicts is not None
        # A write-only sheet has the list of validations (written with the sheet's tail) but not the method adding one.
        sheet.data_validations.append(
            _drop_down(self._category_list, review_label, "The right category, if not the prediction")
        )
        sheet.data_validations.append(
            _drop_down(verdicts, verdict, "Is the prediction correct, wrong, or are you unsure?")
        )

    def _close_sheet(self) -> None:
        """Set the filter of the sheet being written over its header and rows (written when it is saved)."""
        if self._sheets and self.columns:
            last = get_column_letter(len(self.columns))
            self._sheets[-1].auto_filter.ref = f"A1:{last}{self._sheet_rows + 1}"

    def _start(self) -> None:
        """Size the columns from the sample, start the first sheet and write the sampled rows to it."""
        self._size_columns()
        sample, self._sample = self._sample or [], None
        self._new_sheet()
        for cells in sample:
            self._append(cells)

    def _append(self, cells: list[Any]) -> None:
        if self._sheet_rows >= XLSX_SHEET_ROWS:
            self._new_sheet()
        for index, cell in zip(self._wrapped, self._wrap_cells, strict=True):
            value = cells[index]
            if value is not None:
                cell.value = value
                cells[index] = cell
        self._sheets[-1].append(cells)
        self._sheet_rows += 1

    def write(self, row: Row) -> None:
        if self._max_rows is not None and self.rows >= self._max_rows:
            raise OutputFormatError(
                f"Cannot write {self.target.name!r}: the results have more than {self._max_rows:,} rows, "
                "more than the XLSX output is allowed; write CSV, JSONL or Parquet instead."
            )
        cells = _project(row, self.columns, _xlsx_cell)
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
            _write_sheet(self._workbook.create_sheet(spec.title), spec)

    def close(self) -> int:
        upload = self.target.create()
        stream = io.BufferedWriter(upload, buffer_size=_STREAM_BUFFER)
        try:
            if self._sample is not None:
                self._start()
            self._close_sheet()
            self._workbook.save(stream)  # a zip with data descriptors when the target cannot seek (S3)
            stream.close()
        except BaseException:
            upload.abort()
            self.abort()
            raise
        return self.rows

    def abort(self) -> None:
        self._sample = None
        for sheet in self._workbook.worksheets:
            _discard_sheet(sheet)


def _write_sheet(sheet: Any, spec: Sheet) -> None:
    """Write a small sheet of figures: widths, frozen panes and a heat map first, then its rows."""
    columns = max((len(row) for row in spec.rows), default=0)
    for index in range(columns):
        if index < len(spec.widths):
            width = spec.widths[index]
        else:
            widest = max((_text_width(_plain(row[index])) for row in spec.rows if index < len(row)), default=0)
            width = max(XLSX_MIN_WIDTH, widest + 2)
        sheet.column_dimensions[get_column_letter(index + 1)].width = min(width, XLSX_MAX_WIDTH)
    if spec.freeze:
        sheet.freeze_panes = spec.freeze
    if spec.heat_map:
        scale = ColorScaleRule(
            start_type="num", start_value=0, start_color="FFFFFF", end_type="max", end_color="F8696B"
        )
        sheet.conditional_formatting.add(spec.heat_map, scale)
    for row in spec.rows:
        sheet.append([_sheet_cell(sheet, value) for value in row])


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Styled) else value


def _sheet_cell(sheet: Any, value: Any) -> Any:
    if not isinstance(value, Styled):
        return _xlsx_cell(value)
    cell = WriteOnlyCell(sheet, value=_xlsx_cell(value.value))
    if value.bold:
        cell.font = _BOLD
    if value.number_format:
        cell.number_format = value.number_format
    return cell


def _discard_sheet(sheet: Any) -> None:
    """Close a write-only sheet that will not be saved and delete the temporary file it spools rows to."""
    with suppress(Exception):
        sheet.close()
    spool = getattr(sheet, "_writer", None)  # openpyxl keeps the spooled rows there until the save
    if spool is not None:
        with suppress(Exception):
            spool.cleanup()
