"""An XLSX workbook written directly as SpreadsheetML, a row at a time, in constant memory.

The results sink (:mod:`.xlsx_writer`) needs only a small part of the format: text, numbers and booleans in cells,
a few cell styles (bold, a solid fill, wrapped top-aligned text, a number format), column widths, frozen panes, an
autofilter, list validations (drop-downs), a colour scale and hidden sheets. Writing that part by hand is several
times faster than a general library's per-cell objects: a row is one formatted string.

Each sheet's rows are spooled, as the XML they become, to a temporary file (so memory does not grow with the rows);
:meth:`XlsxBook.save` then writes the package, a zip, into a stream, each sheet as its head (views, widths: known by
then), its spooled rows and its tail (filter, validations). Strings are written inline (``t="inlineStr"``), as
openpyxl's and XlsxWriter's streaming modes write them; the caller has already removed the characters XML forbids.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_FLUSH_ROWS = 256  # rows built as text before they are written to the spool in one piece (fewer if they are long)
_FLUSH_CHARS = 1 << 20
_ZIP64_FROM = zipfile.ZIP64_LIMIT // 2  # a sheet part at least this large is written with ZIP64 sizes

# Excel's built-in number formats, referred to by id; any other format is declared in the styles (ids from 164).
_BUILTIN_FORMATS = {"General": 0, "0": 1, "0.00": 2, "#,##0": 3, "#,##0.00": 4, "0%": 9, "0.00%": 10}


def escape(text: str) -> str:
    """Text made safe inside an XML element."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _attr(text: str) -> str:
    return escape(text).replace('"', "&quot;")


@dataclass(frozen=True, slots=True)
class CellStyle:
    """A cell's look: bold, a solid fill (``"FFF2CC"``), wrapped top-aligned text, an Excel number format."""

    bold: bool = False
    fill: str | None = None
    wrap: bool = False
    number_format: str | None = None


class _Styles:
    """The workbook's cell styles, numbered as they are first asked for (0 is the default)."""

    def __init__(self) -> None:
        self._styles: list[CellStyle] = [CellStyle()]
        self._index: dict[CellStyle, int] = {CellStyle(): 0}
        self._fills: list[str] = []
        self._formats: dict[str, int] = {}

    def index(self, style: CellStyle) -> int:
        found = self._index.get(style)
        if found is None:
            found = self._index[style] = len(self._styles)
            self._styles.append(style)
            if style.fill is not None and style.fill not in self._fills:
                self._fills.append(style.fill)
            fmt = style.number_format
            if fmt is not None and fmt not in _BUILTIN_FORMATS and fmt not in self._formats:
                self._formats[fmt] = 164 + len(self._formats)
        return found

    def xml(self) -> str:
        parts = [_XML, f'<styleSheet xmlns="{_MAIN}">']
        if self._formats:
            parts.append(f'<numFmts count="{len(self._formats)}">')
            parts += (f'<numFmt numFmtId="{n}" formatCode="{_attr(f)}"/>' for f, n in self._formats.items())
            parts.append("</numFmts>")
        font = '<sz val="11"/><name val="Calibri"/><family val="2"/><scheme val="minor"/>'
        parts.append(f'<fonts count="2"><font>{font}</font><font><b/>{font}</font></fonts>')
        parts.append(f'<fills count="{2 + len(self._fills)}">')
        parts.append('<fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>')
        parts += (
            f'<fill><patternFill patternType="solid"><fgColor rgb="00{c}"/><bgColor rgb="00{c}"/></patternFill></fill>'
            for c in self._fills
        )
        parts.append("</fills>")
        parts.append('<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>')
        parts.append('<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>')
        parts.append(f'<cellXfs count="{len(self._styles)}">')
        parts += (self._xf(style) for style in self._styles)
        parts.append("</cellXfs>")
        parts.append('<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>')
        parts.append('<dxfs count="0"/></styleSheet>')
        return "".join(parts)

    def _xf(self, style: CellStyle) -> str:
        fmt = style.number_format
        fmt_id = 0 if fmt is None else _BUILTIN_FORMATS.get(fmt, self._formats.get(fmt, 0))
        fill_id = 0 if style.fill is None else 2 + self._fills.index(style.fill)
        attrs = f'numFmtId="{fmt_id}" fontId="{int(style.bold)}" fillId="{fill_id}" borderId="0" xfId="0"'
        flags = (("NumberFormat", fmt_id), ("Font", style.bold), ("Fill", fill_id), ("Alignment", style.wrap))
        applied = "".join(f' apply{name}="1"' for name, on in flags if on)
        if style.wrap:
            return f'<xf {attrs}{applied}><alignment vertical="top" wrapText="1"/></xf>'
        return f"<xf {attrs}{applied}/>"


