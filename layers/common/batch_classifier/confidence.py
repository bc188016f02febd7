"""Confidence and the review queue: how the model is asked how sure it is, how its answer is read, and which rows are
flagged ``needs_review``.

A task with ``review: {confidence: true}`` asks, in its output format, for a ``<confidence>`` after the explanation
of each answer (each numbered ``<answer>`` of a packed reply too): a whole number from 0 to 100. Whole numbers are
what models give most reliably; the result files and the task's ``threshold`` hold it as a fraction, 0 to 1 (85 is
0.85). Reading is tolerant, and a confidence is never needed for a row to be classified: ``85``, ``85%``,
``85/100`` and ``0.85`` are all 0.85 (a number with a decimal point up to 1 is read as a fraction); anything else
(missing, words, a number above 100) leaves the confidence empty.

A classified row is flagged ``needs_review`` when its answer was matched only by one of the task's aliases or by
fuzzy matching (whatever its confidence), or, when the task asks for a confidence, when the confidence is below the
threshold or missing (a row not shown to be confident is not taken as confident). Rows that were not classified are
never flagged: their status already says they have no answer. The flag sits beside the status; it is not one.
"""

from __future__ import annotations

import re

from .labels import MatchMethod
from .tasks import Task

#: The tag a confidence is asked in, inside each answer.
CONFIDENCE_TAG = "confidence"
#: The result columns of the review queue.
CONFIDENCE_COLUMN = "confidence"
NEEDS_REVIEW_COLUMN = "needs_review"
#: Matches a reviewer should check whatever the model's confidence: the answer was not the category's own name.
REVIEWED_MATCHES = frozenset({MatchMethod.ALIAS, MatchMethod.FUZZY})

_NUMBER = re.compile(r"^[\s\"'*`]*(\d+(?:\.\d+)?|\.\d+)\s*(%|/\s*100\b|percent\b)?", re.I)


def confidence_format_line() -> str:
    """The output format's line asking for a confidence (after the explanation)."""
    ask = "a whole number from 0 to 100: how sure you are that this category is right"
    return f"<{CONFIDENCE_TAG}>{ask}</{CONFIDENCE_TAG}>"


def parse_confidence(raw: str | None) -> float | None:
    """A confidence from the text of a ``<confidence>`` tag, as a fraction 0..1 (2 decimals); None when unreadable."""
    if raw is None:
        return None
    found = _NUMBER.match(raw)
    if found is None:
        return None
    number, unit = found[1], found[2]
    value = float(number)
    if not unit and "." in number and value <= 1.0:
        return round(value, 2)  # 0.85: already a fraction
    if value > 100.0:
        return None
    return round(value / 100.0, 2)


def needs_review(task: Task, match: MatchMethod | None, confidence: float | None) -> bool:
    """Whether a classified row (matched by ``match``, with ``confidence``) goes in the review queue."""
    if match in REVIEWED_MATCHES:
        return True
    if task.review.confidence:
        return confidence is None or confidence < task.review.threshold
    return False
