"""FinalizeRun: merge every shard's verdicts in input order and write the run's outputs, summary and analytics.

One pass over the records and the merged verdicts writes every output format and the analytics partition at
once, each streamed straight to S3 as it goes (multipart uploads, Parquet a row group at a time), so neither
memory nor /tmp grows with the number of rows. XLSX is the exception: its sheets are spooled to /tmp, as the XML
their rows become, until the workbook is zipped (:mod:`.xlsx_file`), so it is written only up to ``XLSX_MAX_ROWS``
rows and skipped above (with a warning).

A paid run never fails because of an output: a table that cannot be written is dropped (its upload aborted,
so no half object is left) with a warning in the summary, and the other tables still land; so is the report.
Failing to read the run's own records or verdicts still fails the step, as does writing the summary.

The same pass writes the review queue, ``review.xlsx`` (:mod:`.review_queue`): a review workbook of only the rows
flagged ``needs_review``, published when it holds a row (dropped otherwise, and a warning if it cannot be written).

The summary holds what the report (``report.html``, :mod:`.report`) shows, so the report can be made again from
it for any past run: the counts and the evaluation, the bounded aggregates of the rows counted in the same pass
(:class:`~.report.RowDigest`), what the same tokens cost on demand, and ``timings``, the time of each part of the
run as the status table recorded it. The XLSX results get the same figures as ``summary`` and ``confusion``
sheets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa

from .analytics import ANALYTICS_COLUMNS, ANALYTICS_SCHEMA, analytics_rows
from .controls import ControlTally, controls_from_plan, degraded_note, load_controls
from .cost import PriceTable
from .errors import PriceNotFoundError
from .formats import FileFormat
from .mapping import OutputLayout
from .records import CanonicalRecord
from .report import REPORT_NAME, RowDigest, batch_savings, render_report, workbook_sheets
from .results import (
    SummaryBuilder,
    cost_summary,
    join_verdicts,
    judge_missing,
    merge_verdicts,
    output_columns,
    output_row,
    read_verdicts,
)
from .review_queue import REVIEW_QUEUE_NAME, flagged, queue_summary
from .runs import run_plan, run_task
from .settings import Settings
from .sharding import ShardKind
from .status import NOTHING_CLASSIFIED, RunOutcome, RunStatus, ShardStatus, StatusStore, run_outcome
from .storage import (
    RunFiles,
    UploadFile,
    analytics_key,
    list_keys,
    open_object,
    open_seekable,
    output_prefix,
    put_bytes,
    read_bytes,
)
from .tasks import Task
from .workflow import RunRef
from .writers import CONTENT_TYPES, S3Target, TableSink, open_sink

_log = logging.getLogger(__name__)

REJECTS_COLUMNS = ("row", "id", "reason")
_WARNING_CHARS = 300
_VERDICTS_BUFFER = 64 * 1024


def finalize_run(
    run: RunRef, s3: Any, store: StatusStore, settings: Settings, prices: PriceTable | None = None
) -> dict[str, Any]:
    """Merge every shard's verdicts in input order; write the results, summary, report, rejects and analytics."""
    began, clock = datetime.now(UTC), time.monotonic()
    files = RunFiles(run.run_id)
    plan = run_plan(s3, settings, files)
    task = run_task(s3, settings, files)
    layout = OutputLayout.from_dict(plan["output_layout"])
    shared = set(json.loads(read_bytes(s3, settings.internal_bucket, files.shared)))
    columns = output_columns(layout, plan.get("labelled", 0) > 0)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    prefix = output_prefix(run.key, run.run_id, day)
    stem = PurePosixPath(run.key).stem
    summary = SummaryBuilder(categories=task.category_names)
    digest = RowDigest()
    tables = _Tables()
    tally = _control_tally(s3, settings, files, plan, task)

    for fmt in _results_formats(settings, plan["rows"], tables.warnings):
        target = S3Target(s3, run.bucket, f"{prefix}{stem}.{fmt.value}", CONTENT_TYPES[fmt])
        tables.open(fmt.value, fmt, target, columns, xlsx_max_rows=settings.xlsx_max_rows)
    parquet = FileFormat.PARQUET
    analytics = S3Target(s3, settings.internal_bucket, analytics_key(day, run.run_id), CONTENT_TYPES[parquet])
    tables.open("analytics", parquet, analytics, ANALYTICS_COLUMNS, parquet_schema=ANALYTICS_SCHEMA, results=False)
    # The review queue: the rows flagged needs_review, as a review workbook (dropped when it holds none).
    queue = _Tables(warnings=tables.warnings)
    queue_target = S3Target(s3, run.bucket, f"{prefix}{REVIEW_QUEUE_NAME}", CONTENT_TYPES[FileFormat.XLSX])
    queue.open(
        REVIEW_QUEUE_NAME,
        FileFormat.XLSX,
        queue_target,
        columns,
        xlsx_max_rows=settings.xlsx_max_rows,
        review_categories=task.category_names,
    )
    try:
        _join_run(s3, settings, files, layout, shared, summary, digest, tables, run, task, queue, tally)
    except BaseException:
        tables.abort()
        queue.abort()
        raise

    shards = list(store.shards(run.run_id))
    result = summary.to_dict()
    result.update(_costs(_run_tokens(shards), task.model_id, prices, tables.warnings))
    result["cost"].update(_against_estimate(store.get_run(run.run_id), result["cost_usd"]))
    result.update({"run_id": run.run_id, "task": task.name, "model_id": task.model_id, "source": run.key})
    result["task_version"] = task.version_id
    result.update(digest.to_dict())
    outcome = run_outcome(result["rows"], result["by_status"], settings.error_rows_percent)
    result["headline"] = outcome.headline(result["rows"], result["by_status"])
    if tally is not None:
        result["controls"] = tally.to_dict()
        note = degraded_note(result["controls"])
        if note and outcome is not RunOutcome.FAILED:  # a degraded run still succeeds: its outcome says so
            outcome = RunOutcome.DEGRADED
            result["headline"] = f"{note}; {result['headline']}"
    result["outcome"] = outcome.value
    result["warnings"] = tables.warnings
    tables.add_sheets(result)
    outputs = [t.target.key for t in tables.close() if t.results]  # the ones published, in the settings' order
    queued = _close_queue(queue)
    result["review_queue"] = queue_summary(summary.needs_review, queue_target.key if queued else None)
    if plan.get("invalid"):
        rejects = S3Target(s3, run.bucket, f"{prefix}rejects.csv", CONTENT_TYPES[FileFormat.CSV])
        if _write_rejects(s3, settings, files, rejects, tables.warnings):
            outputs.append(rejects.key)
    result["outputs"] = outputs
    result["timings"] = _timings(run.started_at, shards, began, time.monotonic() - clock)
    report_key = f"{prefix}{REPORT_NAME}"
    if _write_report(s3, run.bucket, report_key, result, tables.warnings):
        result["report"] = report_key
    summary_key = f"{prefix}summary.json"
    put_bytes(
        s3, run.bucket, summary_key, json.dumps(result, indent=2, ensure_ascii=False).encode(), "application/json"
    )
    failed = outcome is RunOutcome.FAILED
    store.finish_run(
        run.run_id,
        RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
        outcome=outcome.value,
        output_prefix=prefix,
        by_status=result["by_status"],
        tokens={"input": result["tokens"]["input"], "output": result["tokens"]["output"]},
        cost_usd=result["cost_usd"],
        accuracy=result.get("evaluation", {}).get("accuracy"),
        **({"control_accuracy": result["controls"]["accuracy"]} if "controls" in result else {}),
        **({"error": NOTHING_CLASSIFIED, "cause": result["headline"]} if failed else {}),
    )
    return {
        "run_id": run.run_id,
        "status": (RunStatus.FAILED if failed else RunStatus.SUCCEEDED).value,
        "outcome": outcome.value,
        "headline": result["headline"],
        "rows": result["rows"],
        "by_status": result["by_status"],
        "outputs": [f"s3://{run.bucket}/{k}" for k in outputs],
        "summary": f"s3://{run.bucket}/{summary_key}",
        "report": f"s3://{run.bucket}/{report_key}" if "report" in result else None,
        "review": f"s3://{run.bucket}/{queue_target.key}" if queued else None,
        "warnings": tables.warnings,
        # The control rows' figures, for the notification (None: the task mixes none in; the state selects the key).
        "controls": _brief(result["controls"]) if "controls" in result else None,
    }


