"""What the run report shows of the rows, counted as they go by, and the formatting its page and sheets share.

:class:`RowDigest` counts while the rows are written (``off_list_answers`` and ``not_classified`` in the
summary), and the counts are bounded whatever the row count: the ``OFF_LIST_ANSWERS`` most frequent off-list answers
with the first ``ROWS_PER_ANSWER`` rows of each, and per status the ``REASONS`` most frequent reasons and the
first ``EXAMPLE_ROWS`` rows. At most ``TRACKED`` distinct answers (and reasons) are counted one by one; rows
with answers beyond those are counted together. :func:`batch_savings` is what the same tokens cost on demand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .cost import PriceTable
from .errors import PriceNotFoundError
from .evaluation import NO_ANSWER

__all__ = [
    "EXAMPLE_ROWS",
    "OFF_LIST_ANSWERS",
    "REASONS",
    "ROWS_PER_ANSWER",
    "STATUS_COLOURS",
    "TRACKED",
    "RowDigest",
    "batch_savings",
]

OFF_LIST_ANSWERS = 50
ROWS_PER_ANSWER = 5
REASONS = 20
EXAMPLE_ROWS = 20
TRACKED = 1000
_ANSWER_CHARS = 200

_CLASSIFIED = "classified"
_OFF_LIST = "off_list"
# "row 12: ..." and "sheet 'Calls', row 12: ..." start the reasons of invalid rows: counted without them.
_ROW_PREFIX = re.compile(r"^(?:sheet '[^']*', )?row \d+: ")


# --- the aggregates the report needs from the rows ------------------------------------------------------------


@dataclass
class _Tally:
    """Counts of up to ``TRACKED`` distinct keys, each with its first ``keep`` examples; rows with a key first
    seen after that are counted in ``others``."""

    keep: int
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    others: int = 0

    def add(self, key: str, example: dict[str, Any] | None = None) -> None:
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < TRACKED:
            self.counts[key] = 1
            self.examples[key] = []
        else:
            self.others += 1
            return
        kept = self.examples[key]
        if example is not None and len(kept) < self.keep:
            kept.append(example)

    def top(self, count: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:count]


@dataclass
class _Status:
    rows: int = 0
    reasons: _Tally = field(default_factory=lambda: _Tally(keep=0))
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RowDigest:
    """What the report shows of the rows, counted as they go by in bounded memory (see the module's notes)."""

    off_list: _Tally = field(default_factory=lambda: _Tally(keep=ROWS_PER_ANSWER))
    off_list_rows: int = 0
    statuses: dict[str, _Status] = field(default_factory=dict)

    def add(self, row: Mapping[str, Any], number: int) -> None:
        """Count one output row; ``number`` is its 1-based position in the input."""
        status = str(row.get("status") or "")
        if status == _CLASSIFIED:
            return
        where = {"row": number, "id": _text(row.get("id"))}
        if status == _OFF_LIST:
            self.off_list_rows += 1
            self.off_list.add(_text(row.get("model_answer"))[:_ANSWER_CHARS], where)
            return
        reason = _text(row.get("reason"))
        tally = self.statuses.setdefault(status, _Status())
        tally.rows += 1
        tally.reasons.add(_ROW_PREFIX.sub("", reason, count=1))
        if len(tally.examples) < EXAMPLE_ROWS:
            tally.examples.append({**where, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """``off_list_answers`` and ``not_classified``, as they go into ``summary.json``."""
        top = self.off_list.top(OFF_LIST_ANSWERS)
        answers = [{"answer": answer, "count": count, "rows": self.off_list.examples[answer]} for answer, count in top]
        not_classified: dict[str, Any] = {}
        for status, tally in sorted(self.statuses.items()):
            reasons = tally.reasons.top(REASONS)
            not_classified[status] = {
                "rows": tally.rows,
                "reasons": [{"reason": reason, "count": count} for reason, count in reasons],
                "other_reasons": tally.rows - sum(count for _, count in reasons),
                "examples": tally.examples,
            }
        return {
            "off_list_answers": {
                "rows": self.off_list_rows,
                "distinct": len(self.off_list.counts),
                "answers": answers,
                "not_listed": self.off_list_rows - sum(count for _, count in top),
            },
            "not_classified": not_classified,
        }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def batch_savings(
    tokens: Mapping[str, Any], cost_usd: float | None, model_id: str, prices: PriceTable
) -> dict[str, Any]:
    """What the run's tokens would have cost on demand and what batch saved (nothing when the model has no price)."""
    if cost_usd is None:
        return {}
    try:
        all_on_demand = prices.cost(model_id, int(tokens["input"]), int(tokens["output"]), "on_demand")
    except PriceNotFoundError:
        return {}
    return {
        "on_demand_equivalent_usd": round(all_on_demand, 6),
        # Never below nothing: a run answered wholly on demand saved nothing (and rounding must not say -0.0000).
        "batch_saved_usd": max(round(all_on_demand - cost_usd, 6), 0.0) + 0.0,
    }


# --- formatting ------------------------------------------------------------------------------------------------


def _int(value: Any) -> str:
    return f"{int(value or 0):,}"


def _usd(value: Any) -> str:
    if value is None:
        return "unknown"
    return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


STATUS_COLOURS = {
    "classified": "#2e7d32",
    "off_list": "#f9a825",
    "unparseable": "#ef6c00",
    "model_error": "#c62828",
    "invalid_input": "#757575",
    "pending": "#90a4ae",
}


def _confusion_axes(evaluation: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The confusion matrix's rows (classes that are some row's truth) and columns (classes that are a truth or an
    answer, then ``(no answer)`` when some row has none), in the task's order."""
    per_class: Mapping[str, Mapping[str, Any]] = evaluation.get("per_class") or {}
    confusion: Mapping[str, Mapping[str, int]] = evaluation.get("confusion") or {}
    truths = [c for c, m in per_class.items() if m.get("support")]
    answers = [c for c, m in per_class.items() if m.get("support") or m.get("predicted")]
    if any(NO_ANSWER in cells for cells in confusion.values()):
        answers.append(NO_ANSWER)
    return truths, answers


# --- the page ---------------------------------------------------------------------------------------------------
