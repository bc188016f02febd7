"""Metrics of a run against a ground-truth column: accuracy, coverage, per-class scores, confusion.

``evaluate`` takes ``(truth, predicted)`` pairs. A row whose truth is empty has no ground truth and only
counts as ``unlabelled``. A ``None`` (or empty) prediction means the row got no valid answer (error,
off-list or invalid output): it counts against accuracy, coverage and the truth class's recall, and shows
in the confusion matrix as ``(no answer)``. Truth values are stripped of surrounding whitespace; labels are
otherwise compared exactly (predictions arrive already normalised to category names).

Macro averages are taken over the classes that occur (support or predictions above zero), so categories
of a task that never appear in the data do not drag them down; weighted averages weight by support.
A division by zero gives 0.0.

Reviewed workbooks (the review columns of a results XLSX, see ``writers``): :func:`reviewed_truth` gives a row's
ground truth from its reviewer. A ``review_label`` is the truth, as any label column. Without one, the
``verdict`` says what it can: ``correct`` makes the prediction the truth; ``wrong`` says the prediction is not the
truth without naming it, so the row gets the truth ``UNKNOWN_TRUTH``: it counts in the rows, against accuracy
and against the precision of the class it was given, but in no class's support (recall, F1 support, the
confusion matrix and the most-confused pairs leave it out, as its true class is not known). ``unsure``, an
unknown verdict, a ``correct`` row without a prediction and a row with neither label nor verdict are left out
(they count as ``unlabelled``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "NO_ANSWER",
    "REVIEW_COLUMNS",
    "REVIEW_LABEL_COLUMN",
    "REVIEW_NOTE_COLUMN",
    "UNKNOWN_TRUTH",
    "VERDICT_COLUMN",
    "Averages",
    "ClassMetrics",
    "ConfusedPair",
    "Evaluation",
    "ReviewVerdict",
    "TruthSource",
    "evaluate",
    "format_report",
    "reviewed_truth",
]

NO_ANSWER = "(no answer)"
#: The truth of a row its reviewer marked ``wrong`` without giving the right label.
UNKNOWN_TRUTH = "(wrong, true label not given)"
REVIEW_LABEL_COLUMN = "review_label"
VERDICT_COLUMN = "verdict"
REVIEW_NOTE_COLUMN = "review_note"
#: The reviewer's columns of a review workbook, in their order.
REVIEW_COLUMNS = (REVIEW_LABEL_COLUMN, VERDICT_COLUMN, REVIEW_NOTE_COLUMN)


class ReviewVerdict(StrEnum):
    """What a reviewer says of a prediction (the ``verdict`` drop-down of a review workbook)."""

    CORRECT = "correct"
    WRONG = "wrong"
    UNSURE = "unsure"


class TruthSource(StrEnum):
    """Where a reviewed row's ground truth comes from: its review label, its verdict, or nowhere (left out)."""

    LABEL = "label"
    VERDICT = "verdict"
    NONE = "none"


MOST_CONFUSED = 10
_DIGITS = 4


@dataclass(frozen=True)
class ClassMetrics:
    """Scores of one class: ``support`` rows have it as truth, ``predicted`` rows got it as answer."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


@dataclass(frozen=True)
class Averages:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ConfusedPair:
    truth: str
    predicted: str
    count: int


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one run; ``to_dict`` gives them JSON-ready."""

    rows: int
    unlabelled: int
    answered: int
    correct: int
    accuracy: float
    accuracy_answered: float
    coverage: float
    per_class: tuple[ClassMetrics, ...]
    macro: Averages
    weighted: Averages
    confusion: Mapping[str, Mapping[str, int]]
    most_confused: tuple[ConfusedPair, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "unlabelled": self.unlabelled,
            "answered": self.answered,
            "correct": self.correct,
            "accuracy": _round(self.accuracy),
            "accuracy_answered": _round(self.accuracy_answered),
            "coverage": _round(self.coverage),
            "per_class": {
                m.label: {
                    "precision": _round(m.precision),
                    "recall": _round(m.recall),
                    "f1": _round(m.f1),
                    "support": m.support,
                    "predicted": m.predicted,
                }
                for m in self.per_class
            },
            "macro": _averages_dict(self.macro),
            "weighted": _averages_dict(self.weighted),
            "confusion": {truth: dict(cells) for truth, cells in self.confusion.items()},
            "most_confused": [
                {"truth": p.truth, "predicted": p.predicted, "count": p.count} for p in self.most_confused
            ],
        }


def _round(value: float) -> float:
    return round(value, _DIGITS)


