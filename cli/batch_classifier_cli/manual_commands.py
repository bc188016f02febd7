"""The commands that work on files, without the local runtime: ``prepare``, ``collect``, ``report``, ``evaluate``,
``estimate`` and ``tasks`` (their arguments are wired in main.py)."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from batch_classifier.controls import local_controls
from batch_classifier.cost import PriceTable
from batch_classifier.errors import BatchClassifierError
from batch_classifier.evaluation import (
    REVIEW_LABEL_COLUMN,
    UNKNOWN_TRUTH,
    VERDICT_COLUMN,
    TruthSource,
    evaluate,
    format_report,
    reviewed_truth,
)
from batch_classifier.formats import FileFormat
from batch_classifier.mapping import Converter, ConvertStats, RecordMapper
from batch_classifier.outputs import MANIFEST_NAME
from batch_classifier.pipeline import (
    ESTIMATED_OUTPUT_TOKENS,
    JOBS_DIR,
    ON_DEMAND_DIR,
    PLAN,
    RECORDS,
    REJECTS,
    SHARED,
    SUMMARY,
    TASK,
    TEXTS,
    PreparedRun,
    collect,
    cost_estimates,
    expected_rows,
    prepare,
)
from batch_classifier.readers import open_table
from batch_classifier.records import RowStatus
from batch_classifier.report import REPORT_NAME, RowDigest, batch_savings, render_report, workbook_sheets
from batch_classifier.review_queue import REVIEW_QUEUE_NAME, ReviewQueue, queue_summary
from batch_classifier.tasks import Task, bundled_task_names, load_task
from batch_classifier.writer_base import TableSink
from batch_classifier.writers import LocalTarget, open_sink, output_format_from_name

from .progress import ProgressLine
from .reading_options import reading_options
from .workbooks import row_sheets

#: What ``prepare`` writes in its folder: a folder holding only these is one it may replace.
PREPARED_ENTRIES = frozenset({JOBS_DIR, ON_DEMAND_DIR, RECORDS, TEXTS, REJECTS, PLAN, TASK, SHARED})

# --- commands --------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> int:
    task = _task(args)
    target = Path(args.out).resolve()
    _check_prepare_target(target, args.out)
    progress = ProgressLine()
    with _staged_folder(target) as staging:
        run = prepare(Path(args.input), staging, task, options=reading_options(args), progress=progress)
    progress.done()
    plan = run.plan
    print(f"Prepared {args.input} with task {task.name!r} ({task.model_id}) in {args.out}")
    print(f"  rows            {plan['rows']:>10,}")
    print(f"  invalid rows    {plan['invalid']:>10,}" + ("   (see rejects.jsonl)" if plan["invalid"] else ""))
    print(f"  distinct texts  {plan['distinct_texts']:>10,}   ({plan['duplicate_texts']:,} duplicates sent once)")
    if plan["truncated"]:
        print(f"  truncated texts {plan['truncated']:>10,}   (longer than {task.input.max_text_chars:,} characters)")
    if plan["duplicate_ids"]:
        examples = ", ".join(plan["duplicate_id_examples"])
        print(f"  duplicate ids   {plan['duplicate_ids']:>10,}   (for example {examples})")
    print(f"  texts a request {task.texts_per_request:>10,}   (a record is a model request of up to this many texts)")
    print(f"  batch jobs      {plan['batch_jobs']:>10,}")
    for shard in plan["shards"]:
        where = "jobs" if shard["kind"] == "batch" else "on-demand"
        texts = shard.get("texts", shard["records"])
        print(
            f"    {where}/{shard['name']}.jsonl  {shard['records']:>8,} records  {texts:>8,} texts  "
            f"{shard['bytes'] / 1e6:>9.1f} MB"
        )
    if plan["on_demand_records"]:
        print(
            f"  on-demand       {plan['on_demand_records']:>10,}   "
            f"(fewer than {task.batch.min_records_per_job} records for a batch job)"
        )
    print("  estimated")
    _print_estimates(plan["estimates"], indent="    ")
    return 0


def _print_estimates(estimates: list[dict[str, Any]], indent: str = "  ") -> None:
    """Requests, tokens and cost at the task's texts a request (first column) beside another (second column)."""
    chosen, other = estimates
    compared = "one a request" if other["texts_per_request"] == 1 else "suggested"
    rows = [
        (
            "texts a request",
            f"{chosen['texts_per_request']} (task)",
            f"{other['texts_per_request']} ({compared})",
            "(texts_per_request in the task)",
        ),
        ("model requests", f"{chosen['requests']:,}", f"{other['requests']:,}", ""),
        ("input tokens", f"{chosen['input_tokens']:,}", f"{other['input_tokens']:,}", "(about 4 characters a token)"),
        (
            "output tokens",
            f"{chosen['output_tokens']:,}",
            f"{other['output_tokens']:,}",
            f"({ESTIMATED_OUTPUT_TOKENS} a text)",
        ),
        (
            "batch",
            f"${chosen['batch_usd']:,.4f}",
            f"${other['batch_usd']:,.4f}",
            f"(task: ${chosen['per_1000_batch_usd']:,.4f} per 1,000 records)",
        ),
        (
            "on-demand",
            f"${chosen['on_demand_usd']:,.4f}",
            f"${other['on_demand_usd']:,.4f}",
            f"(task: ${chosen['per_1000_on_demand_usd']:,.4f} per 1,000 records)",
        ),
    ]
    for name, first, second, note in rows:
        print(f"{indent}{name:<16}{first:>12} {second:>19}   {note}".rstrip())


