"""Compare prompt variants on the same labelled sample: the labelling loop's "which prompt is better?" step.

Each variant (a task file) classifies the same rows through the manual workflow's own steps: ``prepare`` the sample
with the variant into ``<out>/<variant>/prepared``, answer its job and on-demand lines (``answer``, given by the
caller: this package does not know which model answers), ``collect`` into ``<out>/<variant>/results.csv``, then
score the rows with :func:`~.evaluation.evaluate`. The first variant is the baseline: per-class F1 deltas and the
rows each other variant fixed (the baseline wrong, the variant right) and broke (the other way round) are taken
against it, with both rationales.

The result renders as a plain-text table (:func:`format_comparison`), an HTML page (:func:`render_comparison`,
every user value escaped) and a workbook (:func:`write_comparison_xlsx`: ``summary``, ``per-class`` and
``fixed-broke`` sheets). Compare is for review samples: a sample above :data:`MAX_COMPARE_ROWS` rows is refused
before anything is prepared.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compare_output import format_comparison, render_comparison, write_comparison_xlsx
from .errors import BatchClassifierError
from .evaluation import Evaluation, evaluate
from .pipeline import InputOptions, PreparedRun, collect, prepare
from .records import RowStatus
from .tasks import Task

__all__ = [
    "COMPARE_HTML",
    "COMPARE_XLSX",
    "MAX_COMPARE_ROWS",
    "Answer",
    "CompareError",
    "Comparison",
    "RowAnswer",
    "RowChange",
    "VariantResult",
    "compare_variants",
    "count_rows",
    "format_comparison",
    "render_comparison",
    "variant_names",
    "write_comparison_xlsx",
]

MAX_COMPARE_ROWS = 5_000
COMPARE_HTML = "compare.html"
COMPARE_XLSX = "compare.xlsx"
RESULTS_FILE = "results.csv"

#: Answers every job and on-demand line of a prepared folder (first argument) into Bedrock's output layout in
#: the outputs folder (second argument).
Answer = Callable[[Path, Path], Any]


class CompareError(BatchClassifierError):
    """The variants cannot be compared: too many rows, no ground truth, or samples that differ."""


@dataclass(frozen=True)
class RowAnswer:
    """What one variant answered for one row: the class (None without a valid answer), status and rationale."""

    predicted: str | None
    status: str
    rationale: str | None
    correct: bool


@dataclass(frozen=True)
class VariantResult:
    """One variant's figures on the sample and its answer for every row (in input order)."""

    name: str
    task_file: str
    evaluation: Evaluation
    by_status: dict[str, int]
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    answers: tuple[RowAnswer, ...]

    @property
    def off_list(self) -> int:
        return self.by_status.get(RowStatus.OFF_LIST.value, 0)

    @property
    def unparseable(self) -> int:
        return self.by_status.get(RowStatus.UNPARSEABLE.value, 0)


@dataclass(frozen=True)
class RowChange:
    """A labelled row whose correctness differs between the baseline and a variant."""

    row: int
    id: str
    text: str
    truth: str
    baseline: RowAnswer
    variant: RowAnswer


@dataclass(frozen=True)
class Comparison:
    """Every variant's figures, the classes in order, and per variant after the first its fixed and broken rows."""

    sample: str
    rows: int
    labelled: int
    classes: tuple[str, ...]
    variants: tuple[VariantResult, ...]
    fixed: dict[str, tuple[RowChange, ...]]
    broke: dict[str, tuple[RowChange, ...]]

    @property
    def baseline(self) -> VariantResult:
        return self.variants[0]

    def f1(self, variant: VariantResult, label: str) -> float | None:
        """The variant's F1 on a class (None when the class neither occurs nor is predicted)."""
        return next((m.f1 for m in variant.evaluation.per_class if m.label == label), None)


# --- running the variants ---------------------------------------------------------------------------------------


def variant_names(files: Sequence[str | os.PathLike[str]]) -> list[str]:
    """A folder-safe name per task file, from its stem; repeated stems get ``-2``, ``-3``, ..."""
    names: list[str] = []
    for file in files:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(file).stem).strip("-.") or "variant"
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def count_rows(sample: Path, limit: int = MAX_COMPARE_ROWS, options: InputOptions | None = None) -> int:
    """The sample's data rows, refused (CompareError) above ``limit`` without reading further."""
    options = options or InputOptions()
    rows = 0
    with options.open(sample) as table:
        for _ in table.rows():
            rows += 1
            if rows > limit:
                raise CompareError(
                    f"{sample.name} has more than {limit:,} rows: compare is for review samples, classified once "
                    f"per variant. Draw one first (batch-classifier sample {sample.name} --n 150 --out SAMPLE)."
                )
    return rows