def _averages_dict(averages: Averages) -> dict[str, float]:
    return {
        "precision": _round(averages.precision),
        "recall": _round(averages.recall),
        "f1": _round(averages.f1),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def _clean(truth: str | None) -> str | None:
    stripped = truth.strip() if truth is not None else ""
    return stripped or None


def _class_order(given: Sequence[str] | None, seen: set[str]) -> list[str]:
    order = list(dict.fromkeys(given or ()))
    return order + sorted(seen.difference(order))


def _class_metrics(label: str, cells: Counter[tuple[str, str]], support: int, predicted: int) -> ClassMetrics:
    precision = _ratio(cells[(label, label)], predicted)
    recall = _ratio(cells[(label, label)], support)
    return ClassMetrics(label, precision, recall, _f1(precision, recall), support, predicted)


def _macro(metrics: Sequence[ClassMetrics]) -> Averages:
    present = [m for m in metrics if m.support or m.predicted]
    count = len(present)
    return Averages(
        _ratio(sum(m.precision for m in present), count),
        _ratio(sum(m.recall for m in present), count),
        _ratio(sum(m.f1 for m in present), count),
    )


def _weighted(metrics: Sequence[ClassMetrics]) -> Averages:
    total = sum(m.support for m in metrics)
    return Averages(
        _ratio(sum(m.precision * m.support for m in metrics), total),
        _ratio(sum(m.recall * m.support for m in metrics), total),
        _ratio(sum(m.f1 * m.support for m in metrics), total),
    )


def _confusion(classes: Sequence[str], cells: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    columns = [*classes, NO_ANSWER]
    matrix: dict[str, dict[str, int]] = {}
    for truth in classes:
        row = {predicted: cells[(truth, predicted)] for predicted in columns if cells[(truth, predicted)]}
        if row:
            matrix[truth] = row
    return matrix


def _most_confused(cells: Counter[tuple[str, str]]) -> tuple[ConfusedPair, ...]:
    pairs = [
        ConfusedPair(truth, predicted, count)
        for (truth, predicted), count in cells.items()
        if predicted not in (truth, NO_ANSWER) and truth != UNKNOWN_TRUTH and count
    ]
    pairs.sort(key=lambda p: (-p.count, p.truth, p.predicted))
    return tuple(pairs[:MOST_CONFUSED])


def reviewed_truth(label: str | None, predicted: str | None, verdict: str | None) -> tuple[str | None, TruthSource]:
    """The ground truth a reviewer gave a row, and where it comes from (see the module's notes)."""
    truth = _clean(label)
    if truth is not None:
        return truth, TruthSource.LABEL
    said = (verdict or "").strip().lower()
    if said == ReviewVerdict.CORRECT and predicted:
        return predicted, TruthSource.VERDICT
    if said == ReviewVerdict.WRONG:
        return UNKNOWN_TRUTH, TruthSource.VERDICT
    return None, TruthSource.NONE


def evaluate(pairs: Iterable[tuple[str | None, str | None]], classes: Sequence[str] | None = None) -> Evaluation:
    """Score ``(truth, predicted)`` pairs; ``classes`` (a task's categories) fixes the order of the classes."""
    cells: Counter[tuple[str, str]] = Counter()
    unlabelled = 0
    for raw_truth, raw_predicted in pairs:
        truth = _clean(raw_truth)
        if truth is None:
            unlabelled += 1
            continue
        cells[(truth, raw_predicted or NO_ANSWER)] += 1

    seen = {label for pair in cells for label in pair if label not in (NO_ANSWER, UNKNOWN_TRUTH)}
    order = _class_order(classes, seen)
    support: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    for (truth, answer), count in cells.items():
        support[truth] += count
        predicted[answer] += count

    rows = sum(cells.values())
    answered = rows - predicted[NO_ANSWER]
    correct = sum(count for (truth, answer), count in cells.items() if truth == answer)
    metrics = tuple(_class_metrics(c, cells, support[c], predicted[c]) for c in order)
    return Evaluation(
        rows=rows,
        unlabelled=unlabelled,
        answered=answered,
        correct=correct,
        accuracy=_ratio(correct, rows),
        accuracy_answered=_ratio(correct, answered),
        coverage=_ratio(answered, rows),
        per_class=metrics,
        macro=_macro(metrics),
        weighted=_weighted(metrics),
        confusion=_confusion(order, cells),
        most_confused=_most_confused(cells),
    )


# --- plain-text report ---------------------------------------------------------------------------------


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _overall_lines(ev: Evaluation) -> list[str]:
    without = f" ({ev.unlabelled:,} more without ground truth)" if ev.unlabelled else ""
    return [
        f"Rows with ground truth: {ev.rows:,}{without}",
        f"Accuracy:                  {_percent(ev.accuracy):>6}  ({ev.correct:,} of {ev.rows:,})",
        f"Accuracy on answered rows: {_percent(ev.accuracy_answered):>6}  ({ev.correct:,} of {ev.answered:,})",
        f"Coverage:                  {_percent(ev.coverage):>6}  ({ev.answered:,} of {ev.rows:,} answered)",
    ]


def _table_lines(ev: Evaluation) -> list[str]:
    body: list[tuple[str, float, float, float, str]] = [
        (m.label, m.precision, m.recall, m.f1, f"{m.support:,}") for m in ev.per_class
    ]
    total = f"{ev.rows:,}"
    footer = [
        ("macro avg", ev.macro.precision, ev.macro.recall, ev.macro.f1, total),
        ("weighted avg", ev.weighted.precision, ev.weighted.recall, ev.weighted.f1, total),
    ]
    width = max(len(name) for name, *_ in [*body, *footer, ("Class", 0, 0, 0, "")])
    heads = ("Class", "Precision", "Recall", "F1", "Support")

    def line(name: str, cells: Sequence[str]) -> str:
        return f"{name:<{width}}  " + "  ".join(f"{cell:>9}" for cell in cells)

    def rows(entries: Sequence[tuple[str, float, float, float, str]]) -> list[str]:
        return [line(n, (_percent(p), _percent(r), _percent(f), s)) for n, p, r, f, s in entries]

    header = line(heads[0], heads[1:])
    rule = "-" * len(header)
    return [header, rule, *rows(body), rule, *rows(footer)]


def _confused_lines(ev: Evaluation) -> list[str]:
    if not ev.most_confused:
        return ["Most confused: none"]
    lines = ["Most confused (truth -> predicted):"]
    lines += [f"  {p.truth} -> {p.predicted}: {p.count:,}" for p in ev.most_confused]
    return lines


def format_report(ev: Evaluation) -> str:
    """A plain-text report: overall figures, a per-class table with averages, the most confused pairs."""
    if not ev.rows:
        return f"No rows with ground truth to evaluate ({ev.unlabelled:,} rows without).\n"
    sections = [_overall_lines(ev), _table_lines(ev), _confused_lines(ev)]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
