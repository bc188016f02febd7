"""The fast path of the XLSX reader: sheets read with python-calamine (Rust) instead of openpyxl, values made the same.

calamine gives what openpyxl (read-only, cached formula values) gives once these are mapped: an empty cell is
``''`` (made ``None``), every number a float (whole ones below 2**53 made ``int``, as openpyxl reads a number
written without a decimal point; Excel writes whole numbers so), a whole-day date a ``date`` (made a midnight
``datetime``). A workbook calamine would read differently is left to openpyxl, after a look through its sheet
and shared-string XML: error cells (openpyxl keeps ``#N/A``, calamine drops it), ISO-dated cells, numbers written
with ``.0`` (floats to openpyxl), ``_xHHHH_`` escapes (calamine decodes them, openpyxl keeps them as text) and
phonetic runs. Not looked for: a whole number below 2**53 written with an exponent (``1E+3``), which no common
writer produces (Excel, openpyxl and XlsxWriter write ``1000``); openpyxl reads it as a float, this path as an
``int``. calamine loads one sheet at a time into memory (openpyxl streams it), so a workbook whose sheet XML is
very large is left to openpyxl too.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import IO, Any

from ..formats import data_sheets

# Uncompressed sheet and shared-string XML beyond which the workbook is read with openpyxl (which streams).
MAX_NATIVE_XML = 512 * 1024 * 1024
# Whole floats below this are integers in openpyxl's reading; beyond it Excel writes an exponent.
_WHOLE_LIMIT = float(2**53)
_SCAN_CHUNK = 1 << 20
# What calamine reads differently from openpyxl: error and ISO-date cells, _xHHHH_ escapes, phonetic runs.
# In sheet XML: error and ISO-date cells, and whole numbers written with ".0" (openpyxl makes them floats).
_CELL_TYPES = re.compile(rb"""t=["'][ed]["']""")
_SHEET_MARKERS = (b".0</v>",)
# In shared strings (and inline strings): phonetic runs.
_TEXT_MARKERS = (b"<rPh",)
_ESCAPE = re.compile(rb"_x[0-9A-Fa-f]{4}_")
_OVERLAP = 16


class NativeBook:
    """A workbook opened with python-calamine: its worksheets' names and their rows."""

    def __init__(self, book: Any, titles: list[str]) -> None:
        self.titles = titles
        self._book = book
        # The first sheet loaded (for its header) is kept for the pass over its rows, which starts with it.
        self._kept: tuple[str, Any] | None = None
        self._uses = 0  # the uses of the kept sheet still to come
        self._loaded = False

    def close(self) -> None:
        self._kept = None
        self._book.close()

    def preload(self, title: str) -> None:
        """Load a sheet now, for its header and then its rows (calamine lets other threads run while it loads)."""
        self._kept, self._uses, self._loaded = (title, self._book.get_sheet_by_name(title)), 2, True

    def _sheet(self, title: str) -> Any:
        if self._kept is not None and self._kept[0] == title:
            sheet = self._kept[1]
            self._uses -= 1
            if not self._uses:
                self._kept = None
            return sheet
        sheet = self._book.get_sheet_by_name(title)
        if not self._loaded:
            self._kept, self._uses, self._loaded = (title, sheet), 1, True
        return sheet

    def values(self, title: str) -> Generator[Sequence[Any]]:
        """The sheet's rows as openpyxl gives them (from column A, cells mapped), fully empty rows skipped."""
        sheet = self._sheet(title)
        start = sheet.start
        lead: tuple[None, ...] = (None,) * (start[1] if start else 0)
        for cells in sheet.iter_rows():
            values = [_value(cell) for cell in cells]
            if values.count(None) != len(values):
                yield (*lead, *values) if lead else values


def native_workbook(target: str | IO[bytes], sheet: str | None = None) -> NativeBook | None:
    """The workbook opened with python-calamine, or None when openpyxl must read it (or calamine cannot).

    From a path, the first sheet to read (``sheet``, else the first of :func:`.formats.data_sheets`) is loaded while
    a thread of its own looks through the XML for what calamine reads differently; a stream is looked through
    first."""
    try:
        from python_calamine import CalamineError, CalamineWorkbook  # noqa: PLC0415
    except ImportError:  # pragma: no cover - python-calamine is a dependency of the package
        return None
    if not isinstance(target, str):
        start = target.tell()
        try:
            if not _same_as_openpyxl(target):
                return None
            target.seek(start)
            return _book(CalamineWorkbook.from_filelike(target))
        except (CalamineError, zipfile.BadZipFile, OSError, KeyError, ValueError):
            return None
        finally:
            target.seek(start)  # openpyxl, if it reads the workbook after all, starts where it started
    native: NativeBook | None = None
    with ThreadPoolExecutor(1) as pool:
        same = pool.submit(_same_as_openpyxl, target)
        try:
            native = _book(CalamineWorkbook.from_path(target))
            first = [sheet] if sheet in native.titles else data_sheets(native.titles)
            if first:
                native.preload(first[0])
            if same.result():
                return native
        except (CalamineError, zipfile.BadZipFile, OSError, KeyError, ValueError):
            pass
    if native is not None:
        native.close()
    return None


def _book(book: Any) -> NativeBook:
    from python_calamine import SheetTypeEnum  # noqa: PLC0415

    return NativeBook(book, [sheet.name for sheet in book.sheets_metadata if sheet.typ == SheetTypeEnum.WorkSheet])


def _same_as_openpyxl(target: str | IO[bytes]) -> bool:
    """Whether calamine reads the workbook's values as openpyxl does (see the module's note)."""
    with zipfile.ZipFile(target) as archive:
        members = [
            info
            for info in archive.infolist()
            if (info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml"))
            or info.filename == "xl/sharedStrings.xml"
        ]
        if sum(info.file_size for info in members) > MAX_NATIVE_XML:
            return False
        for info in members:
            sheet = info.filename != "xl/sharedStrings.xml"
            with archive.open(info) as member:
                tail = b""
                while chunk := member.read(_SCAN_CHUNK):
                    if _differs(tail + chunk, sheet=sheet):
                        return False
                    tail = chunk[-_OVERLAP:]
    return True


def _differs(xml: bytes, *, sheet: bool) -> bool:
    """Whether a stretch of sheet or shared-string XML holds something calamine reads differently."""
    if sheet and (any(marker in xml for marker in _SHEET_MARKERS) or _CELL_TYPES.search(xml)):
        return True
    if any(marker in xml for marker in _TEXT_MARKERS):
        return True
    return b"_x" in xml and _ESCAPE.search(xml) is not None


def _value(cell: Any) -> Any:
    kind = type(cell)
    if kind is str:
        return cell or None
    if kind is float:
        return int(cell) if cell.is_integer() and -_WHOLE_LIMIT < cell < _WHOLE_LIMIT else cell
    if kind is date:
        return datetime(cell.year, cell.month, cell.day)
    return cell