def _brief(controls: dict[str, Any]) -> dict[str, Any]:
    """The control figures the notification carries (``summary.json`` has the wrong answers too)."""
    return {k: controls[k] for k in ("rows", "correct", "accuracy", "min_accuracy", "degraded")}


def _control_tally(
    s3: Any, settings: Settings, files: RunFiles, plan: dict[str, Any], task: Task
) -> ControlTally | None:
    """The tally of the run's control rows (None when it mixed none in)."""
    if not controls_from_plan(plan):
        return None
    with open_object(s3, settings.internal_bucket, files.controls) as lines:
        controls = load_controls(lines)
    minimum = task.controls.min_accuracy if task.controls else None
    return ControlTally(controls, task.category_names, minimum)


def _results_formats(settings: Settings, rows: int, warnings: list[str]) -> list[FileFormat]:
    """The formats to write: XLSX is skipped above its cap (CSV written instead if it was the only one)."""
    formats = list(settings.output_formats)
    cap = settings.xlsx_max_rows
    if FileFormat.XLSX in formats and rows > cap:
        formats.remove(FileFormat.XLSX)
        if not formats:
            formats.append(FileFormat.CSV)
        held = "/".join(f.value for f in formats)
        hold = f"the {held} output holds" if len(formats) == 1 else f"the {held} outputs hold"
        warnings.append(f"xlsx skipped: {rows} rows is above the XLSX cap of {cap} rows; {hold} every row")
    return formats