def _check_prepare_target(target: Path, given: str) -> None:
    """``prepare`` replaces its folder as a whole: refuse a file, or a folder holding anything it did not write."""
    if target.exists() and not target.is_dir():
        raise BatchClassifierError(f"--out {given} is a file: prepare writes a folder.")
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if p.name not in PREPARED_ENTRIES)
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise BatchClassifierError(
                f"--out {given} holds files prepare did not write ({shown}), and prepare replaces the folder as a "
                "whole: give a new or empty folder, or one written by prepare."
            )


@contextmanager
def _staged_folder(target: Path) -> Iterator[Path]:
    """A new folder beside ``target`` to write into, moved into its place when the block succeeds; when it fails,
    the new folder is removed and ``target`` is left as it was."""
    missing = next((p for p in reversed(target.parents) if not p.exists()), None)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    try:
        yield staging
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if missing is not None:  # remove the parent folders made for it, if they are still empty
            with suppress(OSError):
                folder = target.parent
                while folder != missing.parent:
                    folder.rmdir()
                    folder = folder.parent
        raise


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target`` (same folder, so each rename is atomic). An existing ``target`` is first
    renamed aside, and restored if the second rename fails; only then is the old folder deleted."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        staging.replace(target)  # an empty folder is replaced in one rename
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _collect(args: argparse.Namespace) -> int:
    outputs = Path(args.outputs)
    prepared = PreparedRun.load(Path(args.folder))  # "not a prepared folder" comes first
    if outputs.is_dir() and not any(p.name != MANIFEST_NAME for p in outputs.rglob("*.out")):
        raise BatchClassifierError(
            f"found no batch output files (*.out) in {args.outputs} or its subfolders: download each job's output "
            "folder (<outputUri>/<job id>/) into it, then collect again."
        )
    out = Path(args.out)
    fmt = output_format_from_name(out.name)
    if args.review and fmt is not FileFormat.XLSX:
        raise BatchClassifierError(
            f"--review adds drop-down columns for a reviewer, which only a workbook holds: write {out.stem}.xlsx, "
            "or turn any results file into a review workbook with batch-classifier review."
        )
    if out.name == REVIEW_QUEUE_NAME:
        raise BatchClassifierError(
            f"{REVIEW_QUEUE_NAME} beside the results is the review queue collect writes (the rows that need review): "
            "give the results file another name."
        )
    # Rows are counted as they are written, so that stage knows its total (the prepared run's rows) and shows a
    # percentage; output lines are counted against no total (a file's lines are known only once it is read).
    rows = int(prepared.plan.get("rows", 0))
    progress = ProgressLine(totals={"writing results": rows})
    writer = _ResultsWriter(out, fmt, prepared, review=args.review)
    try:
        summary = collect(Path(args.folder), outputs, out, progress=progress, write_rows=writer)
        writer.finish(summary)
    except BaseException:
        if writer.abort():
            (out.parent / SUMMARY).unlink(missing_ok=True)  # it describes rows that were not written
        raise
    progress.done()
    report = out.parent / REPORT_NAME
    summary["report"] = report.name
    (out.parent / SUMMARY).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report.write_text(render_report(summary), encoding="utf-8")
    print(f"Wrote {args.out}, {out.parent / SUMMARY} and {report}")
    _print_summary(summary)
    return 0