def _cell_xml(ref: str, value: Any, s: str) -> str:
    """One ``<c>`` element with the style attribute ``s`` (``' s="2"'``, or ``""``); ``value`` is None, a bool, a
    number or text (anything else is written as its text)."""
    kind = type(value)
    if kind is str and value:
        text = escape(value)
        if text[:1].isspace() or text[-1:].isspace():
            return f'<c r="{ref}"{s} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
        return f'<c r="{ref}"{s} t="inlineStr"><is><t>{text}</t></is></c>'
    if value is None or kind is str:  # an empty text is no value, as openpyxl writes it
        return f'<c r="{ref}"{s}/>' if s else ""
    if kind is bool:
        return f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int):
        return f'<c r="{ref}"{s}><v>{int.__repr__(value)}</v></c>'
    if isinstance(value, float):
        return f'<c r="{ref}"{s}><v>{float.__repr__(value)}</v></c>'
    return _cell_xml(ref, str(value), s)


def style_attribute(style: int) -> str:
    """The attribute a cell of style index ``style`` carries (none for the default style)."""
    return f' s="{style}"' if style else ""


class SheetPart:
    """One worksheet: set its widths, panes, filter and validations at any time before the book is saved; append
    its rows in order."""

    def __init__(self, title: str, hidden: bool = False) -> None:
        self.title = title
        self.hidden = hidden
        self.widths: dict[int, float] = {}  # column number (1-based) to width in characters
        self.freeze: str | None = None  # the first cell that scrolls ("A2": the first row stays)
        self.auto_filter: str | None = None  # a range ("A1:K100")
        self.validations: list[str] = []  # <dataValidation> elements
        self.color_scales: list[str] = []  # <conditionalFormatting> elements
        self.rows = 0
        self._columns = 0
        self._letters: list[str] = []
        self._pending: list[str] = []
        self._pending_chars = 0
        self._spool: IO[bytes] | None = tempfile.TemporaryFile()  # noqa: SIM115 (closed by save or discard)

    def _letters_for(self, count: int) -> list[str]:
        while len(self._letters) < count:
            self._letters.append(get_column_letter(len(self._letters) + 1))
        self._columns = max(self._columns, count)
        return self._letters

    def append(self, values: Sequence[Any], styles: Sequence[int] | None = None) -> None:
        """A row of values, each with its style index (``styles``, one per value; 0: the default). An empty value
        (None) is no cell unless it has a style."""
        attrs = [style_attribute(style) for style in styles] if styles else [""] * len(values)
        self.append_data(values, attrs, blanks=True)

    def append_data(self, values: Sequence[Any], attrs: Sequence[str], blanks: bool = False) -> None:
        """A row: ``attrs`` holds each value's style attribute (:func:`style_attribute`). An empty value (None) is no
        cell, unless ``blanks`` and it has a style."""
        self.rows += 1
        number = self.rows
        letters = self._letters if len(self._letters) >= len(values) else self._letters_for(len(values))
        parts = [f'<row r="{number}">']
        add = parts.append
        for letter, value, s in zip(letters, values, attrs, strict=False):
            kind = type(value)
            if kind is str and value:
                text = escape(value) if "&" in value or "<" in value or ">" in value else value
                if text[:1].isspace() or text[-1:].isspace():
                    add(f'<c r="{letter}{number}"{s} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>')
                else:
                    add(f'<c r="{letter}{number}"{s} t="inlineStr"><is><t>{text}</t></is></c>')
            elif value is None or kind is str:  # an empty text is no value, as openpyxl writes it
                if blanks and s:
                    add(f'<c r="{letter}{number}"{s}/>')
            elif kind is bool:
                add(f'<c r="{letter}{number}"{s} t="b"><v>{"1" if value else "0"}</v></c>')
            else:
                add(_cell_xml(f"{letter}{number}", value, s))
        add("</row>")
        xml = "".join(parts)
        self._pending.append(xml)
        self._pending_chars += len(xml)
        if len(self._pending) >= _FLUSH_ROWS or self._pending_chars >= _FLUSH_CHARS:
            self._flush()

    def _flush(self) -> None:
        if self._pending and self._spool is not None:
            self._spool.write("".join(self._pending).encode("utf-8"))
        self._pending.clear()
        self._pending_chars = 0

    def _head(self, selected: bool) -> str:
        last = get_column_letter(max(self._columns, 1))
        parts = [_XML, f'<worksheet xmlns="{_MAIN}" xmlns:r="{_DOC_RELS}">']
        parts.append(f'<dimension ref="A1:{last}{max(self.rows, 1)}"/>')
        tab = ' tabSelected="1"' if selected else ""
        parts.append(f'<sheetViews><sheetView{tab} workbookViewId="0">')
        parts.append(self._pane())
        parts.append('</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>')
        if self.widths:
            parts.append("<cols>")
            parts += (
                f'<col min="{n}" max="{n}" width="{w:g}" customWidth="1"/>' for n, w in sorted(self.widths.items())
            )
            parts.append("</cols>")
        parts.append("<sheetData>")
        return "".join(parts)

    def _pane(self) -> str:
        if not self.freeze:
            return ""
        letters, row = coordinate_from_string(self.freeze)
        x, y = column_index_from_string(letters) - 1, row - 1
        if not x and not y:
            return ""
        pane = "bottomRight" if x and y else ("bottomLeft" if y else "topRight")
        split = (f' xSplit="{x}"' if x else "") + (f' ySplit="{y}"' if y else "")
        return (
            f'<pane{split} topLeftCell="{self.freeze}" activePane="{pane}" state="frozen"/>'
            f'<selection pane="{pane}" activeCell="{self.freeze}" sqref="{self.freeze}"/>'
        )

    def _tail(self) -> str:
        parts = ["</sheetData>"]
        if self.auto_filter:
            parts.append(f'<autoFilter ref="{self.auto_filter}"/>')
        parts += self.color_scales
        if self.validations:
            parts.append(f'<dataValidations count="{len(self.validations)}">')
            parts += self.validations
            parts.append("</dataValidations>")
        parts.append('<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>')
        parts.append("</worksheet>")
        return "".join(parts)

    def write_to(self, book: zipfile.ZipFile, name: str, selected: bool) -> None:
        """Write this sheet as the part ``name`` of ``book``, then drop its spool."""
        self._flush()
        head, tail = self._head(selected).encode("utf-8"), self._tail().encode("utf-8")
        spool = self._spool
        assert spool is not None, "the sheet was discarded"
        size = len(head) + spool.tell() + len(tail)
        spool.seek(0)
        with book.open(name, "w", force_zip64=size >= _ZIP64_FROM) as part:
            part.write(head)
            shutil.copyfileobj(spool, part, 1 << 20)
            part.write(tail)
        self.discard()

    def discard(self) -> None:
        """Delete the spooled rows (the sheet will not be saved)."""
        spool, self._spool = self._spool, None
        self._pending.clear()
        if spool is not None:
            spool.close()