@dataclass(eq=False)
class _Table:
    label: str
    target: S3Target
    sink: TableSink
    results: bool  # a results table (else the analytics table)
    failed: bool = False


@dataclass
class _Tables:
    """The tables written in the join: one that fails is dropped with a warning and the others go on."""

    tables: list[_Table] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def open(
        self,
        label: str,
        fmt: FileFormat,
        target: S3Target,
        columns: Sequence[str],
        *,
        results: bool = True,
        xlsx_max_rows: int | None = None,
        parquet_schema: pa.Schema | None = None,
        review_categories: Sequence[str] | None = None,
    ) -> None:
        try:
            sink = open_sink(
                fmt,
                target,
                columns,
                xlsx_max_rows=xlsx_max_rows,
                parquet_schema=parquet_schema,
                review_categories=review_categories,
            )
        except Exception as error:  # an output never fails a paid run
            self._warn(label, error)
            return
        self.tables.append(_Table(label, target, sink, results))

    def write(self, tables: list[_Table], row: dict[str, Any]) -> None:
        for table in tables:
            if not table.failed:
                try:
                    table.sink.write(row)
                except Exception as error:
                    self._drop(table, error)

    def add_sheets(self, summary: dict[str, Any]) -> None:
        """The report's figures as sheets after the rows of the results tables (XLSX; other formats have none)."""
        try:
            sheets = workbook_sheets(summary)
        except Exception as error:  # the results keep their rows
            self._warn("summary sheets", error)
            return
        for table in self.tables:
            if table.results and not table.failed:
                try:
                    table.sink.add_sheets(sheets)
                except Exception as error:
                    self._drop(table, error)

    def close(self) -> list[_Table]:
        """Publish every table still standing; the ones that were published."""
        for table in self.tables:
            if not table.failed:
                try:
                    table.sink.close()
                except Exception as error:
                    self._drop(table, error)
        return [t for t in self.tables if not t.failed]

    def abort(self) -> None:
        for table in self.tables:
            if not table.failed:
                table.failed = True
                table.sink.abort()

    def _drop(self, table: _Table, error: Exception) -> None:
        table.failed = True
        table.sink.abort()
        self._warn(table.label, error)

    def _warn(self, label: str, error: Exception) -> None:
        _log.warning("%s output not written", label, exc_info=error)
        self.warnings.append(f"{label} not written: {type(error).__name__}: {error}"[:_WARNING_CHARS])


