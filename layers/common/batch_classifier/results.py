"""From model results to output rows: the verdict on each distinct text, and the row each input row becomes.

A :class:`Verdict` is decided once per distinct text (record id) and fanned out to every input row carrying
that text. :func:`output_row` builds the row of the results file; :class:`SummaryBuilder` counts as rows go
by, so a summary of a million rows needs no second pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .evaluation import evaluate
from .labels import LabelMatcher, MatchMethod
from .mapping import OutputLayout
from .outputs import ModelResult, extract_answer
from .records import CanonicalRecord, RowStatus
from .tasks import Task

# Columns the product adds to every output row, after the id and the input's own columns.
RESULT_COLUMNS = ("class", "rationale", "status", "reason", "match", "model_answer", "truncated")
CORRECT_COLUMN = "correct"
_RESERVED = frozenset(("id", *RESULT_COLUMNS, CORRECT_COLUMN))
MISSING_REASON = "missing from the model output"


@dataclass(slots=True)
class Verdict:
    """What became of one distinct text."""

    status: RowStatus
    category: str | None = None
    rationale: str | None = None
    match: MatchMethod | None = None
    answer: str | None = None
    reason: str | None = None
    retryable: bool = False


def judge(result: ModelResult | None, matcher: LabelMatcher, task: Task) -> Verdict:
    """The verdict on one model result (None: the record never came back)."""
    if result is None:
        return Verdict(RowStatus.MODEL_ERROR, reason=MISSING_REASON, retryable=True)
    if result.failed:
        message = f": {result.error_message}" if result.error_message else ""
        return Verdict(RowStatus.MODEL_ERROR, reason=f"error {result.error_code}{message}", retryable=result.retryable)
    answer = extract_answer(result.text or "", task.output_tags)
    rationale = " ".join(answer.explanation.split()) if answer.explanation else None
    if answer.label is None:
        cut = " (the reply was cut off at max_tokens)" if result.stop_reason in {"max_tokens", "length"} else ""
        return Verdict(
            RowStatus.UNPARSEABLE, rationale=rationale, reason=f"no <{task.output_tags.label}> in the reply{cut}"
        )
    found = matcher.match(answer.label)
    if found.category is None:
        return Verdict(
            RowStatus.OFF_LIST,
            rationale=rationale,
            match=found.method,
            answer=answer.label,
            reason=f"{answer.label!r} is not one of the task's categories",
        )
    return Verdict(
        RowStatus.CLASSIFIED, category=found.category, rationale=rationale, match=found.method, answer=answer.label
    )


def output_name(column: str) -> str:
    """An input column's name in the output; one that clashes with a result column gets an ``input_`` prefix."""
    return f"input_{column}" if column in _RESERVED else column


def output_columns(layout: OutputLayout, labelled: bool) -> list[str]:
    columns = ["id", *(output_name(c) for c in layout.columns), *RESULT_COLUMNS]
    if labelled:
        columns.append(CORRECT_COLUMN)
    return columns


def output_row(record: CanonicalRecord, verdict: Verdict | None, layout: OutputLayout) -> dict[str, Any]:
    """The output row of one input row. ``verdict`` is None only for rows that never reached the model."""
    row: dict[str, Any] = {"id": record.id}
    for column in layout.columns:
        value = record.text if column == layout.text_column else record.carry.get(column)
        row[output_name(column)] = value
    if record.status is RowStatus.INVALID_INPUT or verdict is None:
        row["status"] = record.status.value
        row["reason"] = record.reason
    else:
        row.update(
            {
                "class": verdict.category,
                "rationale": verdict.rationale,
                "status": verdict.status.value,
                "reason": verdict.reason,
                "match": verdict.match.value if verdict.match else None,
                "model_answer": verdict.answer,
            }
        )
    row["truncated"] = record.truncated
    if record.label is not None:
        row[CORRECT_COLUMN] = row.get("class") == record.label
    return row


@dataclass
class SummaryBuilder:
    """Counts output rows by status, class and match method, and pairs ground truth with predictions."""

    categories: list[str]
    rows: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_class: Counter[str] = field(default_factory=Counter)
    by_match: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    labelled: bool = False

    def add(self, record: CanonicalRecord, row: dict[str, Any]) -> None:
        self.rows += 1
        self.by_status[row["status"]] += 1
        if row.get("class"):
            self.by_class[row["class"]] += 1
        if row.get("match"):
            self.by_match[row["match"]] += 1
        if record.label is not None:
            self.labelled = True
        self.pairs[(record.label, row.get("class"))] += 1

    def to_dict(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "rows": self.rows,
            "by_status": {s.value: self.by_status.get(s.value, 0) for s in RowStatus if s is not RowStatus.PENDING},
            "by_class": {c: self.by_class.get(c, 0) for c in self.categories},
            "by_match": dict(sorted(self.by_match.items())),
        }
        if self.labelled:
            pairs = ((truth, predicted) for (truth, predicted), n in self.pairs.items() for _ in range(n))
            summary["evaluation"] = evaluate(pairs, self.categories).to_dict()
        return summary
