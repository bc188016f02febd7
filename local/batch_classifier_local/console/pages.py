"""The console's pages as HTML, rendered on the server from the views' JSON so that they read without scripts;
``static/app.js`` then refreshes them, opens a state's details and sends a redrive.

Every value that comes from a user or a run (file names, keys, errors, causes, payloads) goes through :func:`h`
(the shared package's HTML escaping, :func:`batch_classifier.charts.escape`, which the run report uses too) or,
for the data a page's script reads, :func:`script_json` (JSON that cannot close its ``<script>`` element). The
page's frame is ``static/index.html``, filled in one pass so that no value is read as a placeholder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from batch_classifier.charts import escape as h

from ..executions import TERMINAL_FAILURES

STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def script_json(data: Any) -> str:
    """JSON to embed in ``<script type="application/json">``: ``<``, ``>`` and ``&`` as ``\\u`` escapes."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _frame() -> str:
    return resources.files(__package__).joinpath("static", "index.html").read_text(encoding="utf-8")


def page(title: str, name: str, main: str, data: Any = None) -> str:
    """A whole page: the frame with its title, the page's name (for the script), its content and its data."""
    values = {"title": h(title), "page": h(name), "main": main, "data": script_json(data or {})}
    return _PLACEHOLDER.sub(lambda found: values.get(found[1], ""), _frame())


def execution_url(name: str) -> str:
    return f"/executions/{quote(name, safe='')}"


