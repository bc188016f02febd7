"""The output of a prompt comparison (:mod:`.compare`): a plain-text table (:func:`format_comparison`), an HTML page
(:func:`render_comparison`, every user value escaped) and a workbook (:func:`write_comparison_xlsx`: ``summary``,
``per-class`` and ``fixed-broke`` sheets), all made from the same figures as rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from .charts import Bar, bar_chart, clip, escape, percent
from .report import PAGE_POLICY, PAGE_STYLE, html_table
from .writers import XLSX_MAX_CELL_CHARS, neutralise_formula

if TYPE_CHECKING:
    from .compare import Comparison, RowAnswer

__all__ = ["format_comparison", "render_comparison", "write_comparison_xlsx"]

TEXT_CHARS = 300  # characters of a row's text shown in the HTML page (the workbook holds it whole)


# --- the figures as rows (shared by the text, the page and the workbook) ----------------------------------------

SUMMARY_HEAD = (
    "variant",
    "task file",
    "accuracy",
    "macro-F1",
    "coverage",
    "off-list",
    "unparseable",
    "input tokens",
    "output tokens",
    "cost (USD)",
    "fixed",
    "broke",
)


def _summary_rows(comparison: Comparison) -> list[list[Any]]:
    rows = []
    for v in comparison.variants:
        ev = v.evaluation
        fixed = len(comparison.fixed[v.name]) if v.name in comparison.fixed else None
        broke = len(comparison.broke[v.name]) if v.name in comparison.broke else None
        rows.append(
            [
                v.name,
                v.task_file,
                ev.accuracy,
                ev.macro.f1,
                ev.coverage,
                v.off_list,
                v.unparseable,
                v.input_tokens,
                v.output_tokens,
                v.cost_usd,
                fixed,
                broke,
            ]
        )
    return rows


def _per_class_rows(comparison: Comparison) -> tuple[list[str], list[list[Any]]]:
    """Per class: the baseline's F1, then each other variant's F1 and its delta against the baseline."""
    base = comparison.baseline
    head = ["class", f"F1 {base.name}"]
    for v in comparison.variants[1:]:
        head += [f"F1 {v.name}", f"Δ {v.name}"]
    rows = []
    for label in comparison.classes:
        first = comparison.f1(base, label)
        line: list[Any] = [label, first]
        for v in comparison.variants[1:]:
            value = comparison.f1(v, label)
            delta = None if value is None and first is None else (value or 0.0) - (first or 0.0)
            line += [value, delta]
        rows.append(line)
    return head, rows


CHANGE_HEAD = (
    "variant",
    "change",
    "row",
    "id",
    "truth",
    "baseline class",
    "baseline status",
    "baseline rationale",
    "variant class",
    "variant status",
    "variant rationale",
    "text",
)


def _is_delta(column: int) -> bool:
    """Whether a column of the per-class rows is a delta: class, baseline F1, then (F1, delta) per variant."""
    return column >= 3 and column % 2 == 1


def _change_rows(comparison: Comparison) -> Iterator[list[Any]]:
    for v in comparison.variants[1:]:
        for kind, changes in (("fixed", comparison.fixed[v.name]), ("broke", comparison.broke[v.name])):
            for c in changes:
                yield [
                    v.name,
                    kind,
                    c.row,
                    c.id,
                    c.truth,
                    c.baseline.predicted,
                    c.baseline.status,
                    c.baseline.rationale,
                    c.variant.predicted,
                    c.variant.status,
                    c.variant.rationale,
                    c.text,
                ]


# --- plain text -----------------------------------------------------------------------------------------------


def _delta(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.1f}"


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.4f}"


def _columns(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(
            f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [head, *rows]
    ]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def format_comparison(comparison: Comparison) -> str:
    """The side-by-side table, the per-class F1 with deltas, and the count of fixed and broken rows per variant."""
    base = comparison.baseline
    head = ["variant", "accuracy", "macro-F1", "coverage", "off-list", "unparseable", "tokens in/out", "cost"]
    rows = [
        [
            v.name,
            percent(v.evaluation.accuracy),
            percent(v.evaluation.macro.f1),
            percent(v.evaluation.coverage),
            f"{v.off_list:,}",
            f"{v.unparseable:,}",
            f"{v.input_tokens:,}/{v.output_tokens:,}",
            _usd(v.cost_usd),
        ]
        for v in comparison.variants
    ]
    lines = [
        f"{comparison.sample}: {comparison.rows:,} rows, {comparison.labelled:,} with ground truth; "
        f"baseline {base.name}",
        "",
        *_columns(head, rows),
        "",
    ]
    class_head, class_rows = _per_class_rows(comparison)
    shown = [
        [str(r[0])]
        + [
            (_delta(cell) if _is_delta(i) else percent(cell)) if cell is not None else "–"
            for i, cell in enumerate(r[1:], 1)
        ]
        for r in class_rows
    ]
    lines += ["Per-class F1 (Δ: points against the baseline)", *_columns(class_head, shown), ""]
    for v in comparison.variants[1:]:
        lines.append(
            f"{v.name} against {base.name}: fixed {len(comparison.fixed[v.name]):,} rows, "
            f"broke {len(comparison.broke[v.name]):,}"
        )
    return "\n".join(lines) + "\n"


# --- HTML -------------------------------------------------------------------------------------------------------


def _cell(value: Any, kind: str = "") -> str:
    if value is None:
        return "–"
    if kind == "percent":
        return percent(value)
    if kind == "delta":
        return escape(_delta(value))
    if kind == "usd":
        return escape(_usd(value))
    if isinstance(value, int):
        return f"{value:,}"
    return escape(value)


def render_comparison(comparison: Comparison) -> str:
    """One self-contained HTML page (no script); every value from the user's files and the model is escaped."""
    base = comparison.baseline
    kinds = ["", "", "percent", "percent", "percent", "", "", "", "", "usd", "", ""]
    summary = html_table(
        SUMMARY_HEAD,
        ([_cell(value, kinds[i]) for i, value in enumerate(row)] for row in _summary_rows(comparison)),
        numeric=range(2, len(SUMMARY_HEAD)),
    )
    chart = bar_chart(
        [Bar(v.name, v.evaluation.accuracy, percent(v.evaluation.accuracy)) for v in comparison.variants],
        "accuracy per variant",
    )
    class_head, class_rows = _per_class_rows(comparison)
    per_class = html_table(
        [escape(h) for h in class_head],
        (
            [escape(r[0])] + [_cell(c, "delta" if _is_delta(i) else "percent") for i, c in enumerate(r[1:], 1)]
            for r in class_rows
        ),
        numeric=range(1, len(class_head)),
    )
    sections = [
        f'<section id="summary"><h2>Variants side by side</h2>{chart}{summary}'
        '<p class="note">Fixed: rows the baseline got wrong and the variant right; broke: the other way round. '
        "Cost at the task's model prices for the tokens counted.</p></section>",
        f'<section id="classes"><h2>Per-class F1</h2><p class="note">Δ: points against {escape(base.name)}.</p>'
        f"{per_class}</section>",
    ]
    for v in comparison.variants[1:]:
        for kind, changes in (("fixed", comparison.fixed[v.name]), ("broke", comparison.broke[v.name])):
            title = f"{escape(v.name)} {kind} {len(changes):,} rows"
            if not changes:
                sections.append(f"<section><h3>{title}</h3></section>")
                continue
            table = html_table(
                [
                    "row",
                    "id",
                    "truth",
                    f"{escape(base.name)} (baseline)",
                    escape(v.name),
                    "text",
                ],
                (
                    [
                        f"{c.row:,}",
                        escape(c.id),
                        escape(c.truth),
                        _answer_html(c.baseline),
                        _answer_html(c.variant),
                        f'<span class="text">{escape(clip(c.text, TEXT_CHARS))}</span>',
                    ]
                    for c in changes
                ),
            )
            sections.append(f"<section><h3>{title}</h3>{table}</section>")
    names = " · ".join(f"<b>{escape(v.name)}</b> ({escape(v.task_file)})" for v in comparison.variants)
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{PAGE_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Prompt variants: {escape(comparison.sample)}</title><style>{PAGE_STYLE}</style></head><body>\n",
            f'<header><h1>Prompt variants compared</h1><p class="sub">sample <b>{escape(comparison.sample)}</b> · '
            f"{comparison.rows:,} rows, {comparison.labelled:,} with ground truth · baseline "
            f'<b>{escape(base.name)}</b></p><p class="sub">{names}</p></header>\n<main>\n',
            *(s + "\n" for s in sections),
            "</main>\n<footer>The workbook compare.xlsx holds the same figures and every changed row's whole text."
            "</footer>\n</body></html>\n",
        ]
    )