def _join_run(
    s3: Any,
    settings: Settings,
    files: RunFiles,
    layout: OutputLayout,
    shared: set[int],
    summary: SummaryBuilder,
    digest: RowDigest,
    tables: _Tables,
    run: RunRef,
    task: Task,
    queue: _Tables,
    tally: ControlTally | None = None,
) -> None:
    """One pass over the records and the merged verdicts: each output row goes to every results table (and to the
    review queue when it is flagged), its analytics row to the analytics table, and both to the summary and the
    report's digest. The control rows' verdicts go to ``tally`` alone (no record has them), and their analytics
    rows (``control`` true) after the user's."""
    bucket = settings.internal_bucket
    keys = sorted(k for k in list_keys(s3, bucket, files.results_prefix) if k.endswith(".jsonl"))
    analytics_row = analytics_rows(run, task, datetime.now(UTC).isoformat(timespec="seconds"))
    results = [t for t in tables.tables if t.results]
    analytics = [t for t in tables.tables if not t.results]
    # Every results file is open at once for the merge: each holds a small buffer and no connection while it waits.
    streams = [open_seekable(s3, bucket, key, buffer_size=_VERDICTS_BUFFER) for key in keys]
    try:
        # Ranged reads of the records too: resumed if a connection breaks during a long join.
        with open_seekable(s3, bucket, files.records) as records_stream:
            records = (CanonicalRecord.from_json(line) for line in records_stream)
            verdicts = merge_verdicts(read_verdicts(stream) for stream in streams)
            if tally is not None:
                verdicts = tally.tap(verdicts)
            for record, verdict in join_verdicts(records, verdicts, shared):
                row = output_row(record, verdict, layout)
                summary.add(record, row)
                digest.add(row, record.row)
                tables.write(results, row)
                if queue.tables and flagged(row):
                    queue.write(queue.tables, row)
                if analytics:
                    tables.write(analytics, analytics_row(record, row))
            for _ in verdicts:  # verdicts past the last user row's: control texts the join did not need
                pass
        if tally is not None and analytics:
            for control, verdict in tally.rows():
                row = output_row(control, verdict or judge_missing(), layout)
                tables.write(analytics, analytics_row(control, row))
    finally:
        for stream in streams:
            stream.close()


def _close_queue(queue: _Tables) -> bool:
    """Publish the review queue when it holds a row (dropped otherwise); whether it was published."""
    if any(t.sink.rows for t in queue.tables if not t.failed):
        return bool(queue.close())
    queue.abort()
    return False


def _write_rejects(s3: Any, settings: Settings, files: RunFiles, target: S3Target, warnings: list[str]) -> bool:
    """Stream the rejected rows to ``rejects.csv``; False (and a warning) if it could not be written."""
    tables = _Tables(warnings=warnings)
    tables.open("rejects.csv", FileFormat.CSV, target, REJECTS_COLUMNS)
    try:
        with open_object(s3, settings.internal_bucket, files.rejects) as rejects:
            for line in rejects:
                tables.write(tables.tables, json.loads(line))
    except BaseException:
        tables.abort()
        raise
    return bool(tables.close())


def _write_report(s3: Any, bucket: str, key: str, summary: dict[str, Any], warnings: list[str]) -> bool:
    """Write ``report.html`` (a multipart upload, aborted on failure); False, with a warning, if it could not be."""
    try:
        page = render_report(summary).encode()
        with UploadFile(s3, bucket, key, "text/html; charset=utf-8") as upload:
            upload.write(page)
    except Exception as error:  # a report never fails a paid run
        _log.warning("report not written", exc_info=error)
        warnings.append(f"{REPORT_NAME} not written: {type(error).__name__}: {error}"[:_WARNING_CHARS])
        return False
    return True