def compare_variants(
    sample: Path,
    variants: Sequence[tuple[str, str, Task]],
    out: Path,
    answer: Answer,
    *,
    label_column: str | None = None,
    options: InputOptions | None = None,
    max_rows: int = MAX_COMPARE_ROWS,
) -> Comparison:
    """Classify ``sample`` with each ``(name, task file, task)`` variant into ``out/<name>/`` and compare them."""
    if len(variants) < 2:
        raise CompareError("compare needs at least two task variants (--task v1.yaml --task v2.yaml).")
    count_rows(sample, max_rows, options)
    results: list[VariantResult] = []
    records: list[tuple[int, str, str, str | None]] = []
    classes: list[str] = []
    for name, task_file, given in variants:
        task = given
        if label_column:
            task = given.model_copy(update={"input": given.input.with_overrides(label_column=label_column)})
        folder = out / name
        run = prepare(sample, folder / "prepared", task, options=options)
        if not run.plan.get("labelled"):
            raise CompareError(
                f"{sample.name} has no ground truth for task {task_file}: name its label column with "
                "--label-column (compare scores each variant against it)."
            )
        answer(folder / "prepared", folder / "outputs")
        summary = collect(folder / "prepared", folder / "outputs", folder / RESULTS_FILE)
        rows = [(r.row, r.id, r.text, r.label) for r in PreparedRun.load(folder / "prepared").records()]
        if records and [(r[0], r[3]) for r in rows] != [(r[0], r[3]) for r in records]:
            raise CompareError(
                f"task {task_file} reads different rows or labels from {sample.name} than {variants[0][1]}: "
                "compare variants that map the input the same way."
            )
        records = records or rows
        classes += [c for c in task.category_names if c not in classes]
        result = _variant_result(name, task_file, task, folder / RESULTS_FILE, rows, summary)
        classes += [m.label for m in result.evaluation.per_class if m.label not in classes]  # labels off the list
        results.append(result)
    fixed: dict[str, tuple[RowChange, ...]] = {}
    broke: dict[str, tuple[RowChange, ...]] = {}
    base = results[0]
    for other in results[1:]:
        fixed[other.name] = tuple(_changes(records, base, other, lambda b, o: not b.correct and o.correct))
        broke[other.name] = tuple(_changes(records, base, other, lambda b, o: b.correct and not o.correct))
    return Comparison(
        sample=sample.name,
        rows=len(records),
        labelled=base.evaluation.rows,
        classes=tuple(classes),
        variants=tuple(results),
        fixed=fixed,
        broke=broke,
    )


def _read_results(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        yield from csv.DictReader(stream)


def _variant_result(
    name: str,
    task_file: str,
    task: Task,
    results: Path,
    records: Sequence[tuple[int, str, str, str | None]],
    summary: dict[str, Any],
) -> VariantResult:
    answers: list[RowAnswer] = []
    pairs: list[tuple[str | None, str | None]] = []
    for (_, _, _, label), row in zip(records, _read_results(results), strict=True):
        predicted = row.get("class") or None
        truth = (label or "").strip() or None
        pairs.append((truth, predicted))
        answers.append(
            RowAnswer(
                predicted=predicted,
                status=row.get("status") or "",
                rationale=row.get("rationale") or None,
                correct=truth is not None and predicted == truth,
            )
        )
    tokens = summary.get("tokens") or {}
    return VariantResult(
        name=name,
        task_file=task_file,
        evaluation=evaluate(pairs, task.category_names),
        by_status=dict(summary.get("by_status") or {}),
        input_tokens=int(tokens.get("input") or 0),
        output_tokens=int(tokens.get("output") or 0),
        cost_usd=summary.get("cost_usd"),
        answers=tuple(answers),
    )


def _changes(
    records: Sequence[tuple[int, str, str, str | None]],
    base: VariantResult,
    other: VariantResult,
    differs: Callable[[RowAnswer, RowAnswer], bool],
) -> Iterator[RowChange]:
    for (row, ident, text, label), b, o in zip(records, base.answers, other.answers, strict=True):
        truth = (label or "").strip()
        if truth and differs(b, o):
            yield RowChange(row=row, id=ident, text=text, truth=truth, baseline=b, variant=o)