def _answer_html(answer: RowAnswer) -> str:
    label = escape(answer.predicted) if answer.predicted else f"<i>{escape(answer.status)}</i>"
    return f'<b>{label}</b><br><span class="text">{escape(answer.rationale)}</span>'


# --- XLSX -------------------------------------------------------------------------------------------------------

_BOLD = Font(bold=True)
_WRAPPED = Alignment(wrap_text=True, vertical="top")
_PERCENT = "0.0%"


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, str):
        return str(neutralise_formula(ILLEGAL_CHARACTERS_RE.sub("", value)))[:XLSX_MAX_CELL_CHARS]
    return value


def write_comparison_xlsx(comparison: Comparison, path: Path) -> None:
    """A workbook with a ``summary``, a ``per-class`` and a ``fixed-broke`` sheet (write-only, so small)."""
    workbook = Workbook(write_only=True)

    def sheet(
        title: str,
        head: Sequence[str],
        rows: Iterator[Sequence[Any]] | list[list[Any]],
        fmt: dict[int, str],
        widths: Sequence[float],
    ) -> None:
        ws = workbook.create_sheet(title)
        for index, width in enumerate(widths):
            ws.column_dimensions[get_column_letter(index + 1)].width = width
        ws.freeze_panes = "B2"
        header = []
        for name in head:
            cell = WriteOnlyCell(ws, value=_xlsx_value(name))
            cell.font = _BOLD
            header.append(cell)
        ws.append(header)
        for row in rows:
            cells = []
            for index, value in enumerate(row):
                cell = WriteOnlyCell(ws, value=_xlsx_value(value))
                if index in fmt:
                    if fmt[index] == "wrap":
                        cell.alignment = _WRAPPED
                    else:
                        cell.number_format = fmt[index]
                cells.append(cell)
            ws.append(cells)

    sheet(
        "summary",
        SUMMARY_HEAD,
        _summary_rows(comparison),
        {2: _PERCENT, 3: _PERCENT, 4: _PERCENT, 9: "$#,##0.0000"},
        [18, 24, 10, 10, 10, 9, 12, 13, 13, 12, 8, 8],
    )
    class_head, class_rows = _per_class_rows(comparison)
    sheet(
        "per-class",
        class_head,
        class_rows,
        {i: ("+0.0%;-0.0%;0.0%" if _is_delta(i) else _PERCENT) for i in range(1, len(class_head))},
        [30, *([14] * (len(class_head) - 1))],
    )
    sheet(
        "fixed-broke",
        CHANGE_HEAD,
        _change_rows(comparison),
        {7: "wrap", 10: "wrap", 11: "wrap"},
        [16, 8, 6, 12, 22, 22, 12, 50, 22, 12, 50, 60],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
