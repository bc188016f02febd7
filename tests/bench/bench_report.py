"""Benchmark: the run report (``report.html``) and the XLSX summary sheets at 77 classes.

It makes the summary of a labelled run of 100,000 rows over 77 classes (class sizes falling off like real
traffic, about 85% right, each class confused with a few others, some rows without an answer), with the
report's aggregates at their bounds (50 off-list answers, 20 reasons and 20 example rows per status) and the
timings of each step, then prints the page's size and the time to make it (the median of repeated runs), for
this confusion matrix and for the worst one (every cell filled). It also times the ``summary`` and
``confusion`` sheets added to an XLSX workbook. Neither figure depends on the number of rows: the page is made
from ``summary.json``. Last, it times XLSX results of ``--xlsx-rows`` rows with long text wrapped and without, the
cost of wrapping.

Run ``python tests/bench/bench_report.py`` (``--classes``, ``--repeat``, ``--xlsx-rows``; ``--write FOLDER`` keeps
the pages).
This is a benchmark, not a test: it never fails CI.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from batch_classifier import xlsx_writer
from batch_classifier.evaluation import evaluate
from batch_classifier.formats import FileFormat
from batch_classifier.report import (
    EXAMPLE_ROWS,
    OFF_LIST_ANSWERS,
    REASONS,
    ROWS_PER_ANSWER,
    render_report,
    workbook_sheets,
)
from batch_classifier.writers import LocalTarget, open_sink, write_table

ROWS = 100_000
WORDS = (
    *("Booking", "Cancellation", "Refund", "Baggage", "Complaint", "Loyalty", "Upgrade", "Seat", "Payment"),
    *("Invoice", "Delay", "Transfer", "Visa", "Insurance", "Hotel", "Car", "Rental", "Meal", "Special"),
    *("Assistance", "Group", "Travel", "Schedule", "Change", "Lost", "Item", "Feedback"),
)


def class_names(count: int) -> list[str]:
    """Names like real categories: two or three words, up to about 35 characters."""
    pick = random.Random(1)
    names: list[str] = []
    while len(names) < count:
        name = " ".join(pick.sample(WORDS, pick.choice((2, 3))))
        if name not in names:
            names.append(name)
    return names


def labelled_pairs(classes: list[str], rows: int, dense: bool) -> Counter[tuple[str, str | None]]:
    """(truth, answer) counts: class sizes fall off as 1/rank; 85% right, the rest confused with a few neighbours
    (or, ``dense``, with every class) or left without an answer."""
    pick = random.Random(7)
    weights = [1 / (rank + 1) for rank in range(len(classes))]
    pairs: Counter[tuple[str, str | None]] = Counter()
    for truth_index in pick.choices(range(len(classes)), weights, k=rows):
        truth = classes[truth_index]
        roll = pick.random()
        if roll < 0.85:
            answer: str | None = truth
        elif roll < 0.87:
            answer = None
        elif dense:
            answer = pick.choice(classes)
        else:
            answer = classes[(truth_index + pick.choice((1, 2, 5))) % len(classes)]
        pairs[(truth, answer)] += 1
    if dense:  # every cell of the matrix filled
        for truth in classes:
            for answer in [*classes, None]:
                pairs[(truth, answer)] += 1
    return pairs


def summary_of(classes: list[str], dense: bool) -> dict[str, Any]:
    pairs = labelled_pairs(classes, ROWS, dense)
    evaluation = evaluate(((t, a) for (t, a), n in pairs.items() for _ in range(n)), classes)
    by_class = Counter({c: 0 for c in classes})
    for (_, answer), n in pairs.items():
        if answer:
            by_class[answer] += n
    rows = sum(pairs.values())
    off_list = sum(n for (_, a), n in pairs.items() if a is None)
    answers = [
        {
            "answer": f"Something else {i}",
            "count": 40 - i // 2,
            "rows": [{"row": 1000 * i + k, "id": f"call-{1000 * i + k}"} for k in range(ROWS_PER_ANSWER)],
        }
        for i in range(OFF_LIST_ANSWERS)
    ]
    not_classified = {
        status: {
            "rows": 120,
            "reasons": [{"reason": f"{status} reason {i}: the service said no", "count": 6} for i in range(REASONS)],
            "other_reasons": 0,
            "examples": [
                {"row": 10 * i, "id": f"call-{10 * i}", "reason": f"{status} reason {i % REASONS}"}
                for i in range(EXAMPLE_ROWS)
            ],
        }
        for status in ("invalid_input", "model_error", "unparseable")
    }
    return {
        "rows": rows + 360,
        "by_status": {
            "classified": rows - off_list,
            "invalid_input": 120,
            "model_error": 120,
            "unparseable": 120,
            "off_list": off_list,
            "pending": 0,
        },
        "by_class": {c: by_class[c] for c in classes},
        "by_match": {"exact": rows - off_list - 900, "normalised": 600, "fuzzy": 300},
        "evaluation": evaluation.to_dict(),
        "tokens": {
            "input": 190_000_000,
            "output": 6_000_000,
            "batch": {"input": 189_000_000, "output": 5_970_000},
            "on_demand": {"input": 1_000_000, "output": 30_000},
        },
        "cost_usd": 112.5,
        "cost": {
            "batch_usd": 110.2,
            "on_demand_usd": 2.3,
            "on_demand_equivalent_usd": 224.9,
            "batch_saved_usd": 112.4,
        },
        "run_id": "0123456789abcdef0123",
        "task": "travel-77",
        "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "source": "input_data/travel-77/calls.csv",
        "off_list_answers": {"rows": off_list, "distinct": 300, "answers": answers, "not_listed": 0},
        "not_classified": not_classified,
        "outcome": "succeeded_with_errors",
        "headline": f"{rows - off_list:,} of {rows + 360:,} rows classified",
        "warnings": [],
        "timings": {
            "started_at": "2026-01-01T10:00:00+00:00",
            "finished_at": "2026-01-01T12:31:00+00:00",
            "total_seconds": 9060.0,
            "steps": [
                {"step": "until the first batch job", "seconds": 60.0},
                {"step": "batch jobs and their results", "seconds": 8880.0},
                {"step": "until FinalizeRun", "seconds": 60.0},
                {"step": "FinalizeRun", "seconds": 60.0},
            ],
        },
    }


def timed(work: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median time of ``repeat`` runs of ``work``, in milliseconds, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def sheets_into_workbook(summary: dict[str, Any], folder: Path) -> None:
    sink = open_sink(FileFormat.XLSX, LocalTarget(folder / "results.xlsx"), ["id"])
    sink.write({"id": "call-1"})
    sink.add_sheets(workbook_sheets(summary))
    sink.close()


def results_rows(count: int) -> Any:
    """Rows with the columns of travel results: a conversation of about 700 characters and a rationale."""
    text = "Customer: I booked a flight to Lisbon last week and need to move it, my meeting changed. Agent: Sure. " * 7
    for i in range(count):
        yield {
            "id": f"c-{i}",
            "conversation": text,
            "class": "Reservation Change",
            "rationale": "The customer asks to move the date of a flight already booked, which is a change request.",
            "status": "classified",
            "match": "exact",
            "model_answer": "Reservation Change",
            "truncated": False,
            "correct": True,
        }


def write_xlsx(rows: int, folder: Path) -> None:
    columns = ["id", "conversation", "class", "rationale", "status", "reason", "match", "model_answer", "truncated"]
    write_table(folder / "results.xlsx", [*columns, "correct"], results_rows(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=77)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", type=Path, help="a folder to keep the pages in")
    parser.add_argument("--xlsx-rows", type=int, default=50_000, help="rows of the XLSX results timed (0: none)")
    args = parser.parse_args(argv)
    classes = class_names(args.classes)
    print(f"run report at {args.classes} classes (summary of {ROWS:,} labelled rows; page made from summary.json)")
    for name, dense in (("typical confusion", False), ("every cell filled", True)):
        summary = summary_of(classes, dense)
        cells = sum(len(row) for row in summary["evaluation"]["confusion"].values())
        millis, page = timed(partial(render_report, summary), args.repeat)
        size = len(page.encode())
        print(
            f"  {name:<18} {cells:>5} confusion cells   page {size / 1024:>7.1f} KB   "
            f"made in {millis:>6.1f} ms (median of {args.repeat})"
        )
        with tempfile.TemporaryDirectory() as scratch:
            sheet_millis, _ = timed(partial(sheets_into_workbook, summary, Path(scratch)), 3)
        print(f"  {'':<18} {'':>5}                    XLSX summary + confusion sheets in {sheet_millis:.0f} ms")
        if args.write:
            args.write.mkdir(parents=True, exist_ok=True)
            (args.write / f"report-{args.classes}-{'dense' if dense else 'typical'}.html").write_text(page)
    if args.xlsx_rows:
        # What wrapping long text costs the XLSX results: the same rows with it, then with no column wrapped.
        with tempfile.TemporaryDirectory() as scratch:
            wrapped, _ = timed(partial(write_xlsx, args.xlsx_rows, Path(scratch)), 1)
            cap = xlsx_writer.XLSX_MAX_WIDTH
            xlsx_writer.XLSX_MAX_WIDTH = 10**9
            try:
                plain, _ = timed(partial(write_xlsx, args.xlsx_rows, Path(scratch)), 1)
            finally:
                xlsx_writer.XLSX_MAX_WIDTH = cap
        print(
            f"XLSX results, {args.xlsx_rows:,} rows of travel columns: {wrapped / 1000:.1f} s with long text wrapped, "
            f"{plain / 1000:.1f} s without"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