def run_url(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def when(iso: str | None) -> str:
    """``2026-11-30 09:26:26`` from an ISO time (as ``batch-classifier executions`` prints it)."""
    return iso[:19].replace("T", " ") if iso else ""


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def status_badge(status: str | None, ident: str = "") -> str:
    text = status or "—"
    css = re.sub(r"[^a-z0-9-]", "-", text.lower())
    attribute = f' id="{h(ident)}"' if ident else ""
    return f'<span class="status status-{h(css)}"{attribute}>{h(text)}</span>'


def _table(headers: Iterable[str], rows: Iterable[str], css: str = "", body_id: str = "") -> str:
    head = "".join(f"<th>{h(name)}</th>" for name in headers)
    body_attr = f' id="{h(body_id)}"' if body_id else ""
    return f'<table class="{h(css)}"><thead><tr>{head}</tr></thead><tbody{body_attr}>{"".join(rows)}</tbody></table>'


def _facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escaped by the caller)."""
    items = "".join(f"<dt>{h(label)}</dt><dd>{value}</dd>" for label, value in pairs if value)
    return f'<dl class="facts">{items}</dl>'


def _pre(value: Any) -> str:
    if value is None or value == "":
        return ""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return f"<pre>{h(text)}</pre>"


# --- executions -----------------------------------------------------------------------------------------------


def execution_row(row: Mapping[str, Any]) -> str:
    """One line of the executions table (``app.js`` builds the same from ``/api/executions``)."""
    outcome = h(row.get("outcome") or ("run" if row.get("run_id") else ""))
    if row.get("run_id"):
        outcome = f'<a href="{h(run_url(row["run_id"]))}">{outcome}</a>'
    rows = row.get("rows")
    return (
        f'<tr data-status="{h(row["status"])}">'
        f'<td><a href="{h(execution_url(row["name"]))}">{h(row["name"])}</a></td>'
        f"<td>{status_badge(row['status'])}</td>"
        f'<td class="file">{h(row.get("file"))}</td>'
        f"<td>{h(row.get('task'))}</td>"
        f'<td class="num">{h(f"{rows:,}" if isinstance(rows, int) else "")}</td>'
        f"<td>{h(when(row.get('started')))}</td>"
        f'<td class="num">{h(duration(row.get("seconds")))}</td>'
        f"<td>{outcome}</td>"
        "</tr>"
    )


def executions_page(listing: Mapping[str, Any], status: str | None) -> str:
    """The executions page from :meth:`ConsoleData.executions` (``executions``, ``truncated``, ``limit``)."""
    rows: list[dict[str, Any]] = list(listing.get("executions") or [])
    options = "".join(
        f'<option value="{h(value)}"{" selected" if value == (status or "") else ""}>{h(value or "all")}</option>'
        for value in ("", *STATUSES)
    )
    shown = [row for row in rows if not status or row["status"] == status]
    table = _table(
        ["Name", "Status", "File", "Task", "Rows", "Started", "Duration", "Outcome"],
        [execution_row(row) for row in shown],
        css="executions",
        body_id="execution-rows",
    )
    empty = "" if shown else '<p class="empty" id="no-executions">No executions yet: drop a file into the bucket.</p>'
    limit = int(listing.get("limit") or len(rows))
    more = (
        f'<p class="hint" id="executions-truncated">The newest {limit:,} '
        "executions; older ones are not listed here (<code>aws stepfunctions list-executions</code> lists them all)."
        "</p>"
        if listing.get("truncated")
        else ""
    )
    main = (
        '<div class="heading"><h1>Executions</h1>'
        '<form class="filter" method="get" action="/"><label>Status '
        f'<select name="status" id="status-filter">{options}</select></label>'
        '<noscript><button type="submit">Filter</button></noscript></form>'
        '<span class="refresh" id="refresh-note"></span></div>'
        f"{table}{empty}{more}"
    )
    return page("Executions", "executions", main, {"status": status or "", "executions": rows})


# --- one execution ----------------------------------------------------------------------------------------------


def execution_page(detail: Mapping[str, Any]) -> str:
    name = str(detail["name"])
    run_id = detail.get("run_id")
    redriven = detail.get("redrive_count") or 0
    facts = _facts(
        [
            ("File", h(detail.get("file"))),
            ("Run", f'<a href="{h(run_url(run_id))}">{h(run_id)}</a>' if run_id else ""),
            ("Started", h(when(detail.get("started")))),
            ("Stopped", h(when(detail.get("stopped")))),
            ("Duration", h(duration(detail.get("seconds")))),
            ("Redriven", h(f"{redriven}×, last at {when(detail.get('redrive_date'))}") if redriven else ""),
            ("Error", f"<code>{h(detail.get('error'))}</code>" if detail.get("error") else ""),
            ("Cause", _pre(detail.get("cause"))),
            ("ARN", f"<code>{h(detail['arn'])}</code>"),
        ]
    )
    sections = [
        f'<p class="crumbs"><a href="/">Executions</a> / {h(name)}</p>',
        f'<div class="heading"><h1>{h(name)}</h1>{status_badge(detail["status"], "execution-status")}'
        '<span class="refresh" id="refresh-note"></span></div>',
        facts,
        _redrive_block(detail),
        _results_block(detail),
        '<section class="graph-and-details"><div class="graph" id="graph">'
        f"{detail['graph']['svg']}</div>"
        '<aside class="state-details" id="state-details"><p class="hint">Click a state to see its input, output, '
        "error and cause.</p></aside></section>",
        _legend(),
        _states_block(detail),
        _maps_block(detail),
        _history_block(detail),
    ]
    data = {
        "name": name,
        "arn": detail["arn"],
        "status": detail["status"],
        "events": detail.get("events"),
        "redrive_count": redriven,
        "states": detail.get("states", {}),
    }
    return page(f"{name} ({detail['status']})", "execution", "".join(sections), data)


def _legend() -> str:
    items = [
        ("succeeded", "succeeded"),
        ("failed", "failed"),
        ("running", "running"),
        ("not-reached", "not reached"),
        ("unrecorded", "in child workflows (not recorded)"),
    ]
    spans = "".join(
        f'<span class="legend-item"><i class="swatch status-{key}"></i>{h(text)}</span>' for key, text in items
    )
    return f'<p class="legend">{spans}</p>'


def _redrive_block(detail: Mapping[str, Any]) -> str:
    if detail["status"] not in TERMINAL_FAILURES:
        return ""
    url = f"/api/executions/{quote(str(detail['name']), safe='')}/redrive"
    if detail.get("redrivable"):
        return (
            '<div class="redrive"><button type="button" id="redrive-button" class="danger" '
            f'data-url="{h(url)}">Redrive</button>'
            "<span>resumes this execution (same ARN) at the state that did not succeed, with that state's input; "
            "in a failed Distributed Map only the children that did not succeed run again.</span>"
            '<p class="message" id="redrive-message" role="status"></p></div>'
        )
    return (
        '<div class="redrive"><button type="button" disabled>Redrive</button>'
        f'<span class="refusal">{h(detail.get("redrive_refusal"))}</span></div>'
    )


def _results_block(detail: Mapping[str, Any]) -> str:
    results = detail.get("results")
    run_id = detail.get("run_id")
    if not results:
        return ""
    links = "".join(
        f'<li><a href="{h(f["url"])}" download>{h(f["name"])}</a></li>' if f.get("url") else f"<li>{h(f['uri'])}</li>"
        for f in results.get("files", [])
    )
    run_link = f' · <a href="{h(run_url(run_id))}">the run: report, shards, every file</a>' if run_id else ""
    return (
        f'<section class="results"><h2>Results</h2><p>{h(results.get("headline"))}{run_link}</p>'
        f'<ul class="files">{links}</ul></section>'
    )


def _states_block(detail: Mapping[str, Any]) -> str:
    rows = []
    for state in detail.get("states", {}).values():
        if "entered" not in state:
            continue
        problem = f"{state.get('error')}" if state.get("error") else ""
        extra = []
        if state.get("passes", 1) > 1:
            extra.append(f"{state['passes']} passes")
        if state.get("retries"):
            extra.append(f"retried {state['retries']}×")
        rows.append(
            f'<tr class="status-row-{h(state["status"])}"><td><a href="#state={h(quote(state["id"], safe=""))}" '
            f'class="state-link" data-state="{h(state["id"])}">{h(state["name"])}</a></td><td>{h(state["type"])}</td>'
            f"<td>{status_badge(str(state['status']).upper())}</td>"
            f'<td class="num">{h(duration(state.get("seconds")))}</td>'
            f"<td>{h(', '.join(extra))}</td><td><code>{h(problem)}</code></td></tr>"
        )
    if not rows:
        return ""
    table = _table(["State", "Type", "Status", "Duration", "", "Error"], rows, css="states")
    hint = '<p class="hint">The last pass of each state, in the order they ran.</p>'
    return f"<section><h2>States</h2>{hint}{table}</section>"


def _maps_block(detail: Mapping[str, Any]) -> str:
    maps = detail.get("map_runs") or {}
    shards = detail.get("shards") or {}
    if not maps and not shards.get("total"):
        return ""
    parts = ['<section class="maps"><h2>Distributed Map</h2>']
    for state, runs in maps.items():
        rows = []
        for run in runs:
            items = run.get("items") or {}
            failed = sum(int(items.get(k, 0)) for k in ("failed", "timedOut", "aborted"))
            rows.append(
                f"<tr><td>{h(when(run.get('started')))}</td><td>{status_badge(run.get('status'))}</td>"
                f'<td class="num">{h(items.get("total", ""))}</td><td class="num">{h(items.get("succeeded", ""))}</td>'
                f'<td class="num">{h(items.get("running", ""))}</td><td class="num">{h(failed if items else "")}</td>'
                f"<td><code>{h(run.get('error'))}</code> {h(run.get('cause'))}</td></tr>"
            )
        table = _table(["Started", "Status", "Items", "Succeeded", "Running", "Failed", "Error"], rows, css="map-runs")
        parts.append(f"<h3>{h(state)}: map runs</h3>{table}")
    if shards.get("total"):
        counts = ", ".join(f"{count} {status}" for status, count in shards.get("by_status", {}).items())
        run_id = detail.get("run_id")
        link = f' <a href="{h(run_url(run_id))}">every shard, its job and its counts</a>' if run_id else ""
        parts.append(
            f"<p>Shards in the status table: {h(shards['total'])} ({h(counts)}), {h(shards.get('records'))} records, "
            f"{h(shards.get('jobs'))} batch jobs.{link}</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _history_block(detail: Mapping[str, Any]) -> str:
    rows = []
    for row in detail.get("history", []):
        elapsed = row.get("elapsed")
        at = f"+{elapsed:.2f} s" if isinstance(elapsed, float | int) else ""
        if row["kind"] == "loop":
            rows.append(
                f'<tr class="loop"><td class="num">{h(row["first_id"])}–{h(row["last_id"])}</td>'
                f'<td class="num">{h(at)}</td>'
                f"<td>poll loop</td><td>{h(' → '.join(row['states']))}</td>"
                f"<td><strong>×{h(row['count'])}</strong> ({h(row['events'])} events, until "
                f"{h(when(row.get('ended')))})</td></tr>"
            )
            continue
        css = ' class="failed"' if row.get("failed") else ""
        rows.append(
            f'<tr{css}><td class="num">{h(row["id"])}</td><td class="num">{h(at)}</td><td>{h(row["type"])}</td>'
            f"<td>{h(row.get('state'))}</td><td>{h(row.get('detail'))}</td></tr>"
        )
    table = _table(["#", "Time", "Type", "State", "Detail"], rows, css="history")
    return (
        f'<section><h2>Event history</h2><p class="hint">{h(detail.get("events"))} events; the turns of a poll loop '
        f"that repeat are one row.</p>{table}</section>"
    )


# --- one run ----------------------------------------------------------------------------------------------------


def run_page(run: Mapping[str, Any]) -> str:
    run_id = str(run["run_id"])
    summary = run.get("summary") or {}
    execution = run.get("execution")
    by_status = summary.get("by_status") or {}
    tokens = summary.get("tokens") or {}
    facts = _facts(
        [
            ("Source", h(summary.get("source"))),
            (
                "Execution",
                f'<a href="{h(execution_url(execution["name"]))}">{h(execution["name"])}</a>' if execution else "",
            ),
            ("Task", h(summary.get("task"))),
            ("Model", h(summary.get("model_id"))),
            ("Outcome", h(summary.get("outcome"))),
            ("Rows", h(f"{summary['rows']:,}" if isinstance(summary.get("rows"), int) else "")),
            ("By status", h(", ".join(f"{count:,} {name}" for name, count in by_status.items() if count))),
            ("Shards", h(summary.get("shards"))),
            ("Batch jobs", h(summary.get("batch_jobs"))),
            ("Tokens", h(f"{tokens.get('input', 0):,} in, {tokens.get('output', 0):,} out" if tokens else "")),
            ("Cost", h(f"${summary['cost_usd']:.4f}" if isinstance(summary.get("cost_usd"), int | float) else "")),
            ("Accuracy", h(f"{summary['accuracy']:.1%}" if isinstance(summary.get("accuracy"), int | float) else "")),
            ("Started", h(when(summary.get("started")))),
            ("Finished", h(when(summary.get("finished")))),
            ("Error", f"<code>{h(summary.get('error'))}</code>" if summary.get("error") else ""),
            ("Cause", _pre(summary.get("cause"))),
            (
                "Output folder",
                f"<code>{h(summary.get('output_prefix'))}</code>" if summary.get("output_prefix") else "",
            ),
        ]
    )
    report = run.get("report")
    report_block = (
        f'<p class="report"><a href="{h(run_url(run_id))}/report" id="report-link" target="_blank" rel="noopener">'
        "Open the run report</a> (report.html in the output folder)</p>"
        if report
        else '<p class="hint">No report.html in the output folder.</p>'
    )
    files = [
        f'<tr><td><a href="{h(f["url"])}" download>{h(f["name"])}</a></td><td class="num">{h(_size(f["size"]))}</td>'
        f"<td>{h(when(f.get('modified')))}</td><td><code>{h(f['uri'])}</code></td></tr>"
        for f in run.get("files", [])
    ]
    files_block = (
        _table(["File", "Size", "Modified", "S3"], files, css="files")
        if files
        else '<p class="hint">No output files yet.</p>'
    )
    shard_rows = []
    for shard in run.get("shards", []):
        counts = [shard.get(k) for k in ("total_records", "success_records", "error_records")]
        job_counts = (
            " / ".join("" if c is None else str(c) for c in counts) if any(c is not None for c in counts) else ""
        )
        shard_rows.append(
            f"<tr><td>{h(shard['name'])}</td><td>{h(shard.get('kind'))}</td>"
            f'<td class="num">{h(shard.get("round"))}</td>'
            f'<td>{status_badge(shard.get("status"))}</td><td class="num">{h(shard.get("records"))}</td>'
            f'<td class="num">{h(job_counts)}</td><td class="num">{h(shard.get("attempts"))}</td>'
            f"<td><code>{h(shard.get('job_arn'))}</code></td><td><code>{h(shard.get('error'))}</code></td></tr>"
        )
    shards_block = (
        _table(
            ["Shard", "Kind", "Round", "Status", "Records", "Job: total / ok / errors", "Attempts", "Job ARN", "Error"],
            shard_rows,
            css="shards",
        )
        if shard_rows
        else '<p class="hint">No shards recorded.</p>'
    )
    main = (
        f'<p class="crumbs"><a href="/">Executions</a> / run {h(run_id)}</p>'
        f'<div class="heading"><h1>Run {h(run_id)}</h1>{status_badge(summary.get("status"), "run-status")}'
        '<span class="refresh" id="refresh-note"></span></div>'
        f"{facts}<section><h2>Report</h2>{report_block}</section>"
        f"<section><h2>Output files</h2>{files_block}</section>"
        f"<section><h2>Shards</h2>{shards_block}</section>"
        "<section><details><summary>The run's item in the status table</summary>"
        f"{_pre(run.get('run'))}</details></section>"
    )
    data = {"run_id": run_id, "status": summary.get("status"), "signature": run_signature(run)}
    return page(f"Run {run_id}", "run", main, data)


def run_signature(run: Mapping[str, Any]) -> str:
    """What changes on a run's page while it goes on (its page reloads when it does)."""
    summary = run.get("summary") or {}
    shards = ",".join(f"{s['name']}:{s.get('status')}" for s in run.get("shards", []))
    files = ",".join(f["name"] for f in run.get("files", []))
    return f"{summary.get('status')}|{shards}|{files}"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def error_page(code: int, message: str) -> str:
    main = f'<p class="crumbs"><a href="/">Executions</a></p><h1>{h(code)}</h1><p class="error">{h(message)}</p>'
    return page(str(code), "error", main)
