"""Label matching: from the model's answer to one of the task's category names, never silently.

Order: exact → normalised (case, spaces, quotes, punctuation) → the task's aliases → fuzzy above the task's
threshold → off the list, with the raw answer kept. Every match says how it was made.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from enum import StrEnum

from .tasks import Task

_PUNCTUATION = re.compile(r"[\W_]+", re.UNICODE)
_CACHE_LIMIT = 10_000


class MatchMethod(StrEnum):
    EXACT = "exact"
    NORMALISED = "normalised"
    ALIAS = "alias"
    FUZZY = "fuzzy"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class LabelMatch:
    """The category an answer was matched to (None when off the list), how, and how closely."""

    category: str | None
    method: MatchMethod
    score: float


def normalise(label: str) -> str:
    """Case-folded, accents and punctuation removed, single spaces, '&' read as 'and'."""
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode() or label
    text = text.casefold().replace("&", " and ")
    return " ".join(_PUNCTUATION.sub(" ", text).split())


class LabelMatcher:
    """Matches answers against one task's categories; answers repeat, so results are cached."""

    def __init__(self, task: Task) -> None:
        self._names = {c.name: c.name for c in task.categories}
        self._normalised = {normalise(c.name): c.name for c in task.categories}
        self._aliases = {normalise(a): c.name for c in task.categories for a in c.aliases}
        self._candidates = {**self._aliases, **self._normalised}
        self._threshold = task.fuzzy_threshold
        self._cache: dict[str, LabelMatch] = {}

    def match(self, answer: str) -> LabelMatch:
        found = self._cache.get(answer)
        if found is None:
            found = self._match(answer)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[answer] = found
        return found

    def _match(self, answer: str) -> LabelMatch:
        stripped = answer.strip()
        if stripped in self._names:
            return LabelMatch(stripped, MatchMethod.EXACT, 1.0)
        key = normalise(stripped)
        if not key:
            return LabelMatch(None, MatchMethod.NONE, 0.0)
        if key in self._normalised:
            return LabelMatch(self._normalised[key], MatchMethod.NORMALISED, 1.0)
        if key in self._aliases:
            return LabelMatch(self._aliases[key], MatchMethod.ALIAS, 1.0)
        return self._fuzzy(key)

    def _fuzzy(self, key: str) -> LabelMatch:
        scored = sorted(
            (
                (SequenceMatcher(None, key, candidate).ratio(), category)
                for candidate, category in self._candidates.items()
            ),
            reverse=True,
        )
        best_score, best = scored[0]
        # Two different categories scoring the same is a coin toss, not a match.
        ambiguous = any(score == best_score and category != best for score, category in scored[1:])
        if best_score >= self._threshold and not ambiguous:
            return LabelMatch(best, MatchMethod.FUZZY, round(best_score, 4))
        return LabelMatch(None, MatchMethod.NONE, round(best_score, 4))