class _ResultsWriter:
    """Writes collect's rows to ``out`` in its format as they are joined, counting them for the report; the rows
    flagged ``needs_review`` also go to ``review.xlsx`` beside ``out`` (none, and an earlier one removed, when no row
    is). ``review``: with the reviewer's columns and drop-downs of the task's categories (XLSX). :meth:`finish`
    completes the summary and, for an XLSX, adds its figures as sheets of their own."""

    def __init__(self, out: Path, fmt: FileFormat, run: PreparedRun, *, review: bool) -> None:
        self.out, self.fmt, self.run, self.review = out, fmt, run, review
        self.queue_path = out.parent / REVIEW_QUEUE_NAME
        self.digest = RowDigest()
        self.sink: TableSink | None = None
        self.queue: ReviewQueue | None = None

    def __call__(self, columns: list[str], rows: Iterator[dict[str, Any]]) -> None:
        categories = self.run.task.category_names
        self.sink = open_sink(
            self.fmt, LocalTarget(self.out), columns, review_categories=categories if self.review else None
        )
        self.queue = ReviewQueue(LocalTarget(self.queue_path), columns, categories)
        sink, queue, add = self.sink, self.queue, self.digest.add
        for number, row in enumerate(rows, start=1):
            add(row, number)
            sink.write(row)
            queue.add(row)

    def finish(self, summary: dict[str, Any]) -> None:
        assert self.sink is not None and self.queue is not None  # collect hands its rows over before it returns
        summary["cost"].update(
            batch_savings(summary["tokens"], summary["cost_usd"], self.run.task.model_id, PriceTable.load())
        )
        summary.update(self.digest.to_dict())
        self.sink.add_sheets(workbook_sheets(summary))
        self.sink.close()
        self.sink = None
        queued = self.queue.close()
        self.queue = None
        if not queued:
            self.queue_path.unlink(missing_ok=True)  # an earlier collect's queue: these results have none
        summary["review_queue"] = queue_summary(queued, self.queue_path.name if queued else None)

    def abort(self) -> bool:
        """Remove what was being written; whether anything was."""
        started = self.sink is not None
        if self.sink is not None:
            self.sink.abort()
        if self.queue is not None:
            self.queue.abort()
        self.sink = self.queue = None
        return started


def _report(args: argparse.Namespace) -> int:
    given = Path(args.target)
    path = given / SUMMARY if given.is_dir() else given
    if not path.is_file():
        raise BatchClassifierError(
            f"{args.target} holds no {SUMMARY}: give a run's output folder (where collect or FinalizeRun wrote "
            f"{SUMMARY}) or the {SUMMARY} itself."
        )
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BatchClassifierError(f"{path} is not a summary ({exc}).") from None
    if not isinstance(summary, dict) or "by_status" not in summary:
        raise BatchClassifierError(f"{path} is not the summary of a run (it has no by_status).")
    if "off_list_answers" not in summary:  # a summary written before it held the report's aggregates
        results = _results_file(path.parent, summary)
        if results is None:
            print("note: no results file beside the summary: the report leaves out off-list answers and rejects")
        else:
            digest, number = RowDigest(), 0
            for sheet in row_sheets(results):
                with open_table(results, sheet=sheet) as table:
                    for row in table.rows():
                        number += 1
                        digest.add(row.values, number)
            summary.update(digest.to_dict())
            print(f"note: off-list answers and rejects counted from {results.name}")
    out = Path(args.out) if args.out else path.parent / REPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(render_report(summary), encoding="utf-8")
    partial.replace(out)
    print(f"Wrote {out}")
    return 0


#: The results files a run folder may hold, in the order the report reads them (the quickest to read first).
_RESULTS_ORDER = (".jsonl", ".csv", ".parquet", ".json", ".xlsx")