def _timings(started_at: str, shards: list[dict[str, Any]], began: datetime, finalize_seconds: float) -> dict[str, Any]:
    """The run's time in consecutive parts, from what the status table recorded: from the upload's registration to
    the first batch job submitted (ConvertInput, ShardRecords, SubmitJob), to the last shard processed (the jobs,
    ProcessShard, retry rounds), to FinalizeRun's start (PlanRetries), and FinalizeRun itself."""
    start = _instant(started_at) or began
    submitted = [t for t in (_instant(s.get("submitted_at")) for s in shards) if t]
    processed = [
        t
        for t in (_instant(s.get("updated_at")) for s in shards if s.get("shard_status") == ShardStatus.PROCESSED.value)
        if t
    ]
    marks: list[tuple[str, datetime]] = []
    if submitted:
        marks.append(("until the first batch job", min(submitted)))
    if processed:
        marks.append(("batch jobs and their results" if submitted else "until the last shard", max(processed)))
    marks.append(("until FinalizeRun", began))
    steps, previous = [], start
    for step, instant in marks:
        steps.append({"step": step, "seconds": round(max((instant - previous).total_seconds(), 0.0), 1)})
        previous = max(previous, instant)
    steps.append({"step": "FinalizeRun", "seconds": round(finalize_seconds, 1)})
    finished = began + timedelta(seconds=finalize_seconds)
    return {
        "started_at": start.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "total_seconds": round(max((finished - start).total_seconds(), 0.0), 1),
        "steps": steps,
    }


def _instant(value: Any) -> datetime | None:
    try:
        instant = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _costs(
    tokens: dict[str, dict[str, int]], model_id: str, prices: PriceTable | None, warnings: list[str]
) -> dict[str, Any]:
    """Tokens and their cost (and what the same tokens cost on demand); a model without a price costs ``None``
    (with a warning), it never fails the run."""
    table = prices or PriceTable.load()
    try:
        costs = cost_summary(tokens, model_id, table)
    except PriceNotFoundError:
        warnings.append(f"no price for model {model_id} in prices.yaml; cost unknown")
        unpriced = cost_summary(tokens, model_id, _NoPrices())
        unpriced.update({"cost_usd": None, "cost": {"batch_usd": None, "on_demand_usd": None}})
        return unpriced
    costs["cost"].update(batch_savings(costs["tokens"], costs["cost_usd"], model_id, table))
    return costs


def _against_estimate(item: dict[str, Any] | None, billed_usd: float | None) -> dict[str, Any]:
    """The pre-flight estimate ShardRecords stored on the run, and what was billed as a share of it."""
    estimate = (item or {}).get("preflight") or {}
    if not estimate:
        return {}
    usd = float(estimate["estimated_usd"])
    cap = estimate.get("cap_usd")
    found: dict[str, Any] = {"estimated_usd": round(usd, 6), "cap_usd": None if cap is None else float(cap)}
    if billed_usd is not None and usd > 0:
        found["billed_to_estimate"] = round(billed_usd / usd, 3)
    return found


class _NoPrices(PriceTable):
    """Prices every model at zero: the token totals of :func:`cost_summary` without a price."""

    def __init__(self) -> None:
        super().__init__({})

    def cost(self, model_id: str, input_tokens: int, output_tokens: int, mode: str) -> float:
        return 0.0


def _run_tokens(shards: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    tokens = {kind.value: {"input": 0, "output": 0} for kind in ShardKind}
    for item in shards:
        kind = tokens[str(item.get("kind", ShardKind.BATCH.value))]
        kind["input"] += int(item.get("input_tokens", 0))
        kind["output"] += int(item.get("output_tokens", 0))
    return tokens
