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
from typing import Any

from . import __version__
from .charts import Bar, bar_chart, escape, heat_map, percent, share, stacked_bar
from .report_digest import (
    _CLASSIFIED,
    EXAMPLE_ROWS,
    OFF_LIST_ANSWERS,
    REASONS,
    ROWS_PER_ANSWER,
    STATUS_COLOURS,
    TRACKED,
    RowDigest,
    _confusion_axes,
    _duration,
    _int,
    _text,
    _usd,
    batch_savings,
)
from .report_sheets import workbook_sheets

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
.succeeded { background: #2e7d32; } .succeeded_with_errors, .degraded { background: #ef6c00; }
.failed { background: #c62828; }
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
    out.append(_review_note(summary))
    out.append(_controls_note(summary))
    out.append("</section>")
    return "".join(out)


def _review_note(summary: Mapping[str, Any]) -> str:
    """How many rows need review, and the workbook holding them (a summary from before the flag has none)."""
    if "needs_review" not in summary:
        return ""
    flagged = int(summary.get("needs_review") or 0)
    queue = summary.get("review_queue") or {}
    where = ""
    if isinstance(queue, dict) and queue.get("file"):
        where = f", in {escape(str(queue['file']).rsplit('/', 1)[-1])}"
    why = "low or missing confidence, or an answer matched only by alias or fuzzy matching"
    return f"<p>{_int(flagged)} rows need review ({why}){where}.</p>"


def _controls_note(summary: Mapping[str, Any]) -> str:
    """The control rows' accuracy (the task's controls; in none of the figures above), and whether it fell below the
    task's minimum."""
    controls = summary.get("controls")
    if not isinstance(controls, dict) or not controls.get("rows"):
        return ""
    minimum = controls.get("min_accuracy")
    floor = f" (minimum {percent(float(minimum))})" if minimum is not None else ""
    verdict = ": <b>below it, the run is degraded</b>" if controls.get("degraded") else ""
    return (
        f"<p>Control rows: {_int(controls.get('correct'))} of {_int(controls['rows'])} answered right, accuracy "
        f"{percent(float(controls.get('accuracy') or 0.0))}{floor}{verdict}. They were mixed into the run's requests "
        "and are in no figure above.</p>"
    )


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
