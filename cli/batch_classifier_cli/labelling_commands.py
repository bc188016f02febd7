"""The labelling loop's commands: ``sample`` draws the rows a subject-matter expert reviews, ``compare`` classifies
a labelled sample with each prompt variant and shows what changed, ``review`` turns the results of classifying them
into a workbook the expert marks (scored by ``evaluate --label-column review_label``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from batch_classifier.compare import (
    COMPARE_HTML,
    COMPARE_XLSX,
    MAX_COMPARE_ROWS,
    compare_variants,
    format_comparison,
    render_comparison,
    variant_names,
    write_comparison_xlsx,
)
from batch_classifier.errors import BatchClassifierError
from batch_classifier.evaluation import REVIEW_COLUMNS
from batch_classifier.formats import FileFormat, format_from_name
from batch_classifier.readers import open_table
from batch_classifier.sampling import draw_sample
from batch_classifier.tasks import load_task
from batch_classifier.writers import LocalTarget, open_sink, output_format_from_name, write_table

from .reading_options import add_reading_options, reading_options
from .workbooks import row_sheets


def cmd_sample(args: argparse.Namespace) -> int:
    source = Path(args.input)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-sample-{args.n}{source.suffix}")
    format_from_name(out.name)  # an unknown extension is refused before the file is read
    options = {
        k: v
        for k, v in (
            ("encoding", args.encoding),
            ("delimiter", args.delimiter),
            ("sheet", args.sheet),
            ("records_key", args.records_key),
        )
        if v is not None
    }
    drawn = draw_sample(source, args.n, seed=args.seed, stratify=args.stratify, **options)
    written = write_table(out, drawn.columns, (row.values for row in drawn.rows))
    whole = " (the whole file)" if written == drawn.total else ""
    print(
        f"wrote {written:,} of {drawn.total:,} rows{whole} to {out} "
        f"(seed {args.seed}: the same seed draws the same rows)"
    )
    if drawn.strata:
        width = max(len(value) for value in drawn.strata)
        print(f"stratified by {args.stratify!r}:")
        for value, (rows, kept) in drawn.strata.items():
            print(f"  {value:<{width}}  {kept:>5,} of {rows:,}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    source = Path(args.results)
    out = Path(args.out) if args.out else source.with_name(f"{source.stem}-review.xlsx")
    if output_format_from_name(out.name) is not FileFormat.XLSX:
        raise BatchClassifierError(f"a review workbook is an .xlsx file (its drop-downs need one), not {out.name}.")
    if out.resolve() == source.resolve():
        raise BatchClassifierError(f"write the review workbook to a new file, not over {source.name}: give --out.")
    categories = load_task(args.task).category_names
    sink = None
    try:
        for sheet in row_sheets(source):
            with open_table(source, sheet=sheet) as table:
                if sink is None:
                    if args.prediction_column not in table.columns:
                        raise BatchClassifierError(
                            f"{source.name} has no column {args.prediction_column!r} (the prediction a reviewer "
                            f"checks); its columns are: {', '.join(table.columns)}. Give it with --prediction-column."
                        )
                    sink = open_sink(FileFormat.XLSX, LocalTarget(out), table.columns, review_categories=categories)
                for row in table.rows():
                    sink.write(row.values)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    assert sink is not None  # open_table refuses a file without columns
    written = sink.close()
    print(f"wrote {written:,} rows to {out} with the reviewer's columns {', '.join(REVIEW_COLUMNS)}")
    print(f"then: batch-classifier evaluate {out.name} --label-column review_label --task {args.task}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from batch_classifier_local.answer import answer_prepared  # noqa: PLC0415 - the local runtime, this command only
    from batch_classifier_local.models import model_from_spec  # noqa: PLC0415

    try:
        model = model_from_spec(args.model)
    except ValueError as exc:
        raise BatchClassifierError(str(exc)) from None
    files = list(args.task or [])
    variants = [(name, file, load_task(file)) for name, file in zip(variant_names(files), files, strict=True)]
    out = Path(args.out)
    options = reading_options(args)
    comparison = compare_variants(
        Path(args.sample),
        variants,
        out,
        lambda prepared, outputs: answer_prepared(prepared, outputs, model),
        label_column=args.label_column,
        options=options,
    )
    (out / COMPARE_HTML).write_text(render_comparison(comparison), encoding="utf-8")
    write_comparison_xlsx(comparison, out / COMPARE_XLSX)
    print(format_comparison(comparison), end="")
    print(f"wrote {out / COMPARE_HTML} and {out / COMPARE_XLSX} (each variant's results: {out}/<variant>/results.csv)")
    return 0


def add_commands(commands: Any) -> None:
    cmd = commands.add_parser(
        "sample",
        help="a reproducible random (or stratified) sample of a file, in its format, for review",
        description="Draw N rows of FILE at random (reservoir sampling, one pass), or in proportion to the values "
        "of a column (--stratify, every value at least once when N allows), and write them in file order.",
    )
    cmd.add_argument("input", help="the file to sample: .csv .tsv .xlsx .json .jsonl .ndjson .parquet")
    cmd.add_argument("--n", type=int, default=150, help="rows to draw (default: 150)")
    cmd.add_argument("--stratify", metavar="COLUMN", help="draw in proportion to this column's values")
    cmd.add_argument("--seed", type=int, default=1, help="the random seed (default: 1); the same seed, the same rows")
    cmd.add_argument("--out", help="where to write the sample (default: <file>-sample-<n>.<ext> beside it)")
    add_reading_options(cmd)
    cmd.set_defaults(run=cmd_sample)

    cmd = commands.add_parser(
        "compare",
        help="classify a labelled sample with each prompt variant and compare them side by side",
        description="Classify the same labelled rows with each task file (the first is the baseline) through "
        "prepare, the model the local runtime uses, and collect; print and write DIR/compare.html and "
        "DIR/compare.xlsx: accuracy, macro-F1, coverage, off-list and unparseable counts, tokens and cost per "
        "variant, per-class F1 with deltas against the baseline, and the rows each variant fixed and broke with "
        f"both rationales. For review samples: at most {MAX_COMPARE_ROWS:,} rows.",
    )
    cmd.add_argument("sample", help="a labelled sample: .csv .tsv .xlsx .json .jsonl .ndjson .parquet")
    cmd.add_argument(
        "--task",
        action="append",
        required=True,
        metavar="TASK",
        help="a task variant (give two or more; first: baseline)",
    )
    cmd.add_argument("--label-column", help="the ground-truth column (default: the tasks' own, or one named like it)")
    cmd.add_argument("--out", required=True, metavar="DIR", help="where each variant's run and the comparison go")
    cmd.add_argument("--model", help="offline (default) or openai:<base url>#<model> for an OpenAI-compatible server")
    add_reading_options(cmd)
    cmd.set_defaults(run=cmd_compare)

    cmd = commands.add_parser(
        "review",
        help="a review workbook from a results file: drop-downs for the right label and a verdict per row",
        description="Copy the rows of a results file (CSV, XLSX, JSON, JSONL or Parquet, as collect or run "
        "wrote it) into an XLSX workbook with the reviewer's columns right after the prediction and its rationale: "
        "review_label (a drop-down of the task's categories), verdict (correct / wrong / unsure) and review_note. "
        "Score the marked workbook with: batch-classifier evaluate REVIEWED.xlsx --label-column review_label.",
    )
    cmd.add_argument("results", help="a results file with the prediction (class) and rationale columns")
    cmd.add_argument("--task", default="travel", help="the task whose categories the drop-down lists (default: travel)")
    cmd.add_argument("--out", help="the workbook to write (default: <results>-review.xlsx beside it)")
    cmd.add_argument("--prediction-column", default="class", help="the predicted column (default: class)")
    cmd.set_defaults(run=cmd_review)