def _results_file(folder: Path, summary: dict[str, Any]) -> Path | None:
    """The results file beside a summary: collect's ``results_file``, or one of FinalizeRun's ``outputs``."""
    names = [str(summary.get("results_file") or "")]
    names += [str(key).rsplit("/", 1)[-1] for key in summary.get("outputs") or []]
    found = [folder / n for n in names if n and n != "rejects.csv" and (folder / n).is_file()]
    found.sort(key=lambda p: _RESULTS_ORDER.index(p.suffix) if p.suffix in _RESULTS_ORDER else len(_RESULTS_ORDER))
    return found[0] if found else None


def _print_summary(summary: dict[str, Any]) -> None:
    if summary.get("outcome"):
        print(f"  outcome   {summary['outcome']}: {summary.get('headline', '')}")
    print(f"  rows      {summary['rows']:,}")
    statuses = ", ".join(f"{name} {count:,}" for name, count in summary["by_status"].items() if count)
    print(f"  status    {statuses}")
    tokens = summary["tokens"]
    cost = "unknown" if summary.get("cost_usd") is None else f"${summary['cost_usd']:,.4f}"
    print(f"  tokens    {tokens['input']:,} in, {tokens['output']:,} out   cost {cost}")
    for warning in summary.get("warnings") or []:
        print(f"  warning   {warning}")
    if summary.get("unreadable_line_count"):
        print(f"  warning   {summary['unreadable_line_count']:,} output lines could not be read (see summary.json)")
    queue = summary.get("review_queue")
    if isinstance(queue, dict):
        where = f": {str(queue['file']).rsplit('/', 1)[-1]}" if queue.get("file") else f" ({queue.get('note', '')})"
        print(f"  review    {int(queue.get('rows', 0)):,} rows need review{where}")
    controls = summary.get("controls")
    if isinstance(controls, dict) and controls.get("rows"):  # the task's control rows, in none of the figures above
        minimum = controls.get("min_accuracy")
        floor = f", minimum {minimum:.0%}" if minimum is not None else ""
        state = ": degraded" if controls.get("degraded") else ""
        print(
            f"  controls  {controls['correct']:,} of {controls['rows']:,} control rows right "
            f"({controls['accuracy']:.1%}{floor}){state}"
        )
    print("  classes")
    width = max((len(c) for c in summary["by_class"]), default=0)
    for name, count in summary["by_class"].items():
        print(f"    {name:<{width}}  {count:>8,}")
    evaluation = summary.get("evaluation")
    if evaluation:
        print(
            f"  accuracy  {evaluation['accuracy']:.1%} of labelled rows, "
            f"{evaluation['accuracy_answered']:.1%} of answered rows (coverage {evaluation['coverage']:.1%})"
        )


def _evaluate(args: argparse.Namespace) -> int:
    sources: Counter[str] = Counter()
    truth_column, pairs, classes = _read_pairs(Path(args.results), args.label_column, args.prediction_column, sources)
    categories = load_task(args.task).category_names if args.task else classes
    result = evaluate(pairs, categories)
    review = _review_counts(sources) if sources else None
    if args.json:
        figures = result.to_dict()
        if review:
            figures["review"] = review
        print(json.dumps(figures, indent=2, ensure_ascii=False))
    else:
        print(f"Ground truth: column {truth_column!r}; prediction: column {args.prediction_column!r}")
        if review:
            print(
                f"Reviewed rows: {review['from_labels']:,} scored from {REVIEW_LABEL_COLUMN}, "
                f"{review['from_verdicts']:,} from {VERDICT_COLUMN} alone ({review['wrong_without_label']:,} of "
                f"them wrong with no label: in accuracy, not in any class's recall), {review['left_out']:,} left "
                "out (unsure or not reviewed)"
            )
        print(format_report(result))
    return 0


def _review_counts(sources: Counter[str]) -> dict[str, int]:
    return {
        "from_labels": sources[TruthSource.LABEL],
        "from_verdicts": sources[TruthSource.VERDICT],
        "wrong_without_label": sources[_WRONG_WITHOUT_LABEL],
        "left_out": sources[TruthSource.NONE],
    }


