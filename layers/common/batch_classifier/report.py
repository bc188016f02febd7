"""The run report: one self-contained HTML page, and the same figures as spreadsheet sheets.

FinalizeRun writes ``report.html`` next to a run's results, ``collect`` next to its output, and
``batch-classifier report`` builds it again for any past run: the page is made from ``summary.json`` alone, so
its size and the time to make it depend on the number of classes, never on the number of rows. It is one file:
the charts are inline SVG (:mod:`.charts`), styles are inline, there is no script, and a Content-Security-Policy
forbids the page any network access. Every value that comes from users (class names, ids, texts, answers, reasons) is
HTML-escaped.

What the page shows, each part only when the summary has its figures: the run (file, task, model, outcome),
rows by status, how answers were matched, the class distribution, the evaluation against a ground-truth column
(accuracy, coverage, per-class precision/recall/F1, a confusion-matrix heat map, the most confused pairs), tokens
and cost (batch and on-demand, what the same tokens cost on demand, and what packing saved when the summary has
``cost.packing_saved_usd``), the off-list answers with their counts and rows, the rows not classified with their
reasons and examples, the time each step took (``timings``), and warnings.

The rows themselves are never read by the page. What it shows of them comes from aggregates that
:class:`RowDigest` counts while the rows are written (``off_list_answers`` and ``not_classified`` in the
summary), and they are bounded whatever the row count: the ``OFF_LIST_ANSWERS`` most frequent off-list answers
with the first ``ROWS_PER_ANSWER`` rows of each, and per status the ``REASONS`` most frequent reasons and the
first ``EXAMPLE_ROWS`` rows. At most ``TRACKED`` distinct answers (and reasons) are counted one by one; rows
with answers beyond those are counted together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl.utils import get_column_letter

from . import __version__
from .charts import Bar, bar_chart, escape, heat_map, percent, share, stacked_bar
from .cost import PriceTable
from .errors import PriceNotFoundError
from .evaluation import NO_ANSWER
from .writers import Sheet, Styled

__all__ = [
    "EXAMPLE_ROWS",
    "OFF_LIST_ANSWERS",
    "REASONS",
    "REPORT_NAME",
    "ROWS_PER_ANSWER",
    "TRACKED",
    "RowDigest",
    "batch_savings",
    "render_report",
    "workbook_sheets",
]

#: The report's file name, beside the results.
REPORT_NAME = "report.html"
OFF_LIST_ANSWERS = 50
ROWS_PER_ANSWER = 5
REASONS = 20
EXAMPLE_ROWS = 20
TRACKED = 1000
_ANSWER_CHARS = 200

_CLASSIFIED = "classified"
_OFF_LIST = "off_list"
# "row 12: ..." and "sheet 'Calls', row 12: ..." start the reasons of invalid rows: counted without them.
_ROW_PREFIX = re.compile(r"^(?:sheet '[^']*', )?row \d+: ")


# --- the aggregates the report needs from the rows ------------------------------------------------------------


@dataclass
class _Tally:
    """Counts of up to ``TRACKED`` distinct keys, each with its first ``keep`` examples; rows with a key first
    seen after that are counted in ``others``."""

    keep: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    others: int = 0

    def add(self, key: str, example: dict[str, Any] | None = None) -> None:
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < TRACKED:
            self.counts[key] = 1
            self.examples[key] = []
        else:
            self.others += 1
            return
        kept = self.examples[key]
        if example is not None and len(kept) < self.keep:
            kept.append(example)

    def top(self, count: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:count]


@dataclass
class _Status:
    rows: int = 0
    reasons: _Tally = field(default_factory=lambda: _Tally(keep=0))
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RowDigest:
    """What the report shows of the rows, counted as they go by in bounded memory (see the module's notes)."""

    off_list: _Tally = field(default_factory=lambda: _Tally(keep=ROWS_PER_ANSWER))
    off_list_rows: int = 0
    statuses: dict[str, _Status] = field(default_factory=dict)

    def add(self, row: Mapping[str, Any], number: int) -> None:
        """Count one output row; ``number`` is its 1-based position in the input."""
        status = str(row.get("status") or "")
        if status == _CLASSIFIED:
            return
        where = {"row": number, "id": _text(row.get("id"))}
        if status == _OFF_LIST:
            self.off_list_rows += 1
            self.off_list.add(_text(row.get("model_answer"))[:_ANSWER_CHARS], where)
            return
        reason = _text(row.get("reason"))
        tally = self.statuses.setdefault(status, _Status())
        tally.rows += 1
        tally.reasons.add(_ROW_PREFIX.sub("", reason, count=1))
        if len(tally.examples) < EXAMPLE_ROWS:
            tally.examples.append({**where, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """``off_list_answers`` and ``not_classified``, as they go into ``summary.json``."""
        top = self.off_list.top(OFF_LIST_ANSWERS)
        answers = [{"answer": answer, "count": count, "rows": self.off_list.examples[answer]} for answer, count in top]
        not_classified: dict[str, Any] = {}
        for status, tally in sorted(self.statuses.items()):
            reasons = tally.reasons.top(REASONS)
            not_classified[status] = {
                "rows": tally.rows,
                "reasons": [{"reason": reason, "count": count} for reason, count in reasons],
                "other_reasons": tally.rows - sum(count for _, count in reasons),
                "examples": tally.examples,
            }
        return {
            "off_list_answers": {
                "rows": self.off_list_rows,
                "distinct": len(self.off_list.counts),
                "answers": answers,
                "not_listed": self.off_list_rows - sum(count for _, count in top),
            },
            "not_classified": not_classified,
        }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def batch_savings(
    tokens: Mapping[str, Any], cost_usd: float | None, model_id: str, prices: PriceTable
) -> dict[str, Any]:
    """What the run's tokens would have cost on demand and what batch saved (nothing when the model has no price)."""
    if cost_usd is None:
        return {}
    try:
        all_on_demand = prices.cost(model_id, int(tokens["input"]), int(tokens["output"]), "on_demand")
    except PriceNotFoundError:
        return {}
    return {
        "on_demand_equivalent_usd": round(all_on_demand, 6),
        "batch_saved_usd": round(all_on_demand - cost_usd, 6),
    }


# --- formatting ------------------------------------------------------------------------------------------------


def _int(value: Any) -> str:
    return f"{int(value or 0):,}"


def _usd(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


STATUS_COLOURS = {
    "classified": "#2e7d32",
    "off_list": "#f9a825",
    "unparseable": "#ef6c00",
    "model_error": "#c62828",
    "invalid_input": "#757575",
    "pending": "#90a4ae",
}


def _confusion_axes(evaluation: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The confusion matrix's rows (classes that are some row's truth) and columns (classes that are a truth or an
    answer, then ``(no answer)`` when some row has none), in the task's order."""
    per_class: Mapping[str, Mapping[str, Any]] = evaluation.get("per_class") or {}
    confusion: Mapping[str, Mapping[str, int]] = evaluation.get("confusion") or {}
    truths = [c for c, m in per_class.items() if m.get("support")]
    answers = [c for c, m in per_class.items() if m.get("support") or m.get("predicted")]
    if any(NO_ANSWER in cells for cells in confusion.values()):
        answers.append(NO_ANSWER)
    return truths, answers


# --- the page ---------------------------------------------------------------------------------------------------

PAGE_STYLE = """
:root { color-scheme: light; --ink: #212121; --muted: #616161; --line: #e0e0e0; --tint: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
header { padding: 20px 32px 12px; background: var(--tint); border-bottom: 1px solid var(--line); }
main { padding: 8px 32px 32px; max-width: 1100px; }
nav { padding: 8px 32px; font-size: 13px; border-bottom: 1px solid var(--line); }
a { color: #1565c0; text-decoration: none; } a:hover { text-decoration: underline; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
h3 { font-size: 14px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; overflow-wrap: anywhere; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0 4px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.tile b { display: block; font-size: 20px; } .tile span { color: var(--muted); font-size: 12px; }
.outcome { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.succeeded { background: #2e7d32; } .succeeded_with_errors { background: #ef6c00; } .failed { background: #c62828; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; padding-left: 10px; }
.text { display: inline-block; max-width: 520px; overflow-wrap: anywhere; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.meter { display: inline-block; width: 90px; height: 9px; background: #eceff1; }
.meter span { display: block; height: 9px; background: #1565c0; }
svg.chart { display: block; max-width: 100%; height: auto; font: 12px system-ui, sans-serif; fill: var(--ink); }
.note { color: var(--muted); font-size: 12px; }
.warn li { color: #b71c1c; }
.placeholder { border: 1px dashed var(--line); padding: 6px 10px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; padding: 0 32px 24px; }
"""

PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render_report(summary: Mapping[str, Any]) -> str:
    """The HTML page of a run from its summary (see the module's notes); every user value is escaped."""
    sections = [
        _status_section(summary),
        _classes_section(summary),
        _evaluation_section(summary.get("evaluation")),
        _cost_section(summary),
        _off_list_section(summary.get("off_list_answers")),
        _not_classified_section(summary.get("not_classified")),
        _timings_section(summary.get("timings")),
        _warnings_section(summary),
    ]
    source = _text(summary.get("source")) or "run"
    return "".join(
        [
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{PAGE_POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Run report: {escape(source.rsplit('/', 1)[-1])}</title><style>{PAGE_STYLE}</style></head><body>\n",
            _header(summary),
            _nav(sections),
            "<main>\n",
            *(s + "\n" for s in sections if s),
            "</main>\n",
            f"<footer>Made from summary.json by batch-classifier {escape(__version__)}. Lists show at most "
            f"{OFF_LIST_ANSWERS} off-list answers ({ROWS_PER_ANSWER} rows each), {REASONS} reasons and "
            f"{EXAMPLE_ROWS} example rows per status; the results files hold every row.</footer>\n",
            "</body></html>\n",
        ]
    )


_SECTION_ID = re.compile(r'<section id="([^"]+)"><h2>([^<(]+)')


def _open(ident: str, title: str) -> str:
    """The start of a section with its heading (``title`` is ours, or already escaped)."""
    return f'<section id="{ident}"><h2>{title}</h2>'


def _nav(sections: Sequence[str]) -> str:
    """Links to the sections the page has (their ids and titles are ours, never a user's text)."""
    links = [_SECTION_ID.match(s) for s in sections if s]
    shown = " · ".join(f'<a href="#{m[1]}">{m[2].strip()}</a>' for m in links if m)
    return f"<nav>{shown}</nav>\n"


def _header(summary: Mapping[str, Any]) -> str:
    rows = int(summary.get("rows") or 0)
    by_status = summary.get("by_status") or {}
    classified = int(by_status.get(_CLASSIFIED) or 0)
    tiles = [(_int(rows), "rows"), (percent(share(classified, rows)), f"classified ({classified:,})")]
    evaluation = summary.get("evaluation")
    if evaluation and evaluation.get("rows"):
        tiles.append((percent(evaluation.get("accuracy")), f"accuracy on {int(evaluation['rows']):,} labelled rows"))
    if "cost_usd" in summary:
        tiles.append((_usd(summary.get("cost_usd")), "cost"))
    details = [
        ("file", summary.get("source")),
        ("task", summary.get("task")),
        ("model", summary.get("model_id")),
        ("run", summary.get("run_id")),
    ]
    outcome = _text(summary.get("outcome"))
    parts = ["<header><h1>Run report</h1>"]
    shown = " · ".join(f"{name} <b>{escape(value)}</b>" for name, value in details if value)
    parts.append(f'<p class="sub">{shown}</p>')
    if outcome:
        parts.append(
            f'<p><span class="outcome {escape(outcome)}">{escape(outcome.replace("_", " "))}</span> '
            f"{escape(summary.get('headline'))}</p>"
        )
    parts.append('<div class="tiles">')
    parts += [f'<div class="tile"><b>{value}</b><span>{escape(name)}</span></div>' for value, name in tiles]
    parts.append("</div></header>\n")
    return "".join(parts)


def html_table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table from cells that are already HTML (escape user values before); ``numeric`` columns align right."""
    cls = [' class="num"' if i in numeric else "" for i in range(len(head))]
    out = ["<table><thead><tr>", *(f"<th{cls[i]}>{h}</th>" for i, h in enumerate(head)), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls[i]}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _status_section(summary: Mapping[str, Any]) -> str:
    by_status: Mapping[str, int] = summary.get("by_status") or {}
    rows = int(summary.get("rows") or 0)
    parts = [
        Bar(s, n, f"{n:,} ({percent(share(n, rows))})", STATUS_COLOURS.get(s, "#9e9e9e"))
        for s, n in by_status.items()
        if n
    ]
    out = [_open("status", "Rows by status"), stacked_bar(parts, "rows by status")]
    legend = (
        (
            f'<span class="swatch" style="background:{p.colour}"></span>{escape(p.label)}',
            _int(p.value),
            percent(share(p.value, rows)),
        )
        for p in parts
    )
    out.append(html_table(["status", "rows", "share"], legend, numeric=(1, 2)))
    by_match: Mapping[str, int] = summary.get("by_match") or {}
    if by_match:
        out.append("<h3>How answers were matched to the categories</h3>")
        out.append(html_table(["match", "rows"], ((escape(m), _int(n)) for m, n in by_match.items()), numeric=(1,)))
    out.append("</section>")
    return "".join(out)


def _classes_section(summary: Mapping[str, Any]) -> str:
    by_class: Mapping[str, int] = summary.get("by_class") or {}
    if not by_class:
        return ""
    total = sum(by_class.values())
    order = sorted(enumerate(by_class.items()), key=lambda item: (-item[1][1], item[0]))
    bars = [Bar(name, count, f"{count:,} ({percent(share(count, total))})") for _, (name, count) in order]
    unused = sum(1 for count in by_class.values() if not count)
    note = f'<p class="note">{unused} of {len(by_class)} categories were given to no row.</p>' if unused else ""
    return (
        _open("classes", "Class distribution")
        + f'<p class="note">{total:,} classified rows, most frequent first.</p>'
        + bar_chart(bars, "classified rows by class")
        + note
        + "</section>"
    )


def _evaluation_section(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return ""
    out = [_open("evaluation", "Against the ground truth")]
    rows = int(evaluation.get("rows") or 0)
    if not rows:
        out.append(f"<p>No row has a ground-truth label ({_int(evaluation.get('unlabelled'))} rows without).</p>")
        return "".join(out) + "</section>"
    correct, answered = int(evaluation.get("correct") or 0), int(evaluation.get("answered") or 0)
    figures = [
        ("accuracy", percent(evaluation.get("accuracy")), f"{correct:,} of {rows:,} labelled rows"),
        ("accuracy on answered rows", percent(evaluation.get("accuracy_answered")), f"{correct:,} of {answered:,}"),
        ("coverage", percent(evaluation.get("coverage")), f"{answered:,} of {rows:,} rows answered"),
    ]
    for name in ("macro", "weighted"):
        averages = evaluation.get(name) or {}
        figures.append(
            (
                f"{name} F1",
                percent(averages.get("f1")),
                f"precision {percent(averages.get('precision'))}, recall {percent(averages.get('recall'))}",
            )
        )
    if evaluation.get("unlabelled"):
        figures.append(("rows without ground truth", _int(evaluation["unlabelled"]), "not scored"))
    out.append(html_table(["", "", ""], ((escape(a), b, escape(c)) for a, b, c in figures), numeric=(1,)))

    per_class: Mapping[str, Mapping[str, Any]] = evaluation.get("per_class") or {}
    if per_class:
        out.append("<h3>Per class</h3>")
        lines = []
        for name, m in per_class.items():
            f1 = float(m.get("f1") or 0)
            meter = f'<span class="meter"><span style="width:{f1 * 100:.1f}%"></span></span>'
            lines.append(
                (
                    escape(name),
                    _int(m.get("support")),
                    _int(m.get("predicted")),
                    percent(m.get("precision")),
                    percent(m.get("recall")),
                    percent(f1),
                    meter,
                )
            )
        head = ["class", "support", "predicted", "precision", "recall", "F1", ""]
        out.append(html_table(head, lines, numeric=(1, 2, 3, 4, 5)))
    truths, answers = _confusion_axes(evaluation)
    grid = heat_map(
        truths, answers, evaluation.get("confusion") or {}, "confusion matrix: true class by row, answer by column"
    )
    if grid:
        out.append(
            '<h3 id="confusion">Confusion matrix</h3><p class="note">A row per true class, a column per answer; '
            "a cell's shade is its share of the true class's rows: blue where the answer was right, red where it "
            "was another class or none. Hover a cell for its count.</p>"
        )
        out.append(grid)
    pairs = evaluation.get("most_confused") or []
    if pairs:
        out.append("<h3>Most confused</h3>")
        lines2 = ((escape(p.get("truth")), escape(p.get("predicted")), _int(p.get("count"))) for p in pairs)
        out.append(html_table(["true class", "answered", "rows"], lines2, numeric=(2,)))
    out.append("</section>")
    return "".join(out)


def _cost_section(summary: Mapping[str, Any]) -> str:
    tokens = summary.get("tokens")
    if not isinstance(tokens, Mapping):
        return ""
    cost = summary.get("cost") or {}
    unknown = summary.get("cost_usd") is None
    lines = []
    for kind, label, usd in (("batch", "batch", "batch_usd"), ("on_demand", "on demand", "on_demand_usd")):
        used = tokens.get(kind) or {}
        lines.append((label, _int(used.get("input")), _int(used.get("output")), _usd(cost.get(usd))))
    lines.append(
        (
            "<b>total</b>",
            _int(tokens.get("input")),
            _int(tokens.get("output")),
            f"<b>{_usd(summary.get('cost_usd'))}</b>",
        )
    )
    out = [_open("cost", "Tokens and cost")]
    out.append(html_table(["", "input tokens", "output tokens", "cost (USD)"], lines, numeric=(1, 2, 3)))
    notes = []
    if tokens.get("source"):
        notes.append(f"Tokens counted from the {escape(tokens['source'])}.")
    if unknown:
        notes.append("The model has no price in prices.yaml: cost unknown.")
    if cost.get("on_demand_equivalent_usd") is not None:
        notes.append(
            f"The same tokens on demand: <b>{_usd(cost['on_demand_equivalent_usd'])}</b>; batch saved "
            f"<b>{_usd(cost.get('batch_saved_usd'))}</b>."
        )
    out += [f"<p>{n}</p>" for n in notes]
    # What packing (several texts a request) saved: shown when the summary has the figure.
    if cost.get("packing_saved_usd") is not None:
        packing = summary.get("packing") or {}
        per = f" ({_int(packing.get('texts_per_request'))} texts a request)" if packing.get("texts_per_request") else ""
        out.append(f'<p class="placeholder">Packing saved <b>{_usd(cost["packing_saved_usd"])}</b>{per}.</p>')
    out.append("</section>")
    return "".join(out)


def _rows_cell(rows: Sequence[Mapping[str, Any]], more: int) -> str:
    shown = ", ".join(
        f'{escape(r.get("id")) or "(no id)"} <span class="note">(row {_int(r.get("row"))})</span>' for r in rows
    )
    return shown + (f' <span class="note">and {more:,} more</span>' if more > 0 else "")


def _distinct(count: Any) -> str:
    """How many distinct answers: past ``TRACKED`` they were not all counted one by one."""
    number = int(count or 0)
    return f"{number:,} or more" if number >= TRACKED else f"{number:,}"


def _off_list_section(digest: Mapping[str, Any] | None) -> str:
    if not digest or not digest.get("rows"):
        return ""
    answers = digest.get("answers") or []
    lines = (
        (
            f'<span class="text">{escape(a.get("answer")) or "(empty)"}</span>',
            _int(a.get("count")),
            _rows_cell(a.get("rows") or [], int(a.get("count") or 0) - len(a.get("rows") or [])),
        )
        for a in answers
    )
    out = [
        _open("off-list", "Off-list answers"),
        f"<p>{_int(digest['rows'])} rows were answered with something that is not one of the task's categories "
        f"({_distinct(digest.get('distinct'))} distinct answers). The most frequent, with the first rows that got "
        "each:</p>",
        html_table(["answer", "rows", "ids (row numbers)"], lines, numeric=(1,)),
    ]
    if digest.get("not_listed"):
        out.append(f'<p class="note">{_int(digest["not_listed"])} more rows have answers not listed here.</p>')
    out.append("</section>")
    return "".join(out)


def _not_classified_section(digest: Mapping[str, Any] | None) -> str:
    if not digest:
        return ""
    out = [_open("not-classified", "Rows not classified")]
    for status, tally in digest.items():
        out.append(f"<h3>{escape(status)}: {_int(tally.get('rows'))} rows</h3>")
        reasons = tally.get("reasons") or []
        if reasons:
            lines = ((f'<span class="text">{escape(r.get("reason"))}</span>', _int(r.get("count"))) for r in reasons)
            out.append(html_table(["reason", "rows"], lines, numeric=(1,)))
        if tally.get("other_reasons"):
            out.append(f'<p class="note">{_int(tally["other_reasons"])} more rows have other reasons.</p>')
        examples = tally.get("examples") or []
        if examples:
            lines2 = (
                (_int(x.get("row")), escape(x.get("id")), f'<span class="text">{escape(x.get("reason"))}</span>')
                for x in examples
            )
            out.append(f'<p class="note">The first {len(examples)} rows:</p>')
            out.append(html_table(["row", "id", "reason"], lines2, numeric=(0,)))
    out.append("</section>")
    return "".join(out)


def _timings_section(timings: Mapping[str, Any] | None) -> str:
    steps = (timings or {}).get("steps") or []
    if not steps:
        return ""
    bars = [
        Bar(_text(s.get("step")), float(s.get("seconds") or 0), _duration(float(s.get("seconds") or 0))) for s in steps
    ]
    total = timings.get("total_seconds") if timings else None
    head = f" ({_duration(float(total))} in all)" if total is not None else ""
    span = ""
    if timings and timings.get("started_at") and timings.get("finished_at"):
        span = f'<p class="note">From {escape(timings["started_at"])} to {escape(timings["finished_at"])}.</p>'
    return _open("timings", f"Time by step{head}") + span + bar_chart(bars, "time by step") + "</section>"


def _warnings_section(summary: Mapping[str, Any]) -> str:
    warnings = [_text(w) for w in summary.get("warnings") or []]
    if summary.get("unreadable_line_count"):
        warnings.append(f"{int(summary['unreadable_line_count']):,} lines of the batch output could not be read")
    if summary.get("unknown_records"):
        warnings.append(f"{int(summary['unknown_records']):,} output records belong to no record of this run")
    if not warnings:
        return ""
    return (
        _open("warnings", "Warnings")
        + '<ul class="warn">'
        + "".join(f"<li>{escape(w)}</li>" for w in warnings)
        + "</ul></section>"
    )


# --- the same figures as sheets of a workbook ------------------------------------------------------------------

_PERCENT = "0.0%"
_USD_FORMAT = "$#,##0.0000"


def _title(text: str) -> list[Any]:
    return [Styled(text, bold=True)]


def _head(*names: str) -> list[Any]:
    return [Styled(name, bold=True) for name in names]


def _percent(value: Any) -> Styled:
    return Styled(value, number_format=_PERCENT)


def workbook_sheets(summary: Mapping[str, Any]) -> list[Sheet]:
    """A ``summary`` sheet with the report's figures and, when there is a ground truth, a ``confusion`` sheet."""
    sheets = [Sheet("summary", _summary_rows(summary), widths=(34, 16, 16, 14, 14, 14))]
    evaluation = summary.get("evaluation") or {}
    if evaluation.get("rows"):
        sheets.append(_confusion_sheet(evaluation))
    return sheets


def _summary_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [_head("run", "")]
    for name, key in (
        ("file", "source"),
        ("task", "task"),
        ("model", "model_id"),
        ("run id", "run_id"),
        ("outcome", "outcome"),
        ("headline", "headline"),
    ):
        if summary.get(key):
            rows.append([name, summary[key]])
    total = int(summary.get("rows") or 0)
    rows.append(["rows", total])

    rows += [[], _head("rows by status", "rows", "share")]
    rows += [[s, n, _percent(share(n, total))] for s, n in (summary.get("by_status") or {}).items()]
    by_class: Mapping[str, int] = summary.get("by_class") or {}
    classified = sum(by_class.values())
    rows += [[], _head("class", "rows", "share")]
    rows += [[c, n, _percent(share(n, classified))] for c, n in by_class.items()]

    evaluation = summary.get("evaluation") or {}
    if evaluation.get("rows"):
        rows += [[], _title("against the ground truth")]
        rows.append(["labelled rows", evaluation["rows"]])
        for name, key in (("accuracy", "accuracy"), ("accuracy on answered rows", "accuracy_answered")):
            rows.append([name, _percent(evaluation.get(key))])
        rows.append(["coverage", _percent(evaluation.get("coverage"))])
        for name in ("macro", "weighted"):
            averages = evaluation.get(name) or {}
            rows.append([f"{name} F1", _percent(averages.get("f1"))])
        rows += [[], _head("class", "precision", "recall", "F1", "support", "predicted")]
        for name, m in (evaluation.get("per_class") or {}).items():
            rows.append(
                [
                    name,
                    _percent(m.get("precision")),
                    _percent(m.get("recall")),
                    _percent(m.get("f1")),
                    m.get("support"),
                    m.get("predicted"),
                ]
            )

    tokens = summary.get("tokens")
    if isinstance(tokens, Mapping):
        cost = summary.get("cost") or {}
        rows += [[], _head("tokens and cost", "input tokens", "output tokens", "USD")]
        for kind, label, usd in (("batch", "batch", "batch_usd"), ("on_demand", "on demand", "on_demand_usd")):
            used = tokens.get(kind) or {}
            rows.append(
                [label, used.get("input"), used.get("output"), Styled(cost.get(usd), number_format=_USD_FORMAT)]
            )
        rows.append(
            [
                "total",
                tokens.get("input"),
                tokens.get("output"),
                Styled(summary.get("cost_usd"), number_format=_USD_FORMAT),
            ]
        )
        for label, key in (
            ("the same tokens on demand", "on_demand_equivalent_usd"),
            ("saved by batch", "batch_saved_usd"),
            ("saved by packing", "packing_saved_usd"),
        ):
            if cost.get(key) is not None:
                rows.append([label, None, None, Styled(cost[key], number_format=_USD_FORMAT)])

    off_list = summary.get("off_list_answers") or {}
    if off_list.get("answers"):
        rows += [[], _head("off-list answer", "rows", "first ids")]
        for answer in off_list["answers"]:
            ids = ", ".join(_text(r.get("id")) for r in answer.get("rows") or [])
            rows.append([answer.get("answer"), answer.get("count"), ids])
    for status, tally in (summary.get("not_classified") or {}).items():
        if tally.get("reasons"):
            rows += [[], _head(f"{status}: reason", "rows")]
            rows += [[r.get("reason"), r.get("count")] for r in tally["reasons"]]

    steps = (summary.get("timings") or {}).get("steps") or []
    if steps:
        rows += [[], _head("step", "seconds")]
        rows += [[s.get("step"), s.get("seconds")] for s in steps]
    warnings = summary.get("warnings") or []
    if warnings:
        rows += [[], _title("warnings")]
        rows += [[w] for w in warnings]
    return rows


def _confusion_sheet(evaluation: Mapping[str, Any]) -> Sheet:
    confusion: Mapping[str, Mapping[str, int]] = evaluation.get("confusion") or {}
    truths, answers = _confusion_axes(evaluation)
    rows: list[list[Any]] = [[Styled("true class \\ answer", bold=True), *(Styled(a, bold=True) for a in answers)]]
    for truth in truths:
        cells = confusion.get(truth) or {}
        rows.append([Styled(truth, bold=True), *(cells.get(a, 0) for a in answers)])
    last = get_column_letter(len(answers) + 1)
    heat = f"B2:{last}{len(truths) + 1}" if truths and answers else None
    return Sheet("confusion", rows, widths=(30, *([12] * len(answers))), freeze="B2", heat_map=heat)
