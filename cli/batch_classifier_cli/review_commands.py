"""The end of the review queue: ``merge-reviews`` puts a marked review workbook (``review.xlsx``, or any review
workbook) back into a run's results as a labelled file, and ``export-training`` draws a class-balanced training set
from the confident and reviewed rows (the rules are in ``batch_classifier.training``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batch_classifier.errors import BatchClassifierError, TaskError
from batch_classifier.readers import open_table
from batch_classifier.tasks import Task, load_task
from batch_classifier.training import (
    ReviewMerger,
    TrainingSampler,
    read_reviews,
    training_columns,
)
from batch_classifier.writers import LocalTarget, open_sink, output_format_from_name, write_table

from .workbooks import row_sheets


def _columns(path: Path) -> list[str]:
    for sheet in row_sheets(path):
        with open_table(path, sheet=sheet) as table:
            return list(table.columns)
    return []


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """Every row of a results file (each results sheet of a workbook), as a dict."""
    for sheet in row_sheets(path):
        with open_table(path, sheet=sheet) as table:
            for row in table.rows():
                yield dict(row.values)


def _task(results: Path, given: str | None) -> Task:
    """The task named on the command line, else the one the summary beside the results names (a bundled task)."""
    if given:
        return load_task(given)
    summary = results.parent / "summary.json"
    name = None
    if summary.is_file():
        try:
            name = json.loads(summary.read_text(encoding="utf-8")).get("task")
        except (ValueError, AttributeError):
            name = None
    if name:
        try:
            return load_task(str(name))
        except TaskError:
            pass
    raise BatchClassifierError(
        f"which task do the labels of {results.name} belong to? Give it with --task (a bundled name or a task file)."
    )


def _check_out(out: Path, *sources: Path) -> None:
    output_format_from_name(out.name)  # an unknown extension is refused before anything is read
    if any(out.resolve() == source.resolve() for source in sources):
        raise BatchClassifierError(f"write to a new file, not over {out.name}: give another --out.")


def cmd_merge_reviews(args: argparse.Namespace) -> int:
    results, reviewed, out = Path(args.results), Path(args.reviewed), Path(args.out)
    _check_out(out, results, reviewed)
    task = _task(results, args.task)
    reviews = read_reviews(_rows(reviewed), task.category_names)
    merger = ReviewMerger(reviews, args.prediction_column)
    fmt = output_format_from_name(out.name)
    sink = open_sink(fmt, LocalTarget(out), merger.columns(_columns(results)))
    try:
        for row in _rows(results):
            sink.write(merger.merge(row))
        merger.check_all_found()
    except BaseException:
        sink.abort()
        raise
    sink.close()
    counts = merger.counts
    print(f"wrote {counts.rows:,} rows to {out} ({len(reviews):,} reviewed rows from {reviewed.name})")
    print(f"  labelled by the model        {counts.model:>8,}")
    print(f"  labelled by a reviewer       {counts.reviewed_label:>8,}   (review_label)")
    print(f"  confirmed by a reviewer      {counts.reviewed_correct:>8,}   (verdict correct: the prediction kept)")
    print(f"  unlabelled, needs review     {counts.still_flagged:>8,}")
    print(f"  unlabelled, not classified   {counts.not_classified:>8,}")
    print(f"then: batch-classifier export-training {out.name} --per-class 50 --out training.csv")
    return 0


def cmd_export_training(args: argparse.Namespace) -> int:
    source, out = Path(args.results), Path(args.out)
    _check_out(out, source)
    classes: list[str] = []
    if args.task:
        classes = load_task(args.task).category_names
    sampler = TrainingSampler(
        args.per_class, min_confidence=args.min_confidence, seed=args.seed, prediction_column=args.prediction_column
    )
    for row in _rows(source):
        sampler.offer(row)
    rows, counts = sampler.draw(classes)
    written = write_table(out, training_columns(_columns(source)), rows)
    confidence = f", confidence at least {args.min_confidence}" if args.min_confidence is not None else ""
    print(
        f"wrote {written:,} rows to {out}: up to {args.per_class:,} a class from {sampler.rows:,} rows "
        f"(reviewed rows first, then the model's not flagged for review{confidence}; seed {args.seed})"
    )
    width = max((len(c.name) for c in counts), default=5)
    print(f"  {'class':<{width}}  {'rows':>6}  {'reviewed':>8}  {'model':>6}  {'eligible':>8}")
    for draw in counts:
        print(f"  {draw.name:<{width}}  {draw.chosen:>6,}  {draw.reviewed:>8,}  {draw.model:>6,}  {draw.eligible:>8,}")
    short = [f"{c.name} ({c.chosen})" for c in counts if c.chosen < args.per_class]
    if short:
        print(f"fewer than {args.per_class:,}: {', '.join(short)}")
    return 0


def add_commands(commands: Any) -> None:
    cmd = commands.add_parser(
        "merge-reviews",
        help="put a marked review workbook back into the results: a labelled file (label, label_source)",
        description="Apply the reviewer's marks of REVIEWED (review.xlsx or any review workbook) to the rows of "
        "RESULTS with the same id: a review_label is the row's label; verdict correct keeps the prediction; wrong "
        "or unsure without a label leave the row unlabelled and flagged needs_review. Rows nobody reviewed keep the "
        "prediction when they were classified and not flagged. label_source says model or reviewed. Reviews of ids "
        "not in RESULTS and labels that are not the task's categories are errors.",
    )
    cmd.add_argument("results", help="the run's results file (.csv .xlsx .json .jsonl .parquet)")
    cmd.add_argument("reviewed", metavar="REVIEWED.xlsx", help="the marked review workbook")
    cmd.add_argument("--out", required=True, help="the labelled file to write (format by extension)")
    cmd.add_argument("--task", help="the task the labels belong to (default: the one summary.json names)")
    cmd.add_argument("--prediction-column", default="class", help="the predicted column (default: class)")
    cmd.set_defaults(run=cmd_merge_reviews)

    cmd = commands.add_parser(
        "export-training",
        help="a class-balanced training set from the confident and reviewed rows",
        description="Draw up to N rows a class (seeded) from a merged file (merge-reviews: reviewed rows, and the "
        "model's labels) or a results file (classified rows not flagged needs_review), reviewed rows first, and "
        "write them in file order with label and label_source. Prints each class's count and the classes with "
        "fewer than N.",
    )
    cmd.add_argument("results", metavar="RESULTS_OR_MERGED", help="a merged file, or a results file")
    cmd.add_argument("--per-class", type=int, required=True, metavar="N", help="rows a class, at most")
    cmd.add_argument(
        "--min-confidence", type=float, metavar="X", help="the model's labels need a confidence of at least X (0-1)"
    )
    cmd.add_argument("--seed", type=int, default=1, help="the random seed (default: 1); the same seed, the same rows")
    cmd.add_argument("--task", help="list every class of this task, also those with no row")
    cmd.add_argument("--prediction-column", default="class", help="the predicted column (default: class)")
    cmd.add_argument("--out", required=True, help="the training set to write (format by extension)")
    cmd.set_defaults(run=cmd_export_training)