_WRONG_WITHOUT_LABEL = "wrong without label"  # counted beside the truth sources, for the printed line


def _read_pairs(
    path: Path, label_column: str, prediction_column: str, sources: Counter[str] | None = None
) -> tuple[str, list[tuple[str | None, str | None]], list[str]]:
    """(truth, prediction) per row; a row whose status is not ``classified`` has no prediction.

    A review workbook scored on its ``review_label`` column takes a row's truth from its reviewer
    (:func:`~batch_classifier.evaluation.reviewed_truth`: the label, else the verdict); ``sources`` then counts
    where each row's truth came from."""
    pairs: list[tuple[str | None, str | None]] = []
    seen: dict[str, None] = {}
    truth = label_column
    for sheet in row_sheets(path):
        with open_table(path, sheet=sheet) as table:
            columns = table.columns
            # The results file renames an input column that clashes with a result column (class → input_class).
            truth = f"input_{label_column}" if f"input_{label_column}" in columns else label_column
            for needed in (truth, prediction_column):
                if needed not in columns:
                    raise BatchClassifierError(
                        f"{path.name} has no column {needed!r}; its columns are: {', '.join(columns)}."
                    )
            if truth == prediction_column:
                raise BatchClassifierError(
                    f"the ground truth and the prediction are the same column {truth!r} of {path.name}, which "
                    "would score it against itself: give the ground-truth column with --label-column."
                )
            has_status = "status" in columns
            reviewed = truth == REVIEW_LABEL_COLUMN and VERDICT_COLUMN in columns
            for row in table.rows():
                predicted = _cell(row.values.get(prediction_column))
                if has_status and row.values.get("status") != RowStatus.CLASSIFIED.value:
                    predicted = None
                label = _cell(row.values.get(truth))
                if reviewed:
                    label, source = reviewed_truth(label, predicted, _cell(row.values.get(VERDICT_COLUMN)))
                    if sources is not None:
                        sources[source] += 1
                        sources[_WRONG_WITHOUT_LABEL] += label == UNKNOWN_TRUTH
                pairs.append((label, predicted))
                if label and label != UNKNOWN_TRUTH:
                    seen[label] = None
    return truth, pairs, sorted(seen)


def _cell(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _estimate(args: argparse.Namespace) -> int:
    task = _task(args)
    options = reading_options(args)
    progress = ProgressLine()
    stats = ConvertStats()
    with options.open(args.input) as table:
        converter = Converter(RecordMapper(task.input, table.columns, source=repr(table.name)), stats)
        for block in table.blocks():
            converter.block(block)  # counted: its lines are not needed
            progress("reading rows", stats.rows, expected_rows(table, stats.rows))
        converter.finish()
    progress.done()
    # The task's control rows go into every run's requests too (drawn as prepare draws them).
    controls = local_controls(task, Path(args.input).name)
    texts = stats.distinct_texts + len(controls)
    chars = stats.text_chars + sum(len(control.text) for control in controls)
    estimates = cost_estimates(task, stats.rows, texts, chars, PriceTable.load())
    print(f"Estimate for {args.input} with task {task.name!r} ({task.model_id})")
    print(f"  records           {stats.rows:>12,}   ({stats.invalid:,} invalid)")
    print(f"  distinct texts    {stats.distinct_texts:>12,}")
    if controls:
        print(f"  control rows      {len(controls):>12,}   (mixed into the run; in the figures below)")
    _print_estimates([e.to_dict() for e in estimates])
    return 0


def _tasks(args: argparse.Namespace) -> int:
    if args.action == "show":
        if not args.name:
            raise BatchClassifierError("say which task to show: batch-classifier tasks show NAME.")
        print(load_task(args.name).to_yaml(), end="")
        return 0
    for name in bundled_task_names():
        task = load_task(name)
        print(f"{name:<22} {len(task.categories):>2} categories  {task.model_id}")
        print(f"{'':<22} {task.description}")
    return 0


def _task(args: argparse.Namespace) -> Task:
    task = load_task(args.task)
    mapping = task.input.with_overrides(
        text_columns=tuple(args.text_column) if args.text_column else None,
        id_column=args.id_column,
        label_column=args.label_column,
    )
    return task.model_copy(update={"input": mapping})
