"""Charts for the run report, drawn as inline SVG: horizontal bars, one stacked bar, a heat map.

Hand-built rather than taken from a charting library: the report is one HTML file that must render offline
with no script, and these three shapes are a few dozen lines each, with nothing to vendor or keep up to date.
Every text that reaches a chart (labels, titles) is HTML-escaped here, so callers pass plain text. Sizes are in
CSS pixels; a chart scales down with the page (``max-width: 100%``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Bar", "bar_chart", "clip", "escape", "heat_map", "percent", "share", "stacked_bar"]

BAR_COLOUR = "#1565c0"
RIGHT_COLOUR = "#1565c0"
WRONG_COLOUR = "#d32f2f"
CHART_WIDTH = 760
HEAT_MAP_WIDTH = 1000
CHAR_PX = 6.6  # the width of a character of the charts' 12 px text, near enough to size label columns
ROW_PX = 22
LABEL_CHARS = 28  # a heat map's labels are cut to this many characters (the full text is in their tooltip)


def escape(value: Any) -> str:
    """HTML-escaped text, safe in element content and in quoted attributes (``None`` is empty)."""
    return html.escape("" if value is None else str(value), quote=True)


def clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its value, the text shown beside it, and its colour."""

    label: str
    value: float
    text: str
    colour: str = BAR_COLOUR


def _svg(width: float, height: float, label: str, body: Iterable[str]) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">' + "".join(body) + "</svg>"
    )


def bar_chart(bars: Sequence[Bar], label: str) -> str:
    """Horizontal bars, one a line: the label, the bar scaled to the largest value, and the value's text."""
    longest = max((len(b.label) for b in bars), default=0)
    label_px = min(260.0, longest * CHAR_PX + 12)
    text_px = max((len(b.text) for b in bars), default=0) * CHAR_PX + 12
    plot_px = CHART_WIDTH - label_px - text_px
    top = max((b.value for b in bars), default=0) or 1
    chars = int((label_px - 12) / CHAR_PX)
    body = []
    for i, bar in enumerate(bars):
        y = 4 + i * ROW_PX
        width = plot_px * bar.value / top
        if bar.value > 0:
            width = max(width, 1.0)
        body.append(
            f"<g><title>{escape(bar.label)}: {escape(bar.text)}</title>"
            f'<text x="{label_px - 8:.0f}" y="{y + 14}" text-anchor="end">{escape(clip(bar.label, chars))}</text>'
            f'<rect x="{label_px:.0f}" y="{y + 3}" width="{width:.1f}" height="15" fill="{bar.colour}"/>'
            f'<text x="{label_px + width + 5:.1f}" y="{y + 14}">{escape(bar.text)}</text></g>'
        )
    return _svg(CHART_WIDTH, len(bars) * ROW_PX + 8, label, body)


def stacked_bar(parts: Sequence[Bar], label: str) -> str:
    """One bar split into parts in proportion to their values."""
    total = sum(p.value for p in parts) or 1
    x = 0.0
    body = []
    for part in parts:
        width = CHART_WIDTH * part.value / total
        if width <= 0:
            continue
        body.append(
            f'<rect x="{x:.1f}" y="0" width="{width:.1f}" height="28" fill="{part.colour}">'
            f"<title>{escape(part.label)}: {escape(part.text)}</title></rect>"
        )
        x += width
    return _svg(CHART_WIDTH, 28, label, body)


def heat_map(rows: Sequence[str], columns: Sequence[str], cells: Mapping[str, Mapping[str, int]], label: str) -> str:
    """A grid of counts: ``cells[row][column]``, a line per row, shaded by the count's share of its row.

    Cells where the row and the column are the same label (the diagonal of a confusion matrix) are blue, the others
    red. Empty cells are not drawn, so the chart grows with the cells that hold something, not with the square of
    the labels. Narrow columns get small upright labels, wider ones slanted labels, and counts inside the cells.
    """
    if not rows or not columns:
        return ""
    longest = min(LABEL_CHARS, max(len(r) for r in rows))
    cell = max(7.0, min(36.0, (HEAT_MAP_WIDTH - longest * CHAR_PX) / len(columns)))
    font = max(8, min(12, round(cell)))
    char_px = CHAR_PX * font / 12
    left = longest * char_px + 10
    upright = cell < 20
    tallest = min(LABEL_CHARS, max(len(c) for c in columns)) * char_px
    slant = 0.0 if upright else tallest * 0.71  # how far a slanted label reaches right of its column
    top = (tallest if upright else slant) + 14
    width = left + cell * len(columns) + slant + 10
    height = top + cell * len(rows) + 4
    place = {name: i for i, name in enumerate(columns)}
    body = [
        f'<g font-size="{font}">',
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{cell * len(columns):.1f}" height="{cell * len(rows):.1f}" '
        'fill="#f5f5f5"/>',
    ]
    for i, name in enumerate(columns):
        x = left + (i + 0.5) * cell + font / 3
        body.append(
            f'<text transform="translate({x:.1f},{top - 6:.1f}) rotate({-90 if upright else -45})">'
            f"<title>{escape(name)}</title>{escape(clip(name, LABEL_CHARS))}</text>"
        )
    for j, row in enumerate(rows):
        y = top + j * cell
        body.append(
            f'<text x="{left - 6:.1f}" y="{y + cell / 2 + font / 3:.1f}" text-anchor="end">'
            f"<title>{escape(row)}</title>{escape(clip(row, LABEL_CHARS))}</text>"
        )
        line = cells.get(row) or {}
        total = sum(line.values())
        for name, count in line.items():
            if not count or name not in place:
                continue
            part = share(count, total)
            x = left + place[name] * cell
            body.append(
                f'<rect x="{x + 0.5:.1f}" y="{y + 0.5:.1f}" width="{cell - 1:.1f}" height="{cell - 1:.1f}" '
                f'fill="{RIGHT_COLOUR if name == row else WRONG_COLOUR}" fill-opacity="{0.12 + 0.88 * part:.2f}">'
                f"<title>{escape(row)} → {escape(name)}: {count:,} ({percent(part)} of {escape(row)})</title></rect>"
            )
            if cell >= 24:
                ink = "#fff" if part > 0.5 else "#212121"
                body.append(
                    f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" fill="{ink}">'
                    f"{count:,}</text>"
                )
    body.append("</g>")
    return _svg(width, height, label, body)