def list_validation(sqref: str, formula: str, prompt: str, error_title: str, error: str) -> str:
    """A drop-down (list validation) over ``sqref``: values from ``formula`` (``"a,b"`` in quotes, or a range)."""
    return (
        f'<dataValidation type="list" allowBlank="1" showInputMessage="1" showErrorMessage="1" '
        f'errorTitle="{_attr(error_title)}" error="{_attr(error)}" prompt="{_attr(prompt)}" sqref="{sqref}">'
        f"<formula1>{escape(formula)}</formula1></dataValidation>"
    )


def color_scale(sqref: str, start: str, end: str) -> str:
    """A two-colour scale over ``sqref``, from ``start`` at 0 to ``end`` at the range's largest value."""
    return (
        f'<conditionalFormatting sqref="{sqref}"><cfRule type="colorScale" priority="1"><colorScale>'
        f'<cfvo type="num" val="0"/><cfvo type="max"/><color rgb="00{start}"/><color rgb="00{end}"/>'
        "</colorScale></cfRule></conditionalFormatting>"
    )


class XlsxBook:
    """A workbook: its sheets in order and their styles; :meth:`save` writes it, :meth:`discard` drops it."""

    def __init__(self) -> None:
        self.sheets: list[SheetPart] = []
        self._styles = _Styles()

    def add_sheet(self, title: str, hidden: bool = False) -> SheetPart:
        sheet = SheetPart(title, hidden)
        self.sheets.append(sheet)
        return sheet

    def style(self, style: CellStyle) -> int:
        """The index cells of ``style`` are written with."""
        return self._styles.index(style)

    def save(self, stream: IO[bytes], compresslevel: int | None = None) -> None:
        """Write the package into ``stream`` (a zip with data descriptors when the stream cannot seek)."""
        sheets = self.sheets or [self.add_sheet("Sheet1")]
        with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as book:
            book.writestr("[Content_Types].xml", self._content_types())
            book.writestr(
                "_rels/.rels",
                f'{_XML}<Relationships xmlns="{_PKG_RELS}"><Relationship Id="rId1" '
                f'Type="{_DOC_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
            )
            book.writestr("xl/workbook.xml", self._workbook())
            rels = "".join(
                f'<Relationship Id="rId{n}" Type="{_DOC_RELS}/worksheet" Target="worksheets/sheet{n}.xml"/>'
                for n in range(1, len(sheets) + 1)
            )
            styles = f'<Relationship Id="rId{len(sheets) + 1}" Type="{_DOC_RELS}/styles" Target="styles.xml"/>'
            book.writestr(
                "xl/_rels/workbook.xml.rels", f'{_XML}<Relationships xmlns="{_PKG_RELS}">{rels}{styles}</Relationships>'
            )
            book.writestr("xl/styles.xml", self._styles.xml())
            for number, sheet in enumerate(sheets, start=1):
                sheet.write_to(book, f"xl/worksheets/sheet{number}.xml", selected=number == 1)

    def discard(self) -> None:
        for sheet in self.sheets:
            sheet.discard()

    def _content_types(self) -> str:
        sheets = "".join(
            f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{_SHEET_TYPE}"/>'
            for n in range(1, len(self.sheets) + 1)
        )
        office = "application/vnd.openxmlformats-officedocument.spreadsheetml"
        return (
            f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{office}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{office}.styles+xml"/>{sheets}</Types>'
        )

    def _workbook(self) -> str:
        sheets, names = [], []
        for index, sheet in enumerate(self.sheets):
            state = ' state="hidden"' if sheet.hidden else ""
            sheets.append(f'<sheet name="{_attr(sheet.title)}" sheetId="{index + 1}"{state} r:id="rId{index + 1}"/>')
            if sheet.auto_filter:
                area = ":".join("${}${}".format(*coordinate_from_string(c)) for c in sheet.auto_filter.split(":"))
                names.append(
                    f'<definedName name="_xlnm._FilterDatabase" localSheetId="{index}" hidden="1">'
                    f"{escape(quote_sheetname(sheet.title))}!{area}</definedName>"
                )
        defined = f"<definedNames>{''.join(names)}</definedNames>" if names else ""
        return (
            f'{_XML}<workbook xmlns="{_MAIN}" xmlns:r="{_DOC_RELS}"><bookViews><workbookView activeTab="0"/>'
            f"</bookViews><sheets>{''.join(sheets)}</sheets>{defined}<calcPr calcId='124519'/></workbook>"
        )
